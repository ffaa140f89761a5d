/**
 * Bad input: every case is a precise error (class, line:column, reason) and the file stays
 * byte-identical through load, loadAll, an attempted update and an attempted save.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  InvalidConfigError,
  InvalidNameError,
  MachineNotFoundError,
  readMachineConfig,
  StoreError,
} from "../../src/store/index.js";
import { isEntryName } from "../../src/store/machine-entries.js";
import { configText, sampleMachine, useTempStore, type TempStore } from "./temp-store.js";

const BASE = configText("m");
/** BASE with the line of `key` replaced by `line` (or removed when `line` is null). */
function withLine(key: string, line: string | null): string {
  const lines = BASE.split("\n");
  const i = lines.findIndex((l) => l.startsWith(`${key} =`));
  if (i < 0) throw new Error(`no ${key} in base`);
  if (line === null) lines.splice(i, 1);
  else lines[i] = line;
  return lines.join("\n");
}

type ErrorClass = typeof InvalidConfigError | typeof InvalidNameError;
interface BadCase {
  label: string;
  /** Directory name (default "m"). */
  name?: string;
  /** Config text, or a setup that creates the bad entry and returns the path to watch. */
  text?: string | Buffer;
  setup?: (t: TempStore, outside: string) => Promise<string>;
  error: ErrorClass;
  line?: number;
  column?: number;
  reason: string;
  /** Path the error names, relative to the machines dir (default `<name>/config.toml`). */
  errorPath?: string;
}

const devices = (second: string) =>
  `${BASE}\n[[block_devices]]\npath = "/a"\nread_only = true\n\n[[block_devices]]\n${second}`;

const CASES: BadCase[] = [
  { label: "TOML syntax error", text: withLine("vm_id", 'vm_id = "unterminated'), error: InvalidConfigError, line: 6, column: 22, reason: "invalid TOML: Unterminated string constant" },
  { label: "TOML syntax error: unclosed header", text: `${BASE}[[block_devices]`, error: InvalidConfigError, line: 8, column: 17, reason: "invalid TOML: Unterminated table-key" },
  { label: "duplicate key", text: `${BASE}cpus = 3\n`, error: InvalidConfigError, line: 8, column: 1, reason: "invalid TOML: Defining a key multiple times is invalid" },
  { label: "empty file", text: "", error: InvalidConfigError, line: 1, column: 1, reason: "the file has no keys" },
  { label: "only comments", text: "# nothing here\n", error: InvalidConfigError, line: 1, column: 1, reason: "the file has no keys" },
  { label: "cpus as float", text: withLine("cpus", "cpus = 4.0"), error: InvalidConfigError, line: 2, column: 1, reason: "cpus: expected an integer, found a float (4)" },
  { label: "cpus as string", text: withLine("cpus", 'cpus = "4"'), error: InvalidConfigError, line: 2, column: 1, reason: 'cpus: expected an integer, found a string ("4")' },
  { label: "cpus -1", text: withLine("cpus", "cpus = -1"), error: InvalidConfigError, line: 2, column: 1, reason: "cpus: -1 is out of range (0 ..= 4294967295)" },
  { label: "cpus 2^32", text: withLine("cpus", "cpus = 4294967296"), error: InvalidConfigError, line: 2, column: 1, reason: "cpus: 4294967296 is out of range (0 ..= 4294967295)" },
  { label: "memory_mb -1", text: withLine("memory_mb", "memory_mb = -1"), error: InvalidConfigError, line: 3, column: 1, reason: "memory_mb: -1 is out of range (0 ..= 9223372036854775807)" },
  { label: "disk_gb -1", text: withLine("disk_gb", "disk_gb = -1"), error: InvalidConfigError, line: 4, column: 1, reason: "disk_gb: -1 is out of range" },
  { label: "memory_mb beyond i64", text: withLine("memory_mb", "memory_mb = 9223372036854775808"), error: InvalidConfigError, line: 3, column: 1, reason: "memory_mb: integer 9223372036854775808 does not fit in 64 bits" },
  { label: "unknown key beyond i64", text: `${BASE}future = -9223372036854775809\n`, error: InvalidConfigError, line: 8, column: 1, reason: "future: integer -9223372036854775809 does not fit in 64 bits" },
  { label: "state capitalised", text: withLine("state", 'state = "Running"'), error: InvalidConfigError, line: 5, column: 1, reason: 'state: expected "created", "running" or "stopped" (lowercase), found "Running"' },
  { label: "state starting", text: withLine("state", "state = 'starting'"), error: InvalidConfigError, line: 5, column: 1, reason: 'found "starting"' },
  { label: "state not a string", text: withLine("state", "state = 1"), error: InvalidConfigError, line: 5, column: 1, reason: "state:" },
  { label: "name differs from directory", text: withLine("name", 'name = "other"'), error: InvalidConfigError, line: 1, column: 1, reason: 'name: "other" does not match its directory name "m"' },
  { label: "bare datetime in created_at", text: withLine("created_at", "created_at = 2026-04-27T05:01:09.120004Z"), error: InvalidConfigError, line: 7, column: 1, reason: "created_at: expected a string, found a bare TOML datetime; quote it" },
  { label: "created_at not RFC 3339", text: withLine("created_at", 'created_at = "yesterday"'), error: InvalidConfigError, line: 7, column: 1, reason: 'created_at: "yesterday" is not an RFC 3339 timestamp' },
  { label: "created_at month 13", text: withLine("created_at", 'created_at = "2026-13-01T00:00:00Z"'), error: InvalidConfigError, line: 7, column: 1, reason: "is not an RFC 3339 timestamp" },
  { label: "created_at without offset", text: withLine("created_at", 'created_at = "2026-04-27T05:01:09"'), error: InvalidConfigError, line: 7, column: 1, reason: "is not an RFC 3339 timestamp" },
  { label: "block_devices not an array", text: `${BASE}block_devices = "none"\n`, error: InvalidConfigError, line: 8, column: 1, reason: "block_devices: expected an array of tables" },
  { label: "block device without read_only", text: devices('path = "/b"\n'), error: InvalidConfigError, line: 13, column: 1, reason: "block_devices[1].read_only: required key is missing" },
  { label: "block device read_only as string", text: devices('path = "/b"\nread_only = "yes"\n'), error: InvalidConfigError, line: 15, column: 1, reason: 'block_devices[1].read_only: expected a boolean, found a string ("yes")' },
  { label: "optional string of wrong type", text: `${BASE}ip_address = 10\n`, error: InvalidConfigError, line: 8, column: 1, reason: "ip_address: expected a string, found an integer (10)" },
  { label: "missing name", text: withLine("name", null), error: InvalidConfigError, reason: "name: required key is missing" },
  { label: "missing vm_id", text: withLine("vm_id", null), error: InvalidConfigError, reason: "vm_id: required key is missing" },
  { label: "missing cpus", text: withLine("cpus", null), error: InvalidConfigError, reason: "cpus: required key is missing" },
  {
    label: "not UTF-8",
    text: Buffer.from(BASE.replace('vm_id = "', 'vm_id = "ab\u0001').replace("\u0001", "\u00ff"), "latin1"),
    error: InvalidConfigError,
    line: 6,
    column: 12,
    reason: "not UTF-8: invalid byte 0xff",
  },
  {
    label: "truncated UTF-8 sequence",
    text: Buffer.concat([Buffer.from('name = "m"\nvm_id = "x'), Buffer.from([0xc3]), Buffer.from('y"\n')]),
    error: InvalidConfigError,
    line: 2,
    column: 11,
    reason: "not UTF-8: invalid byte 0xc3",
  },
  {
    label: "larger than 1 MiB",
    text: `${BASE}${"#".repeat(1024 * 1024)}\n`,
    error: InvalidConfigError,
    reason: "config files are limited to 1 MiB",
  },
  {
    label: "config is a symlink",
    setup: async (t, outside) => {
      const target = join(outside, "real.toml");
      await writeFile(target, BASE);
      await mkdir(join(t.dir, "m"));
      await symlink(target, join(t.dir, "m", "config.toml"));
      return join(t.dir, "m", "config.toml");
    },
    error: InvalidConfigError,
    reason: "is a symbolic link",
  },
  {
    label: "config is a directory",
    setup: async (t) => {
      await mkdir(join(t.dir, "m", "config.toml"), { recursive: true });
      return join(t.dir, "m", "config.toml");
    },
    error: InvalidConfigError,
    reason: "is not a regular file (a directory; arcbox-core cannot load it either)",
  },
  {
    label: "config is a fifo",
    setup: async (t) => {
      await mkdir(join(t.dir, "m"));
      execFileSync("mkfifo", [join(t.dir, "m", "config.toml")]);
      return join(t.dir, "m", "config.toml");
    },
    error: InvalidConfigError,
    reason: "is not a regular file (a fifo)",
  },
  {
    label: "machine directory is a symlink",
    setup: async (t, outside) => {
      await mkdir(join(outside, "m"));
      await writeFile(join(outside, "m", "config.toml"), BASE);
      await symlink(join(outside, "m"), join(t.dir, "m"));
      return join(t.dir, "m");
    },
    error: InvalidConfigError,
    reason: "machine directory is a symbolic link",
    errorPath: "m",
  },
  { label: "directory name with leading dash", name: "-m", text: configText("-m"), error: InvalidNameError, reason: "must start with a letter or digit", errorPath: "-m" },
  { label: "directory name ending in a dot", name: "m.", text: configText("m."), error: InvalidNameError, reason: "must not end in '.'", errorPath: "m." },
  { label: "directory name of 129 characters", name: "a".repeat(129), text: configText("a".repeat(129)), error: InvalidNameError, reason: "129 characters", errorPath: "a".repeat(129) },
  { label: "directory name with a space", name: "my vm", text: configText("my vm"), error: InvalidNameError, reason: "only letters, digits", errorPath: "my vm" },
];

async function fingerprint(path: string): Promise<string> {
  const stat = await lstat(path);
  if (stat.isSymbolicLink()) return `link:${await readlink(path)}`;
  if (stat.isDirectory()) return `dir:${(await readdir(path)).join(",")}`;
  if (stat.isFIFO()) return "fifo";
  return `file:${stat.mode}:${createHash("sha256").update(await readFile(path)).digest("hex")}`;
}

const t = useTempStore();
let outside: string;
beforeEach(async () => {
  outside = await mkdtemp(join(tmpdir(), "arcbox-outside-"));
});
afterEach(async () => {
  await rm(outside, { recursive: true, force: true });
});

describe("bad input", () => {
  it("has at least 25 cases", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(25);
  });

  it.each(CASES.map((c) => [c.label, c] as const))("%s", async (_label, c) => {
    const name = c.name ?? "m";
    const watched = c.setup ? await c.setup(t, outside) : await t.put(name, c.text ?? "");
    const before = await fingerprint(watched);
    const outsideBefore = await readdir(outside);

    const error = await t.store.load(name).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(c.error);
    const e = error as InvalidConfigError & InvalidNameError;
    const errorPath = join(t.dir, c.errorPath ?? join(name, "config.toml"));
    expect(e.path).toBe(errorPath);
    expect(e.message).toContain(c.reason);
    if (c.error === InvalidConfigError) {
      expect(e.line).toBe(c.line);
      expect(e.column).toBe(c.column);
      const where = c.line === undefined ? "" : `:${c.line}:${c.column}`;
      expect(e.message).toBe(`${errorPath}${where}: ${e.reason}`);
    }

    const all = await t.store.loadAll();
    expect(all.machines).toEqual([]);
    expect(all.invalid).toHaveLength(1);
    expect(all.invalid[0]?.name).toBe(name);
    expect(all.invalid[0]?.error).toBeInstanceOf(c.error);
    expect(all.invalid[0]?.error.message).toBe(e.message);

    await expect(t.store.update(name, (m) => void (m.state = "running"))).rejects.toBeInstanceOf(StoreError);
    await expect(t.store.updateIp(name, "10.1.1.1")).rejects.toBeInstanceOf(StoreError);
    await expect(t.store.save(sampleMachine(name))).rejects.toBeInstanceOf(c.error);

    if (c.errorPath === undefined) {
      // the standalone reader (for `validate`) reports the same problem on the same path
      const standalone = await readMachineConfig(watched, { expectedName: name }).catch((x: unknown) => x);
      expect((standalone as Error).message).toBe(e.message);
    }

    expect(await fingerprint(watched)).toBe(before);
    expect(await readdir(outside)).toEqual(outsideBefore);
    expect((await readdir(join(t.dir))).sort()).toEqual([name]);
  });
});

describe("names that could escape the machines directory", () => {
  // Invalid names that cannot escape ("-x", ".hidden" …) are covered in invalid-names.test.ts.
  it.each(["..", ".", "a/b", "../x", "", "/etc", "a\u0000b"])(
    "%j is refused before any path is touched",
    async (name) => {
      // A single path component is looked up: absent, it is no machine; anything else is refused.
      await expect(t.store.load(name)).rejects.toBeInstanceOf(isEntryName(name) ? MachineNotFoundError : InvalidNameError);
      await expect(t.store.update(name, () => undefined)).rejects.toBeInstanceOf(InvalidNameError);
      await expect(t.store.remove(name)).rejects.toBeInstanceOf(InvalidNameError);
      await expect(t.store.save(sampleMachine(name))).rejects.toBeInstanceOf(InvalidNameError);
      expect(() => t.store.configPath(name)).toThrow(InvalidNameError);
      expect(await readdir(t.dir)).toEqual([]);
    },
  );
});
