/** The TOML 1.0 reader's source map: errors point at the right line and column in common layouts. */
import { describe, expect, it } from "vitest";
import { InvalidConfigError, parseMachineConfig } from "../../src/store/index.js";
import { locate, parseToml, rootEntries } from "../../src/store/toml-document.js";

const errorOf = (text: string, name?: string) => {
  try {
    parseMachineConfig(text, "/m/config.toml", name);
  } catch (error) {
    if (error instanceof InvalidConfigError) return error;
    throw error;
  }
  throw new Error("expected an InvalidConfigError");
};

const VALID_TAIL = `memory_mb = 1\ndisk_gb = 1\nstate = "stopped"\nvm_id = "v"\n`;

describe("parseToml / locate", () => {
  it("finds root keys, dotted and quoted keys, and numbers array tables", () => {
    const text = [
      "# header comment",
      'name = "m"',
      '  "quoted key" = 1',
      "a.b . c = 2",
      'multi = """',
      'state = "not a key"',
      '"""',
      "arr = [",
      "  1, # comment",
      "  2,",
      "]",
      "",
      "[[block_devices]]",
      "path = '/a'",
      "[[block_devices]]   # second",
      "read_only = true",
      "[table . sub]",
      "x = 1979-05-27 07:32:00Z",
    ].join("\n");
    const { source } = parseToml(text);
    const at = (path: (string | number)[]) => {
      const entry = locate(source, path);
      return entry && source.position(entry.keyStart);
    };
    expect(at(["name"])).toEqual({ line: 2, column: 1 });
    expect(at(["quoted key"])).toEqual({ line: 3, column: 3 });
    expect(at(["a", "b", "c"])).toEqual({ line: 4, column: 1 });
    expect(at(["state"])).toBeUndefined();
    expect(at(["arr", 1])).toEqual({ line: 8, column: 1 });
    expect(at(["block_devices", 0, "path"])).toEqual({ line: 14, column: 1 });
    expect(at(["block_devices", 1, "path"])).toEqual({ line: 15, column: 1 }); // the table's header
    expect(at(["block_devices", 1, "read_only"])).toEqual({ line: 16, column: 1 });
    expect(at(["table", "sub", "x"])).toEqual({ line: 18, column: 1 });
    expect(rootEntries(source).map((e) => e.path.join("."))).toEqual(["name", "quoted key", "a.b.c", "multi", "arr"]);
  });
});

describe("error positions", () => {
  it("a root key with a wrong value", () => {
    const e = errorOf(`name = "m"\n\ncpus = 1.5\n${VALID_TAIL}`);
    expect([e.line, e.column, e.key]).toEqual([3, 1, "cpus"]);
    expect(e.message).toBe("/m/config.toml:3:1: cpus: expected an integer, found a float (1.5)");
  });

  it("an indented key", () => {
    const e = errorOf(`name = "m"\ncpus = 1\n${VALID_TAIL.replace("state", "    state").replace('"stopped"', '"STOPPED"')}`);
    expect([e.line, e.column]).toEqual([5, 5]);
  });

  it("the Nth [[block_devices]] table, present and missing keys", () => {
    const base = `name = "m"\ncpus = 1\n${VALID_TAIL}`;
    const e1 = errorOf(`${base}[[block_devices]]\npath = "/a"\nread_only = true\n[[block_devices]]\npath = 5\nread_only = false\n`);
    expect([e1.line, e1.column, e1.key]).toEqual([11, 1, "block_devices[1].path"]);
    const e2 = errorOf(`${base}[[block_devices]]\npath = "/a"\nread_only = true\n\n[[block_devices]]\nread_only = false\n`);
    expect([e2.line, e2.column, e2.key]).toEqual([11, 1, "block_devices[1].path"]);
    expect(e2.reason).toBe("block_devices[1].path: required key is missing");
  });

  it("an inline block_devices array points at its key", () => {
    const e = errorOf(`name = "m"\ncpus = 1\nblock_devices = [{ path = "/a" }]\n${VALID_TAIL}`);
    expect([e.line, e.column, e.key]).toEqual([3, 1, "block_devices[0].read_only"]);
  });

  it("the first problem in file order leads; all are listed", () => {
    const e = errorOf(`name = "m"\ncpus = -1\nmemory_mb = "x"\ndisk_gb = 1\nstate = "on"\n`);
    expect([e.line, e.key]).toEqual([2, "cpus"]);
    expect(e.issues.map((i) => i.key)).toEqual(["cpus", "memory_mb", "state", "vm_id"]);
    expect(e.issues[3]?.line).toBeUndefined();
  });

  it("a missing key has no position", () => {
    const e = errorOf(`name = "m"\n${VALID_TAIL}`);
    expect(e.message).toBe("/m/config.toml: cpus: required key is missing");
  });

  it("a name that does not match the directory", () => {
    const e = errorOf(`cpus = 1\n${VALID_TAIL}name = "x"\n`, "m");
    expect(e.message).toBe(
      `/m/config.toml:6:1: name: "x" does not match its directory name "m" (a rule of arcbox-controller's own; arcbox-core loads it, ` +
        `but then takes the machine for "x": its state updates would fail, and a save would write a second directory)`,
    );
  });

  it("accepts what arcbox-core accepts: unknown keys, no created_at, offsets, BOM", () => {
    const now = new Date("2030-01-02T03:04:05.678Z");
    const parsed = parseMachineConfig(`\ufeffname = "m"\ncpus = 0x10\nnew_thing = { a = 1 }\n${VALID_TAIL}`, "/m/config.toml", "m", () => now);
    expect(parsed.machine.cpus).toBe(16);
    expect(parsed.machine.created_at).toBe("2030-01-02T03:04:05.678Z");
    expect(parsed.unknownKeys).toEqual(["new_thing"]);
    for (const ts of ["2026-04-27T04:13:21+02:00", "2026-04-27T04:13:21.123456789Z", "2026-04-27 04:13:21Z"]) {
      expect(parseMachineConfig(`name = "m"\ncpus = 1\ncreated_at = "${ts}"\n${VALID_TAIL}`, "/x").machine.created_at).toBe(ts);
    }
    expect(() => parseMachineConfig(`name = "m"\ncpus = 1\ncreated_at = "2026-04-27t04:13:21Z"\n${VALID_TAIL}`, "/x")).toThrow(
      /not an RFC 3339 timestamp as arcbox-core's chrono reads it/,
    );
  });
});
