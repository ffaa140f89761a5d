/**
 * The daemon probe against real lock holders: a stand-in arcbox daemon (its own flock binding) and
 * util-linux's flock(1), a second, independent implementation of the same system call.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { promisify } from "node:util";
import { chmod, mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NOT_REGULAR_FILE, probeDaemon, type DaemonStatus } from "../../src/host/daemon-probe.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { makeTempDir, removeTempDir, runBuiltAsNobody, stopProcess, waitFor } from "../helpers/processes.js";

let root: string;
let lockPath: string;
let daemons: StandInDaemon[];
let sockets: Server[];
const execFileAsync = promisify(execFile);

beforeEach(async () => {
  root = await makeTempDir("daemon-probe");
  lockPath = path.join(root, "run", "daemon.lock");
  daemons = [];
  sockets = [];
});

afterEach(async () => {
  for (const daemon of daemons) await daemon.kill();
  for (const socket of sockets) socket.close();
  await removeTempDir(root);
});

async function daemon(): Promise<StandInDaemon> {
  const started = await startStandInDaemon(lockPath);
  daemons.push(started);
  return started;
}

describe("probeDaemon", () => {
  it("is alive while the daemon holds its lock, names its pid, and leaves the lock with the daemon", async () => {
    const live = await daemon();
    const before = await stat(lockPath);
    for (let i = 0; i < 50; i++) {
      expect(await probeDaemon(lockPath)).toEqual({ alive: true, pid: live.pid, reason: `the arcbox daemon is running (pid ${live.pid})` });
    }
    expect(await live.stillHoldsLock()).toBe(true);
    // Never written: same content, same modification time.
    const after = await stat(lockPath);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await readFile(lockPath, "utf8")).toBe(`${live.pid}\n`);
  });

  it("is dead once the daemon is killed, although its lock file stays behind", async () => {
    const live = await daemon();
    await live.kill();
    expect(await readFile(lockPath, "utf8")).toBe(`${live.pid}\n`);
    expect(await probeDaemon(lockPath)).toEqual({ alive: false, reason: `the arcbox daemon is not running (nobody holds ${lockPath})` });
  });

  it("is dead without a lock file and without a run directory, and creates neither", async () => {
    expect(await probeDaemon(lockPath)).toEqual({ alive: false, reason: `the arcbox daemon is not running (no lock file ${lockPath})` });
    await expect(stat(path.dirname(lockPath))).rejects.toThrow(/ENOENT/);
    await mkdir(path.dirname(lockPath));
    expect((await probeDaemon(lockPath)).alive).toBe(false);
    await expect(stat(lockPath)).rejects.toThrow(/ENOENT/);
  });

  it("is dead when a path component is a file (ENOTDIR)", async () => {
    await writeFile(path.join(root, "run"), "not a directory");
    expect((await probeDaemon(lockPath)).alive).toBe(false);
  });

  it("sees a lock taken by util-linux flock(1), which knows nothing of the controller", async () => {
    await mkdir(path.dirname(lockPath), { recursive: true });
    await writeFile(lockPath, "");
    const holder = spawn("flock", ["--exclusive", "--no-fork", lockPath, "sleep", "300"], { stdio: "ignore" });
    try {
      await waitFor(async () => (await probeDaemon(lockPath)).alive, "flock(1) to take the lock");
      // A lock file without a pid in it: alive all the same.
      expect(await probeDaemon(lockPath)).toEqual({ alive: true, reason: "the arcbox daemon is running" });
    } finally {
      await stopProcess(holder);
    }
    expect((await probeDaemon(lockPath)).alive).toBe(false);
  });

  it.each([
    ["4242\n", 4242],
    [" 17 \n", 17],
    ["", undefined],
    ["0\n", undefined],
    ["12x\n", undefined],
    ["x12\n", undefined],
    ["99999999999\n", undefined],
  ])("reads the holder's pid from the lock file only when it is one (%j)", async (content, pid) => {
    await mkdir(path.dirname(lockPath), { recursive: true });
    await writeFile(lockPath, content);
    const holder = spawn("flock", ["--exclusive", "--no-fork", lockPath, "sleep", "300"], { stdio: "ignore" });
    try {
      const status = await waitFor(async () => {
        const probed = await probeDaemon(lockPath);
        return probed.alive ? probed : undefined;
      }, "flock(1) to take the lock");
      expect(status.pid).toBe(pid);
      expect(status.reason).toBe(pid === undefined ? "the arcbox daemon is running" : `the arcbox daemon is running (pid ${pid})`);
    } finally {
      await stopProcess(holder);
    }
  });

  it("counts a lock path it cannot open (a symlink loop) as alive, with the error, in this process", async () => {
    await mkdir(path.dirname(lockPath), { recursive: true });
    await symlink(lockPath, lockPath);
    const status = await probeDaemon(lockPath);
    expect(status).toMatchObject({ alive: true, error: { code: NOT_REGULAR_FILE } });
    expect(status.error?.message).toBe(
      `the arcbox daemon's lock ${lockPath} is a symlink, not a regular file; it is not probed, and the daemon is assumed to be running`,
    );
    expect(status.reason).toBe("the arcbox daemon is assumed to be running (its lock is a symlink)");
  });

  it("never follows a symlink, not even to a lock the daemon holds, nor to a device", async () => {
    const live = await daemon();
    const link = path.join(root, "run", "link.lock");
    await symlink(lockPath, link);
    expect(await probeDaemon(link)).toMatchObject({ alive: true, error: { code: NOT_REGULAR_FILE } });
    await symlink("/dev/zero", path.join(root, "run", "zero.lock"));
    expect(await probeDaemon(path.join(root, "run", "zero.lock"))).toMatchObject({ alive: true, error: { code: NOT_REGULAR_FILE } });
    expect(await live.stillHoldsLock()).toBe(true);
  });

  it.each([
    ["a directory", async (at: string) => void (await mkdir(at, { recursive: true }))],
    ["a FIFO", async (at: string) => {
      await mkdir(path.dirname(at), { recursive: true });
      await execFileAsync("mkfifo", [at]);
    }],
    ["a socket", async (at: string) => {
      await mkdir(path.dirname(at), { recursive: true });
      const server = createServer().listen(at);
      await once(server, "listening");
      sockets.push(server);
    }],
  ])("counts a lock path that is %s as alive, with the error, without waiting on it", async (kind, make) => {
    await make(lockPath);
    const status = await probeDaemon(lockPath);
    expect(status).toMatchObject({ alive: true, error: { code: NOT_REGULAR_FILE } });
    expect(status.reason).toBe(`the arcbox daemon is assumed to be running (its lock is ${kind})`);
  });

  it("never blocks a daemon that starts right after a probe, nor a second prober", async () => {
    await mkdir(path.dirname(lockPath), { recursive: true });
    await writeFile(lockPath, "");
    for (let i = 0; i < 20; i++) expect((await probeDaemon(lockPath)).alive).toBe(false);
    const live = await daemon();
    expect((await probeDaemon(lockPath)).alive).toBe(true);
    expect(await live.stillHoldsLock()).toBe(true);
  });

  it("counts an unexpected error (EACCES) as alive, with the error", async () => {
    // Root opens anything, so the probe runs as user nobody against a lock file it may not read.
    await mkdir(path.dirname(lockPath), { recursive: true });
    await writeFile(lockPath, "");
    await chmod(lockPath, 0o600);
    await chmod(root, 0o755);
    await chmod(path.dirname(lockPath), 0o755);
    const status = await runBuiltAsNobody<DaemonStatus>(
      root,
      "host",
      `import { probeDaemon } from "./daemon-probe.js";
       process.stdout.write(JSON.stringify(await probeDaemon(process.argv[2])));`,
      [lockPath],
    );
    expect(status.alive).toBe(true);
    expect(status.error?.code).toBe("EACCES");
    expect(status.error?.message).toContain(lockPath);
    expect(status.reason).toMatch(/assumed to be running/);
  });
});
