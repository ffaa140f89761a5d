import { execFile, type ChildProcess } from "node:child_process";
import { chmod, mkdir, symlink, truncate, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  LivenessProbeError,
  MAX_PID,
  PID_REUSE_TOLERANCE_MS,
  parsePid,
  probeLiveness,
  processExists,
  type LivenessOptions,
} from "../../src/host/liveness.js";
import { PROCESS_TABLE_NAMES, processTable } from "../../src/host/process-table.js";
import {
  makeTempDir,
  processState,
  readPidFileIfPresent,
  removeTempDir,
  runBuiltAsNobody,
  runToCompletion,
  startProcess,
  stopProcess,
  waitFor,
} from "../helpers/processes.js";

const execFileAsync = promisify(execFile);

let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await makeTempDir("liveness");
});

afterEach(async () => {
  for (const child of children.splice(0)) await stopProcess(child);
  await removeTempDir(dir);
});

async function sleeper(): Promise<number> {
  const child = await startProcess("sleep", ["30"]);
  children.push(child);
  return child.pid;
}

async function writePidFile(content: string, mtimeAgoMs?: number): Promise<string> {
  const file = path.join(dir, "vm.pid");
  await writeFile(file, content);
  if (mtimeAgoMs !== undefined) {
    const when = new Date(Date.now() - mtimeAgoMs);
    await utimes(file, when, when);
  }
  return file;
}

// Every pidfile case runs against both process tables: /proc (Linux) and ps (macOS, and Linux too).
describe.each(PROCESS_TABLE_NAMES)("probeLiveness with the %s process table", (table) => {
  const pidfile: LivenessOptions = { mode: "pidfile", processTable: processTable(table) };

  it("is not alive without a pid file", async () => {
    expect(await probeLiveness(dir, pidfile)).toEqual({ alive: false, reason: "no pid file" });
  });

  it("is not alive when the machine directory itself is gone", async () => {
    const result = await probeLiveness(path.join(dir, "absent"), pidfile);
    expect(result).toEqual({ alive: false, reason: "no pid file" });
  });

  it("is not alive with an empty or whitespace-only pid file, without a warning", async () => {
    await writePidFile("");
    expect(await probeLiveness(dir, pidfile)).toEqual({ alive: false, reason: "pid file is empty" });
    await writePidFile(" \n");
    expect(await probeLiveness(dir, pidfile)).toEqual({ alive: false, reason: "pid file is empty" });
  });

  it("is not alive with a garbage pid file and warns naming the file and content", async () => {
    const file = await writePidFile("hello world\n");
    const result = await probeLiveness(dir, pidfile);
    expect(result.alive).toBe(false);
    expect(result.pid).toBeUndefined();
    expect(result.warning).toContain(file);
    expect(result.warning).toContain('"hello world\\n"');
  });

  it("truncates long bad content in the warning", async () => {
    await writePidFile("x".repeat(60));
    const result = await probeLiveness(dir, pidfile);
    expect(result.alive).toBe(false);
    expect(result.warning).toContain(`"${"x".repeat(32)}"…`);
    expect(result.warning).not.toContain("x".repeat(33));
  });

  it("warns about a huge pid file without reading it", async () => {
    const file = path.join(dir, "vm.pid");
    await writeFile(file, "");
    // Sparse: 1 GiB in size, no data blocks.
    await truncate(file, 2 ** 30);
    const result = await probeLiveness(dir, pidfile);
    expect(result.alive).toBe(false);
    expect(result.warning).toContain(file);
    expect(result.warning).toContain("1073741824 bytes");
  });

  it("warns about a pid file that is a directory or a FIFO, without blocking on the FIFO", async () => {
    await mkdir(path.join(dir, "vm.pid"));
    const asDirectory = await probeLiveness(dir, pidfile);
    expect(asDirectory.alive).toBe(false);
    expect(asDirectory.warning).toContain("not a regular file");

    const fifoDir = path.join(dir, "fifo");
    await mkdir(fifoDir);
    await execFileAsync("mkfifo", [path.join(fifoDir, "vm.pid")]);
    const asFifo = await probeLiveness(fifoDir, pidfile);
    expect(asFifo.alive).toBe(false);
    expect(asFifo.warning).toContain("not a regular file");
  });

  it("is alive for the pid of a running process, with surrounding whitespace", async () => {
    const pid = await sleeper();
    await writePidFile(` ${pid}\n`);
    expect(await probeLiveness(dir, pidfile)).toEqual({
      alive: true,
      pid,
      reason: `pid ${pid} is running`,
    });
  });

  it("follows a symlinked pid file", async () => {
    const pid = await sleeper();
    const target = path.join(dir, "run-vm.pid");
    await writeFile(target, `${pid}\n`);
    await symlink(target, path.join(dir, "vm.pid"));
    expect((await probeLiveness(dir, pidfile)).alive).toBe(true);
  });

  it("uses the configured pid file name", async () => {
    const pid = await sleeper();
    await writeFile(path.join(dir, "other.pid"), `${pid}`);
    expect((await probeLiveness(dir, { ...pidfile, pidFile: "other.pid" })).alive).toBe(true);
    expect((await probeLiveness(dir, pidfile)).alive).toBe(false);
  });

  it("rejects a pid file name that leaves the machine directory", async () => {
    await expect(probeLiveness(dir, { ...pidfile, pidFile: "../vm.pid" })).rejects.toThrow(TypeError);
    await expect(probeLiveness(dir, { ...pidfile, pidFile: ".." })).rejects.toThrow(/file name/);
  });

  it("is not alive for the pid of an exited process", async () => {
    const pid = await runToCompletion("true", []);
    await writePidFile(`${pid}\n`);
    expect(await probeLiveness(dir, pidfile)).toEqual({
      alive: false,
      pid,
      reason: `pid ${pid} is not running`,
    });
  });

  it("is not alive when the pid was reused by a process started well after the pid file was written", async () => {
    const pid = await sleeper();
    await writePidFile(`${pid}\n`, 60_000);
    const result = await probeLiveness(dir, pidfile);
    expect(result.alive).toBe(false);
    expect(result.pid).toBe(pid);
    expect(result.reason).toMatch(new RegExp(`^pid ${pid} was reused \\(process started \\d+\\.\\ds after vm.pid was written\\)$`));
  });

  it("is alive when the process started within the tolerance after the pid file's mtime", async () => {
    expect(PID_REUSE_TOLERANCE_MS).toBeGreaterThan(1_000);
    const pid = await sleeper();
    // The mtime is taken after the spawn, so the process started at most ~1 s after it.
    await writePidFile(`${pid}\n`, 1_000);
    expect((await probeLiveness(dir, pidfile)).alive).toBe(true);
  });

  it("is alive for a process that started long before the pid file was written", async () => {
    await writePidFile(`${process.pid}\n`);
    expect((await probeLiveness(dir, pidfile)).alive).toBe(true);
  });

  it("is not alive for a zombie", async () => {
    const zombieFile = path.join(dir, "zombie");
    // The shell backgrounds a short sleep, then becomes `sleep 30`, which never reaps it.
    const parent = await startProcess("sh", [
      "-c",
      `sleep 0.1 & echo $! > '${zombieFile}.tmp' && mv '${zombieFile}.tmp' '${zombieFile}'; exec sleep 30`,
    ]);
    children.push(parent);
    const zombie = await waitFor(() => readPidFileIfPresent(zombieFile), "the zombie's pid");
    await waitFor(async () => (await processState(zombie)) === "Z", `pid ${zombie} to become a zombie`);
    // Written now, after the process started: only its zombie state can make it "not alive".
    await writePidFile(`${zombie}\n`);
    expect(await probeLiveness(dir, pidfile)).toEqual({
      alive: false,
      pid: zombie,
      reason: `pid ${zombie} is a zombie (exited, not yet reaped)`,
    });
  });

  it("counts a process of another user (EPERM) as alive", async () => {
    // kill(pid, 0) only fails with EPERM for an unprivileged caller, so the probe runs as `nobody`.
    if (process.getuid?.() !== 0) {
      // Not root: pid 1 already belongs to another user.
      await writePidFile("1\n");
      expect((await probeLiveness(dir, pidfile)).alive).toBe(true);
      return;
    }
    await writeFile(path.join(dir, "vm.pid"), "1\n");
    await chmod(dir, 0o755);
    await chmod(path.join(dir, "vm.pid"), 0o644);
    const { kill, result } = await runBuiltAsNobody<{ kill: string; result: { alive: boolean; reason: string } }>(
      dir,
      "host",
      `import { probeLiveness } from "./liveness.js";
       import { processTable } from "./process-table.js";
       let kill;
       try { process.kill(1, 0); kill = "ok"; } catch (e) { kill = e.code; }
       const result = await probeLiveness(process.argv[2], { mode: "pidfile", processTable: processTable(${JSON.stringify(table)}) });
       process.stdout.write(JSON.stringify({ kill, result }));`,
      [dir],
    );
    expect(kill).toBe("EPERM");
    expect(result).toEqual({ alive: true, pid: 1, reason: "pid 1 is running" });
  });


  it("throws LivenessProbeError when the pid file cannot be read", async () => {
    // Root reads everything, so an unreadable file is made with a path that is too long.
    const deep = path.join(dir, "a".repeat(300));
    await expect(probeLiveness(deep, pidfile)).rejects.toThrow(LivenessProbeError);
    await expect(probeLiveness(deep, pidfile)).rejects.toThrow(/ENAMETOOLONG/);
  });
});

describe("probeLiveness with liveness = none", () => {
  it("is never alive, and does not touch the disk", async () => {
    const pid = await sleeper();
    await writePidFile(`${pid}\n`);
    const none = { alive: false, reason: "liveness = none: no VM counts as alive" };
    expect(await probeLiveness(dir, { mode: "none" })).toEqual(none);
    // A path that would throw if it were used.
    expect(await probeLiveness("\0not a path", { mode: "none" })).toEqual(none);
  });
});

describe("processExists", () => {
  const failWith = (code: string) => () => {
    throw Object.assign(new Error(code), { code });
  };

  it("treats EPERM as an existing process and ESRCH as none", () => {
    expect(processExists(4242, failWith("EPERM"))).toBe(true);
    expect(processExists(4242, failWith("ESRCH"))).toBe(false);
    expect(processExists(4242, () => undefined)).toBe(true);
  });

  it("rethrows other errors", () => {
    expect(() => processExists(4242, failWith("EINVAL"))).toThrow("EINVAL");
  });

  it("sends signal 0 to the given pid", () => {
    const calls: [number, number][] = [];
    processExists(77, (pid, signal) => void calls.push([pid, signal]));
    expect(calls).toEqual([[77, 0]]);
  });
});

describe("parsePid", () => {
  it("accepts decimal pids in range with surrounding whitespace", () => {
    expect(parsePid("123")).toEqual({ kind: "ok", pid: 123 });
    expect(parsePid("\t 123 \r\n")).toEqual({ kind: "ok", pid: 123 });
    expect(parsePid("007")).toEqual({ kind: "ok", pid: 7 });
    expect(parsePid(String(MAX_PID))).toEqual({ kind: "ok", pid: MAX_PID });
  });

  it("rejects everything else", () => {
    for (const text of ["0", "-1", "+1", "1.0", "0x10", "1e3", "12 34", "١٢٣", String(MAX_PID + 1), "9".repeat(400)]) {
      expect(parsePid(text).kind, text).toBe("invalid");
    }
    expect(parsePid(" \n ").kind).toBe("empty");
  });
});
