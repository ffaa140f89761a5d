/** Changing state / ip_address edits only those bytes; everything else of the file stays. */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
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
