/** Changing state / ip_address edits only those bytes; everything else of the file stays. */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { InvalidConfigError, MAX_CONFIG_BYTES } from "../../src/store/index.js";
import { coreCheckAll, coreLine, itWithCoreLoader } from "../helpers/arcbox-core.js";
import { runCli } from "../helpers/cli-process.js";
import { fixtureConfig } from "../helpers/fixtures.js";
import { useTempStore } from "./temp-store.js";

const HAND_WRITTEN = `# My dev box, edited by hand
name    = 'dev'          # must match the directory
cpus=2
memory_mb = 4_096
disk_gb = 20
future_key = { nested = [1, 2.5, "x"] }   # from a newer arcbox

   state   =   "running"   # set by arcbox
vm_id = "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48"
created_at = "2026-04-27T05:01:09.120004Z"

[[block_devices]]
path = '/a'   # root
read_only = true
`;

/** Asserts `after` equals `before` except that `before.slice(start, end)` became `middle`. */
function expectOnlyChanged(before: string, after: string, start: number, end: number, middle: string): void {
  let prefix = 0;
  while (prefix < before.length && before[prefix] === after[prefix]) prefix++;
  let suffix = 0;
  while (suffix < before.length - prefix && before[before.length - 1 - suffix] === after[after.length - 1 - suffix]) suffix++;
  expect(prefix).toBeGreaterThanOrEqual(start);
  expect(before.length - suffix).toBeLessThanOrEqual(end);
  expect(after).toBe(before.slice(0, start) + middle + before.slice(end));
}

const t = useTempStore();

describe("minimal edits", () => {
  it("a state change on a commented, hand-formatted file changes only the state value's bytes", async () => {
    await t.put("dev", HAND_WRITTEN);
    await t.store.updateState("dev", "stopped");
    const after = (await t.bytes("dev")).toString();
    const start = HAND_WRITTEN.indexOf('"running"');
    expectOnlyChanged(HAND_WRITTEN, after, start, start + '"running"'.length, '"stopped"');
    expect((await t.store.load("dev")).machine.state).toBe("stopped");
  });

  it("keeps 'literal' quoting (toml05) and changes the value length when needed", async () => {
    const original = (await readFile(fixtureConfig("toml05/fresh"))).toString();
    await t.put("fresh", original);
    await t.store.updateState("fresh", "running");
    const start = original.indexOf("'created'");
    expectOnlyChanged(original, (await t.bytes("fresh")).toString(), start, start + 9, "'running'");
  });

  it("updateIp inserts one line where a key-sorted (toml05) file has it, then edits and clears it", async () => {
    const original = (await readFile(fixtureConfig("toml05/fresh"))).toString();
    await t.put("fresh", original);
    await t.store.updateIp("fresh", "10.0.2.99");
    const withIp = (await t.bytes("fresh")).toString();
    const at = original.indexOf("kernel = ");
    expect(withIp).toBe(`${original.slice(0, at)}ip_address = '10.0.2.99'\n${original.slice(at)}`);

    await t.store.updateIp("fresh", "10.0.2.100");
    const start = withIp.indexOf("'10.0.2.99'");
    expectOnlyChanged(withIp, (await t.bytes("fresh")).toString(), start, start + 11, "'10.0.2.100'");

    await t.store.updateIp("fresh", null);
    expect((await t.bytes("fresh")).toString()).toBe(original);
    expect((await t.store.load("fresh")).machine.ip_address).toBeUndefined();
  });

  it("updateIp on an unsorted file inserts right before the state line, in its style", async () => {
    await t.put("dev", HAND_WRITTEN);
    await t.store.updateIp("dev", "192.168.64.7");
    const at = HAND_WRITTEN.indexOf("   state");
    expect((await t.bytes("dev")).toString()).toBe(
      `${HAND_WRITTEN.slice(0, at)}   ip_address   =   "192.168.64.7"\n${HAND_WRITTEN.slice(at)}`,
    );
    await t.store.updateIp("dev", null);
    expect((await t.bytes("dev")).toString()).toBe(HAND_WRITTEN);
  });

  it("clearing ip_address on a toml08 file removes exactly its line", async () => {
    const original = (await readFile(fixtureConfig("toml08/dev"))).toString();
    await t.put("dev", original);
    await t.store.updateIp("dev", null);
    expect((await t.bytes("dev")).toString()).toBe(original.replace('ip_address = "10.0.2.15"\n', ""));
  });

  it("state and ip in one update are both minimal; CRLF line ends are kept", async () => {
    const crlf = (await readFile(fixtureConfig("toml08/default"))).toString().replace(/\n/g, "\r\n");
    await t.put("default", crlf);
    await t.store.update("default", (m) => {
      m.state = "stopped";
      m.ip_address = "10.0.2.20";
    });
    const expected = crlf
      .replace('state = "running"', 'ip_address = "10.0.2.20"\r\nstate = "stopped"');
    expect((await t.bytes("default")).toString()).toBe(expected);
  });

  it("an IP that cannot be a 'literal' string is written as an escaped basic string", async () => {
    const original = (await readFile(fixtureConfig("toml05/build"))).toString();
    await t.put("build", original);
    await t.store.updateIp("build", "fe80::1%it's");
    expect((await t.bytes("build")).toString()).toBe(original.replace("'10.0.2.16'", `"fe80::1%it's"`));
    expect((await t.store.load("build")).machine.ip_address).toBe("fe80::1%it's");
  });

  it("a multi-line comment-like text inside a string is not mistaken for the state key", async () => {
    const text = `name = "m"\nnotes = """\nstate = "running"\n"""\ncpus = 1\nmemory_mb = 1\ndisk_gb = 1\nstate = "running"\nvm_id = "v"\n`;
    await t.put("m", text);
    await t.store.updateState("m", "stopped");
    expect((await t.bytes("m")).toString()).toBe(text.replace(/state = "running"\nvm_id/, 'state = "stopped"\nvm_id'));
  });

  it("writes nothing at all when the mutation changes nothing", async () => {
    const path = await t.put("dev", HAND_WRITTEN);
    const before = await stat(path);
    const loaded = await t.store.load("dev");
    const result = await t.store.updateState("dev", "running");
    const result2 = await t.store.update("dev", () => undefined);
    expect(result.revision).toBe(loaded.revision);
    expect(result2.revision).toBe(loaded.revision);
    const after = await stat(path);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
  });

  it("a change of another field re-serialises, keeping unknown keys (also inside block devices)", async () => {
    const text = `${HAND_WRITTEN}device_extra = "kept"\n`.replace("future_key", "other = 7\nfuture_key");
    // device_extra lands in the [[block_devices]] table: an unknown key of block device 0
    await t.put("dev", text);
    const before = await t.store.load("dev");
    expect(before.unknownKeys).toEqual(["other", "future_key", "block_devices[0].device_extra"]);
    await t.store.update("dev", (m) => {
      m.cpus = 6;
      m.state = "stopped";
    });
    const after = await t.store.load("dev");
    expect(after.unknownKeys.sort()).toEqual(["block_devices[0].device_extra", "future_key", "other"]);
    expect(after.machine).toEqual({ ...before.machine, cpus: 6, state: "stopped" });
    const written = (await t.bytes("dev")).toString();
    expect(written).toContain('other = 7\n');
    expect(written).toContain('[future_key]\nnested = [ 1, 2.5, "x" ]');
    expect(written).toContain('device_extra = "kept"');
    expect(written.startsWith('name = "dev"\ncpus = 6\nmemory_mb = 4096\n')).toBe(true);
  });

  it("keeps the file name of the directory", async () => {
    await t.put("dev", HAND_WRITTEN);
    const loaded = await t.store.updateState("dev", "stopped");
    expect(loaded.path).toBe(join(t.dir, "dev", "config.toml"));
  });
});

/** Root keys of a hand-written file; `state` comes in one of serde's forms, in the root or after it. */
const ROOT = `# hand-written, keep this comment
name = 'm'   # the directory's name
cpus = 2
memory_mb = 4_096
disk_gb = 20
vm_id = "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48"
created_at = "2026-04-27T05:01:09.120004Z"
`;

/** serde's forms of `state = running`: the string, and the externally tagged enum as a table in each TOML spelling. */
const STATE_FORMS: [label: string, text: string][] = [
  ["a string", `name = 'm'\nstate = "running"   # set by arcbox\n${ROOT.split("\n").slice(2).join("\n")}`],
  ["an inline table", `${ROOT}state = { running = {} }   # serde's enum form\n`],
  ["an inline table with a quoted variant", `${ROOT}state = { "running" = { } }\n`],
  ["a dotted key", `${ROOT}state.running = {}\n`],
  ["a dotted key with a literal-quoted variant", `${ROOT}state . 'running' = {}\n`],
  ["a [state.running] header", `${ROOT}\n[state.running]   # the variant\n# nothing in it\n`],
  ["a [state] header holding running = {}", `${ROOT}\n[state]\nrunning = {}  # the variant\n`],
  ["a [state] header and a [state.running] header", `${ROOT}\n[state]\n[state.running]\n`],
];

describe("every form of state is edited in place", () => {
  const t = useTempStore();

  it.each(STATE_FORMS)("%s: only the name of the state changes; then ip_address goes in among the root keys", async (_label, original) => {
    await t.put("m", original);
    const before = await t.store.load("m");
    expect(before.machine.state).toBe("running");
    await t.store.updateState("m", "stopped");
    const stopped = (await t.bytes("m")).toString();
    const at = original.indexOf("running");
    expectOnlyChanged(original, stopped, at, at + "running".length, "stopped");
    expect((await t.store.load("m")).machine).toEqual({ ...before.machine, state: "stopped" });

    await t.store.updateIp("m", "10.0.2.15");
    const withIp = (await t.bytes("m")).toString();
    // Before the line of `state` when it is a root key; else after the last root key.
    const stateLine = stopped.search(/^state\b/m);
    const at2 = stateLine >= 0 ? stateLine : stopped.indexOf("created_at") + ROOT.split("\n").at(-2)!.length + 1;
    expect(withIp).toBe(`${stopped.slice(0, at2)}ip_address = "10.0.2.15"\n${stopped.slice(at2)}`);
    expect((await t.store.load("m")).machine).toEqual({ ...before.machine, state: "stopped", ip_address: "10.0.2.15" });
  });

  itWithCoreLoader("each form, edited, loads in arcbox-core with the new state and ip, every other field unchanged", async (loader) => {
    const names = STATE_FORMS.map((_, i) => `m${i}`);
    for (const [i, [, text]] of STATE_FORMS.entries()) {
      const name = names[i] as string;
      await t.put(name, text.replace("name = 'm'", `name = '${name}'`));
      await t.store.update(name, (m) => {
        m.state = "created";
        m.ip_address = "10.0.2.15";
      });
    }
    const verdicts = await coreCheckAll(loader, t.dir, names);
    for (const [i, name] of names.entries()) {
      const { machine } = await t.store.load(name);
      expect(machine).toMatchObject({ state: "created", ip_address: "10.0.2.15", cpus: 2, memory_mb: 4096n });
      expect(verdicts[i]?.output, name).toBe(coreLine(machine));
    }
  });

  it("a file that starts with a BOM keeps it first when ip_address goes before its first line", async () => {
    const original = `\ufeffstate = "running"\n${ROOT}`;
    await t.put("m", original);
    await t.store.updateIp("m", "10.0.2.15");
    expect((await t.bytes("m")).toString()).toBe(`\ufeffip_address = "10.0.2.15"\n${original.slice(1)}`);
  });
});

describe("a write never makes a valid file invalid", () => {
  const t = useTempStore();
  /** A valid file of exactly `size` bytes whose full re-serialisation is larger: no created_at, a literal string of backslashes. */
  const padded = (size: number, state: string) => {
    const head = `${ROOT.replace(/created_at.*\n/, "")}notes = '`;
    const tail = `'\n${state}`;
    return `${head}${"\\".repeat(size - head.length - tail.length)}${tail}`;
  };

  it("a 1 MiB file with state as [state.running] is recovered in place, staying 1 MiB and valid", async () => {
    const original = padded(MAX_CONFIG_BYTES, "[state.running]\n");
    expect(Buffer.byteLength(original)).toBe(MAX_CONFIG_BYTES);
    await t.put("m", original);
    await t.store.updateState("m", "stopped");
    expect((await t.bytes("m")).toString()).toBe(original.replace("[state.running]", "[state.stopped]"));
    expect((await t.store.load("m")).machine.state).toBe("stopped");
  });

  it("a re-serialisation that would be over 1 MiB is refused, and the file stays as it was", async () => {
    const original = padded(MAX_CONFIG_BYTES - 1000, 'state = "running"\n');
    await t.put("m", original);
    const error = await t.store.update("m", (m) => void (m.cpus = 3)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidConfigError);
    expect((error as Error).message).toMatch(
      /: refusing to write \d+ bytes: config files are limited to 1 MiB \(1048576 bytes\); nothing was written$/,
    );
    expect((await t.bytes("m")).toString()).toBe(original);
    expect((await t.store.load("m")).machine.cpus).toBe(2);
  });

  it("recovery through the built CLI of a [state.running] file keeps its comments and every byte but the state's", async () => {
    const original = `${ROOT}\n# the state, in serde's table form\n[state.running]   # since boot\n`;
    await t.put("m", original);
    const result = await runCli(["reconcile", "--liveness", "none", "--no-hooks", "-d", t.dir, "-o", "json"]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ machines: 1, recovered: 1, errors: 0, invalid: 0 });
    expect((await t.bytes("m")).toString()).toBe(original.replace("[state.running]", "[state.stopped]"));
  });
});
