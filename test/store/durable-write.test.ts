/** Durable writes: short writes, modes kept, temp files swept (faults: io-faults.test.ts). */
import { chmod, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MachineStore, StoreIoError, isTempFileName } from "../../src/store/index.js";
import { fsOpsWith, systemError } from "./fs-ops.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";
import { isMainThread } from "node:worker_threads";

const t = useTempStore();

const ORIGINAL = configText("m");

describe("short writes", () => {
  it("are continued until everything is written", async () => {
    const store = new MachineStore({
      dir: t.dir,
      fs: fsOpsWith({ write: (real) => (fd, d, o, l, p) => real(fd, d, o, Math.min(l, 7), p) }),
    });
    const machine = sampleMachine("m");
    await store.save(machine);
    expect((await store.load("m")).machine).toEqual(machine);
  });
});

describe("modes", () => {
  it("a rewrite keeps the file's mode (0640 stays 0640), minimal or full", async () => {
    const path = await t.put("m", ORIGINAL, 0o640);
    await t.store.updateState("m", "running");
    expect((await stat(path)).mode & 0o7777).toBe(0o640);
    await t.store.update("m", (m) => void (m.cpus = 3));
    expect((await stat(path)).mode & 0o7777).toBe(0o640);
    await chmod(path, 0o644);
    await t.store.save(sampleMachine("m"));
    expect((await stat(path)).mode & 0o7777).toBe(0o644);
  });

  it("a new file is 0600 and its new directory 0700, whatever the umask", async () => {
    // A worker thread (as the mutation tester runs tests) may not change the umask: there the
    // process's own one applies.
    const old = isMainThread ? process.umask(0) : undefined;
    try {
      await t.store.save(sampleMachine("fresh"));
    } finally {
      if (old !== undefined) process.umask(old);
    }
    expect((await stat(join(t.dir, "fresh", "config.toml"))).mode & 0o7777).toBe(0o600);
    expect((await stat(join(t.dir, "fresh"))).mode & 0o7777).toBe(0o700);
  });
});

describe("sweepTempFiles", () => {
  it("removes only this store's temp files", async () => {
    await t.put("m", ORIGINAL);
    await t.put("n", configText("n"));
    const ours = [
      join(t.dir, "m", ".config.toml.arcbox-tmp-1234-0123456789ab"),
      join(t.dir, "n", ".config.toml.arcbox-tmp-99-abcdefabcdef"),
    ];
    const theirs = [
      join(t.dir, "m", ".config.toml.swp"),
      join(t.dir, "m", "config.toml~"),
      join(t.dir, "m", ".config.toml.arcbox-tmp-notours"),
      join(t.dir, "m", "vm.pid"),
      join(t.dir, ".lock"),
    ];
    for (const p of [...ours, ...theirs]) await writeFile(p, "x");
    // a temp-like name in a symlinked (not ours) directory is not touched
    const elsewhere = await mkdtemp(join(tmpdir(), "arcbox-elsewhere-"));
    const foreign = join(elsewhere, ".config.toml.arcbox-tmp-1-0123456789ab");
    await writeFile(foreign, "x");
    await symlink(elsewhere, join(t.dir, "linked"));
    try {
      expect(await t.store.sweepTempFiles()).toEqual(ours.sort());
      for (const p of theirs) await expect(stat(p)).resolves.toBeDefined();
      await expect(stat(foreign)).resolves.toBeDefined();
      for (const p of ours) await expect(stat(p)).rejects.toThrow();
      expect(await t.store.sweepTempFiles()).toEqual([]);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it("recognises the names the writer uses", async () => {
    // capture a real temp name by failing the rename after the temp file exists
    let seen = "";
    const store = new MachineStore({
      dir: t.dir,
      fs: fsOpsWith({
        renameAt: () => async (_dir, from) => {
          seen = from;
          throw systemError("EIO", "i/o error");
        },
      }),
    });
    await expect(store.save(sampleMachine("m"))).rejects.toBeInstanceOf(StoreIoError);
    const base = seen.split("/").pop() as string;
    expect(base.startsWith(".config.toml.")).toBe(true);
    expect(isTempFileName(base)).toBe(true);
    expect(isTempFileName(".config.toml.swp")).toBe(false);
  });
});
