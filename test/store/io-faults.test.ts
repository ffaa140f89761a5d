/**
 * I/O errors at every step of a durable write (EIO, EROFS, EDQUOT, EACCES, ENOSPC), for every kind of
 * write and every way of reaching names in an opened directory: each is a StoreIoError naming the file
 * and the errno (once), and leaves the original byte for byte and no temp file. No real device fails
 * on demand at a chosen step, so the faults are injected into the store's file operations.
 */
import { constants, writeFileSync } from "node:fs";
import { chown, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MachineStore, StoreIoError, type DurableFsOps } from "../../src/store/index.js";
import { DIR_ACCESS_KINDS, dirAccessAvailable, fsOpsFor } from "../../src/store/dir-ops.js";
import { fsOpsWith, systemError } from "./fs-ops.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();
const ORIGINAL = configText("m");
const ERRNOS = ["EIO", "EROFS", "EDQUOT", "EACCES", "ENOSPC"] as const;
const isRoot = process.getuid?.() === 0;

type Fault = (code: string) => Parameters<typeof fsOpsWith>[0];
const DESCRIPTIONS: Record<string, string> = {
  EIO: "i/o error",
  EROFS: "read-only file system",
  EDQUOT: "disk quota exceeded",
  EACCES: "permission denied",
  ENOSPC: "no space left on device",
};
const fail = (code: string) => systemError(code, DESCRIPTIONS[code] ?? "error");
const isTemp = (name: string) => name.startsWith(".config.toml.arcbox-tmp-");
const isDirectory = async (ops: DurableFsOps, fd: number) => (await ops.fstat(fd)).isDirectory();

/** Each step of a write, the fault that makes it fail, and the operation the error names. */
function steps(base: DurableFsOps): { step: string; fault: Fault; operation: RegExp; replaceOnly?: boolean; newOnly?: boolean }[] {
  return [
    {
      step: "creating the temp file",
      fault: (code) => ({ openAt: (real) => async (dir, name, flags, mode) => ((flags & constants.O_CREAT) !== 0 ? Promise.reject(fail(code)) : real(dir, name, flags, mode)) }),
      operation: /^create \(temp file \.config\.toml\.arcbox-tmp-/,
    },
    { step: "fchmod", fault: (code) => ({ fchmod: () => async () => Promise.reject(fail(code)) }), operation: /^fchmod/ },
    ...(isRoot
      ? [{ step: "fchown (a file owned by another user)", fault: ((code) => ({ fchown: () => async () => Promise.reject(fail(code)) })) as Fault, operation: /^fchown/, replaceOnly: true }]
      : []),
    {
      step: "write, after a partial write",
      fault: (code) => ({
        write: (real) => {
          let calls = 0;
          return async (fd, data, offset, length, position) => (calls++ === 0 ? real(fd, data, offset, Math.min(length, 10), position) : Promise.reject(fail(code)));
        },
      }),
      operation: /^write/,
    },
    {
      step: "fsync of the temp file",
      fault: (code) => ({ fsync: (real) => async (fd) => ((await isDirectory(base, fd)) ? real(fd) : Promise.reject(fail(code))) }),
      operation: /^fsync \(temp file/,
    },
    {
      step: "close of the temp file",
      fault: (code) => ({ close: (real) => async (fd) => ((await base.fstat(fd)).nlink === 1n && !(await isDirectory(base, fd)) ? real(fd).then(() => Promise.reject(fail(code))) : real(fd)) }),
      operation: /^close/,
    },
    {
      step: "the check of the file before the swap",
      fault: (code) => ({ statAt: (real) => async (dir, name) => (name === "config.toml" ? Promise.reject(fail(code)) : real(dir, name)) }),
      operation: /^check$/,
      replaceOnly: true,
    },
    {
      step: "the atomic swap (rename)",
      fault: (code) => ({ renameAt: (real) => async (dir, from, to, mode) => (mode === "exchange" ? Promise.reject(fail(code)) : real(dir, from, to, mode)) }),
      operation: /^exchange \(temp file/,
      replaceOnly: true,
    },
    {
      step: "the rename of a new file",
      fault: (code) => ({ renameAt: (real) => async (dir, from, to, mode) => (mode === "noreplace" ? Promise.reject(fail(code)) : real(dir, from, to, mode)) }),
      operation: /^rename \(temp file/,
      newOnly: true,
    },
    {
      step: "looking at what the swap replaced",
      fault: (code) => ({ statAt: (real) => async (dir, name) => (isTemp(name) ? Promise.reject(fail(code)) : real(dir, name)) }),
      operation: /^look at what the swap replaced \(temp file \.config\.toml\.arcbox-tmp-/,
      replaceOnly: true,
    },
    {
      step: "fsync of the directory",
      fault: (code) => ({ fsync: (real) => async (fd) => ((await isDirectory(base, fd)) ? Promise.reject(fail(code)) : real(fd)) }),
      operation: /^fsync directory$/,
    },
  ];
}

const WRITES = [
  { label: "minimal edit", replaces: true, run: (s: MachineStore) => s.updateState("m", "running") },
  { label: "re-serialisation", replaces: true, run: (s: MachineStore) => s.update("m", (m) => void (m.cpus = 7)) },
  { label: "save over a file", replaces: true, run: (s: MachineStore) => s.save(sampleMachine("m")) },
  { label: "save of a new machine", replaces: false, run: (s: MachineStore) => s.save(sampleMachine("m")) },
] as const;

describe.each(DIR_ACCESS_KINDS.filter(dirAccessAvailable))("names reached through %s", (kind) => {
  const base = fsOpsFor(kind);
  const cases = steps(base).flatMap((s) => ERRNOS.map((code) => [s.step, code, s] as const));

  it.each(cases)("%s fails with %s: StoreIoError naming file and errno, original intact, no temp file", async (_step, code, s) => {
    for (const write of WRITES) {
      if ((s.replaceOnly && !write.replaces) || (s.newOnly && write.replaces)) continue;
      await t.cleanup();
      const path = write.replaces ? await t.put("m", ORIGINAL, 0o640) : join(t.dir, "m", "config.toml");
      if (write.replaces && s.step.startsWith("fchown")) await chown(path, 4321, 4321);
      const store = new MachineStore({ dir: t.dir, fs: fsOpsWith(s.fault(code), base) });
      const error = await write.run(store).catch((e: unknown) => e);
      const where = `${write.label}: ${String(error)}`;
      expect(error, where).toBeInstanceOf(StoreIoError);
      const io = error as StoreIoError;
      const expectedPath = s.step.includes("directory") ? join(t.dir, "m") : path;
      expect(io.path, where).toBe(expectedPath);
      expect(io.code, where).toBe(code);
      expect(io.operation, where).toMatch(s.operation);
      expect(io.message, where).toMatch(new RegExp(`^${expectedPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: .* failed: ${code}`));
      // the errno once, not "ENOSPC: ENOSPC:"
      expect(io.message.split(code).length - 1, where).toBe(1);
      if (write.replaces) {
        expect((await t.bytes("m")).toString(), where).toBe(ORIGINAL);
        expect((await stat(path)).mode & 0o7777, where).toBe(0o640);
        expect(await readdir(join(t.dir, "m")), where).toEqual(["config.toml"]);
      } else {
        expect(await readdir(join(t.dir, "m")), where).toEqual([]);
      }
      // once the fault is gone, the same write goes through
      await write.run(new MachineStore({ dir: t.dir, fs: base }));
      expect(await readdir(join(t.dir, "m")), where).toEqual(["config.toml"]);
    }
  });

  it("a real system error from a failing call names the errno once, with its description", async () => {
    // A real EISDIR from the system: the config "file" is a directory that cannot be replaced.
    await t.put("m", ORIGINAL);
    const store = new MachineStore({
      dir: t.dir,
      fs: fsOpsWith({ write: (real) => async (fd, d, o, l, p) => real(fd + 100_000, d, o, l, p) }, base),
    });
    const error = (await store.updateState("m", "running").catch((e: unknown) => e)) as StoreIoError;
    expect(error).toBeInstanceOf(StoreIoError);
    expect(error.code).toBe("EBADF");
    expect(error.message).toMatch(/: write \(temp file \.config\.toml\.arcbox-tmp-\d+-[0-9a-f]{12}\) failed: EBADF \(bad file descriptor\)$/);
    expect(error.message).not.toContain("/fd/");
  });
});

describe("when the file system cannot swap or refuse to replace", () => {
  const unsupported = fsOpsWith({
    renameAt: (real) => async (dir, from, to, mode) => (mode === "replace" ? real(dir, from, to, mode) : Promise.reject(systemError("EINVAL", "invalid argument"))),
  });

  it("a plain rename after a content check still writes, and still refuses to overwrite a change", async () => {
    await t.put("m", ORIGINAL);
    const store = new MachineStore({ dir: t.dir, fs: unsupported });
    await store.updateState("m", "running");
    expect((await t.bytes("m")).toString()).toBe(ORIGINAL.replace('"stopped"', '"running"'));
    await store.save(sampleMachine("n"));
    expect((await store.load("n")).machine).toEqual(sampleMachine("n"));
    const error = await store
      .update("m", (m) => {
        writeFileSync(join(t.dir, "m", "config.toml"), configText("m", "extra = 1\n"));
        m.cpus = 9;
      })
      .catch((e: unknown) => e);
    expect(String(error)).toMatch(/ConflictError/);
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });

  it.each(ERRNOS)("%s at the plain rename: original intact, no temp file", async (code) => {
    const path = await t.put("m", ORIGINAL);
    const store = new MachineStore({
      dir: t.dir,
      fs: fsOpsWith({ renameAt: () => async (_d, _f, _t, mode) => Promise.reject(mode === "replace" ? fail(code) : systemError("EINVAL", "invalid argument")) }),
    });
    const error = (await store.updateState("m", "running").catch((e: unknown) => e)) as StoreIoError;
    expect(error).toBeInstanceOf(StoreIoError);
    expect([error.path, error.code, error.operation.split(" ")[0]]).toEqual([path, code, "rename"]);
    expect((await t.bytes("m")).toString()).toBe(ORIGINAL);
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });
});

describe("removing the replaced file fails after the new content is durable", () => {
  it("is reported; the new content is in place, and the leftover is swept", async () => {
    const path = await t.put("m", ORIGINAL);
    const store = new MachineStore({
      dir: t.dir,
      fs: fsOpsWith({ unlinkAt: () => async () => Promise.reject(fail("EIO")) }),
    });
    const error = (await store.updateState("m", "running").catch((e: unknown) => e)) as StoreIoError;
    expect(error).toBeInstanceOf(StoreIoError);
    expect([error.path, error.code]).toEqual([path, "EIO"]);
    expect(error.operation).toMatch(/^remove the replaced file/);
    expect((await t.bytes("m")).toString()).toBe(ORIGINAL.replace('"stopped"', '"running"'));
    expect((await t.store.sweepTempFiles()).length).toBe(1);
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });
});
