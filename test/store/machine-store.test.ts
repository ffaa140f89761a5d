/** MachineStore listing, loadAll classification, save over existing files, the standalone reader. */
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  InvalidConfigError,
  InvalidNameError,
  isValidMachineName,
  MachineNotFoundError,
  readMachineConfig,
  StoreIoError,
  validateMachineName,
} from "../../src/store/index.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();

describe("list and loadAll", () => {
  it("classify every entry as arcbox-core's list() does; only the lock file is left out; nothing is dropped", async () => {
    await t.put("good", configText("good"));
    await t.put("bad", configText("bad").replace("cpus = 2", "cpus = 2.5"));
    await mkdir(join(t.dir, "empty"));
    await writeFile(join(t.dir, "stray-file"), "x");
    await mkdir(join(t.dir, "-weird"));
    await t.put("-named", configText("-named"));
    await t.put(".hidden", configText(".hidden"));
    await writeFile(join(t.dir, ".arcbox-controller.lock"), "123");
    await symlink(join(t.dir, "good"), join(t.dir, "alias"));
    await symlink(join(t.dir, "empty"), join(t.dir, "alias-of-empty"));

    expect(await t.store.list()).toEqual(["-named", ".hidden", "alias", "bad", "good"]);
    const all = await t.store.loadAll();
    expect(all.machines.map((m) => m.machine.name)).toEqual(["good"]);
    const invalid = Object.fromEntries(all.invalid.map((i) => [i.name, i]));
    expect(Object.keys(invalid).sort()).toEqual(["-named", ".hidden", "alias", "bad"]);
    expect(invalid["bad"]?.error).toBeInstanceOf(InvalidConfigError);
    expect(invalid["bad"]?.error.message).toBe(`${join(t.dir, "bad", "config.toml")}:2:1: cpus: expected an integer, found a float (2.5)`);
    expect(invalid["-named"]?.error).toBeInstanceOf(InvalidNameError);
    expect(invalid[".hidden"]?.error.message).toContain("a rule of arcbox-controller's own");
    expect(invalid["alias"]?.error.message).toContain("symbolic link");
    expect(invalid["alias"]?.path).toBe(join(t.dir, "alias"));
    const notMachines = Object.fromEntries(all.notMachines.map((n) => [n.name, n.reason]));
    expect(Object.keys(notMachines).sort()).toEqual(["-weird", "alias-of-empty", "empty", "stray-file"]);
    expect(notMachines["empty"]).toContain("no config.toml");
    expect(notMachines["stray-file"]).toContain("not a directory");
  });

  it("keep a name that is not UTF-8 as its bytes, so that two such names stay two; neither is a machine", async () => {
    const names = [Buffer.from([0x66, 0xfe]), Buffer.from([0x66, 0xff])];
    const pathOf = (name: Buffer) => Buffer.concat([Buffer.from(`${t.dir}/`), name]);
    for (const name of names) {
      await mkdir(pathOf(name));
      await writeFile(Buffer.concat([pathOf(name), Buffer.from("/config.toml")]), configText("f"));
    }
    expect(await t.store.list()).toEqual([]);
    const all = await t.store.loadAll();
    expect([all.machines, all.invalid]).toEqual([[], []]);
    expect(all.notMachines).toEqual(names.map((name) => ({ name, path: pathOf(name), reason: expect.stringContaining("not UTF-8") })));
  });

  it("load of a name that breaks the name rule: not found when it is no machine, invalid when arcbox-core would load it", async () => {
    await mkdir(join(t.dir, ".cache"));
    await expect(t.store.load(".cache")).rejects.toBeInstanceOf(MachineNotFoundError);
    await expect(t.store.load(".gone")).rejects.toBeInstanceOf(MachineNotFoundError);
    await t.put("..x", configText("..x"));
    await expect(t.store.load("..x")).rejects.toBeInstanceOf(InvalidNameError);
  });

  it("a missing machines directory is empty", async () => {
    const { MachineStore } = await import("../../src/store/index.js");
    const store = new MachineStore({ dir: join(t.dir, "nope") });
    expect(await store.list()).toEqual([]);
    expect(await store.loadAll()).toEqual({ machines: [], invalid: [], notMachines: [] });
    expect(await store.sweepTempFiles()).toEqual([]);
  });

  it("load of a missing machine or config is MachineNotFoundError", async () => {
    await expect(t.store.load("ghost")).rejects.toBeInstanceOf(MachineNotFoundError);
    await mkdir(join(t.dir, "hollow"));
    await expect(t.store.load("hollow")).rejects.toThrow(`${join(t.dir, "hollow", "config.toml")}: machine "hollow" not found`);
    await expect(t.store.updateState("ghost", "stopped")).rejects.toBeInstanceOf(MachineNotFoundError);
  });

  it("loadAll over 2000 machines reads them all (bounded concurrency)", async () => {
    const names = Array.from({ length: 2000 }, (_, i) => `vm-${String(i).padStart(5, "0")}`);
    for (const name of names) await t.put(name, configText(name));
    const all = await t.store.loadAll();
    expect(all.invalid).toEqual([]);
    expect(all.machines.map((m) => m.machine.name)).toEqual(names);
  });
});

describe("save", () => {
  it("keeps unknown keys of the file it replaces and refuses to replace an invalid file", async () => {
    await t.put("m", configText("m", 'added_by_newer = "x"\n'));
    await t.store.save(sampleMachine("m", { state: "running" }));
    const loaded = await t.store.load("m");
    expect(loaded.unknownKeys).toEqual(["added_by_newer"]);
    expect(loaded.machine).toEqual(sampleMachine("m", { state: "running" }));

    const invalid = configText("m").replace('state = "stopped"', 'state = "Stopped"');
    await t.put("m", invalid);
    await expect(t.store.save(sampleMachine("m"))).rejects.toBeInstanceOf(InvalidConfigError);
    expect((await t.bytes("m")).toString()).toBe(invalid);
  });

  it("refuses an invalid machine, writing nothing", async () => {
    for (const bad of [
      sampleMachine("m", { cpus: 4.5 }),
      sampleMachine("m", { cpus: -1 }),
      sampleMachine("m", { memory_mb: 2n ** 63n }),
      sampleMachine("m", { created_at: "not a date" }),
      sampleMachine("m", { state: "starting" as never }),
    ]) {
      await expect(t.store.save(bad)).rejects.toThrow(/refusing to write an invalid machine/);
    }
    await expect(t.store.load("m")).rejects.toBeInstanceOf(MachineNotFoundError);
  });

  it("writes created_at as a quoted string and keys in declaration order", async () => {
    await t.store.save(sampleMachine("m", { ip_address: "10.0.0.2" }));
    const text = (await readFile(join(t.dir, "m", "config.toml"))).toString();
    expect(text.split("\n").filter((l) => /^\w+ = /.test(l)).map((l) => l.split(" ")[0])).toEqual([
      "name", "cpus", "memory_mb", "disk_gb", "kernel", "cmdline", "distro", "distro_version", "ip_address",
      "state", "vm_id", "created_at", "path", "read_only", "path", "read_only",
    ]);
    expect(text).toContain('created_at = "2026-04-27T04:13:21.482913Z"');
    expect(text).toContain("[[block_devices]]");
    await t.store.update("m", (m) => void (m.block_devices = []));
    expect((await readFile(join(t.dir, "m", "config.toml"))).toString()).toContain("block_devices = []");
  });

  it("update refuses to rename a machine", async () => {
    await t.put("m", configText("m"));
    await expect(t.store.update("m", (m) => ({ ...m, name: "other" }))).rejects.toThrow(/cannot rename/);
    expect((await t.bytes("m")).toString()).toBe(configText("m"));
  });
});

describe("readMachineConfig and names", () => {
  it("reads any path, checking the name only when asked", async () => {
    const path = await t.put("m", configText("m"));
    const read = await readMachineConfig(path);
    expect(read.machine.name).toBe("m");
    expect(read.text).toBe(configText("m"));
    expect(read.revision).toMatch(/^sha256:[0-9a-f]{64}$/);
    await expect(readMachineConfig(path, { expectedName: "other" })).rejects.toThrow(/does not match its directory name "other"/);
    await expect(readMachineConfig(join(t.dir, "nothing.toml"))).rejects.toSatisfy(
      (e: unknown) => e instanceof StoreIoError && e.code === "ENOENT",
    );
  });

  it("validates machine names", () => {
    for (const ok of ["a", "A0", "vm-1.test_2", "9", "a".repeat(128), "a..b"]) expect(isValidMachineName(ok)).toBe(true);
    for (const bad of ["", "..", ".", "a/b", "-a", "_a", "a.", "a".repeat(129), "a b", "é", "a\\b"]) {
      expect(isValidMachineName(bad)).toBe(false);
      expect(() => validateMachineName(bad)).toThrow(InvalidNameError);
    }
    expect(() => validateMachineName("a.")).toThrow('machine name: invalid machine name "a.": it must not end in \'.\'');
  });
});
