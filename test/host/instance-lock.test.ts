/**
 * The single-instance lock: a real flock, held by real processes, on real file systems (a full
 * tmpfs included).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireInstanceLock, LockHeldError, LOCK_FILE_NAME } from "../../src/host/instance-lock.js";
import { makeTempDir, removeTempDir, stopProcess } from "../helpers/processes.js";
import { mountFullTmpfs } from "../helpers/tmpfs.js";

const LOCK_MODULE = fileURLToPath(new URL("../../dist/host/instance-lock.js", import.meta.url));

let dir: string;
beforeEach(async () => (dir = await makeTempDir("instance-lock")));
afterEach(() => removeTempDir(dir));

/** Another process that takes the lock with the built module and holds it until killed. */
async function holder(machinesDir: string) {
  const script = `
    const { acquireInstanceLock } = await import(${JSON.stringify(LOCK_MODULE)});
    await acquireInstanceLock(process.argv[1]);
    // A child of the holder: the lock must not pass on to it (descriptors are close-on-exec).
    const { spawn } = await import("node:child_process");
    const orphan = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
    orphan.unref();
    process.stdout.write(orphan.pid + "\\n");
    setInterval(() => {}, 1 << 30);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, machinesDir], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
  return { child, orphanPid: Number(line) };
}

describe("acquireInstanceLock", () => {
  it("refuses a second holder, naming the first one's pid, and takes over at once after a SIGKILL", async () => {
    const first = await holder(dir);
    try {
      const error = await acquireInstanceLock(dir).then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(LockHeldError);
      expect((error as LockHeldError).ownerPid).toBe(first.child.pid);
      expect((error as LockHeldError).message).toContain(`pid ${first.child.pid}`);
      expect((error as LockHeldError).message).toContain(dir);
    } finally {
      await stopProcess(first.child);
    }
    // The holder's own child still runs: it did not inherit the lock.
    expect(() => process.kill(first.orphanPid, 0)).not.toThrow();
    const lock = await acquireInstanceLock(dir);
    try {
      expect(await readFile(path.join(dir, LOCK_FILE_NAME), "utf8")).toBe(`${process.pid}\n`);
    } finally {
      lock.release();
      process.kill(first.orphanPid, "SIGKILL");
    }
  });

  it("is exclusive within one process too, and release empties the file and lets the next one in", async () => {
    const lock = await acquireInstanceLock(dir);
    await expect(acquireInstanceLock(dir)).rejects.toBeInstanceOf(LockHeldError);
    lock.release();
    lock.release();
    expect(await readFile(path.join(dir, LOCK_FILE_NAME), "utf8")).toBe("");
    const next = await acquireInstanceLock(dir);
    next.release();
    expect(await readdir(dir)).toEqual([LOCK_FILE_NAME]);
  });

  it("ignores whatever a dead holder left in the file", async () => {
    await writeFile(path.join(dir, LOCK_FILE_NAME), '{"pid": 4242, "started": 1}\nmore garbage');
    const lock = await acquireInstanceLock(dir);
    expect(await readFile(path.join(dir, LOCK_FILE_NAME), "utf8")).toBe(`${process.pid}\n`);
    lock.release();
  });

  it("on a full disk: holds the lock, reports that the pid could not be written, and leaves no other file", async () => {
    const full = await mountFullTmpfs(dir);
    try {
      const machines = path.join(full.dir, "machines");
      await mkdir(machines).catch((error: NodeJS.ErrnoException) => {
        throw new Error(`the full tmpfs must still take a directory entry: ${error.code}`);
      });
      const lock = await acquireInstanceLock(machines);
      expect(lock.pidWriteError).toBe("ENOSPC");
      const second = await acquireInstanceLock(machines).then(() => null, (e: unknown) => e);
      expect(second).toBeInstanceOf(LockHeldError);
      expect((second as LockHeldError).message).toContain("pid unknown");
      lock.release();
      expect(await readdir(machines)).toEqual([LOCK_FILE_NAME]);
      expect(await readFile(path.join(machines, LOCK_FILE_NAME), "utf8")).toBe("");
    } finally {
      await full.unmount();
    }
  });
});
