import { execFile, type ChildProcess } from "node:child_process";
import { chmod, mkdir, readFile, symlink, truncate, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import ts from "typescript";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  LivenessProbeError,
  MAX_PID,
  PID_REUSE_TOLERANCE_MS,
  parsePid,
  parseProcStat,
  probeLiveness,
  processExists,
  processStartTime,
} from "../../src/controller/liveness.js";
import {
  makeTempDir,
  processState,
  readPidFileIfPresent,
  removeTempDir,
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

describe("probeLiveness", () => {
  it("is not alive without a pid file", async () => {
    expect(await probeLiveness(dir, { mode: "pidfile" })).toEqual({ alive: false, reason: "no pid file" });
  });

  it("is not alive when the machine directory itself is gone", async () => {
    const result = await probeLiveness(path.join(dir, "absent"), { mode: "pidfile" });
    expect(result).toEqual({ alive: false, reason: "no pid file" });
  });

  it("is not alive with an empty or whitespace-only pid file, without a warning", async () => {
    await writePidFile("");
    expect(await probeLiveness(dir, { mode: "pidfile" })).toEqual({ alive: false, reason: "pid file is empty" });
    await writePidFile(" \n");
    expect(await probeLiveness(dir, { mode: "pidfile" })).toEqual({ alive: false, reason: "pid file is empty" });
  });

  it("is not alive with a garbage pid file and warns naming the file and content", async () => {
    const file = await writePidFile("hello world\n");
    const result = await probeLiveness(dir, { mode: "pidfile" });
    expect(result.alive).toBe(false);
    expect(result.pid).toBeUndefined();
    expect(result.warning).toContain(file);
    expect(result.warning).toContain('"hello world\\n"');
  });

  it("truncates long bad content in the warning", async () => {
    await writePidFile("x".repeat(60));
    const result = await probeLiveness(dir, { mode: "pidfile" });
    expect(result.alive).toBe(false);
    expect(result.warning).toContain(`"${"x".repeat(32)}"…`);
    expect(result.warning).not.toContain("x".repeat(33));
  });

  it("warns about a huge pid file without reading it", async () => {
    const file = path.join(dir, "vm.pid");
    await writeFile(file, "");
    // Sparse: 1 GiB in size, no data blocks.
    await truncate(file, 2 ** 30);
    const result = await probeLiveness(dir, { mode: "pidfile" });
    expect(result.alive).toBe(false);
    expect(result.warning).toContain(file);
    expect(result.warning).toContain("1073741824 bytes");
  });

  it("warns about a pid file that is a directory or a FIFO, without blocking on the FIFO", async () => {
    await mkdir(path.join(dir, "vm.pid"));
    const asDirectory = await probeLiveness(dir, { mode: "pidfile" });
    expect(asDirectory.alive).toBe(false);
    expect(asDirectory.warning).toContain("not a regular file");

    const fifoDir = path.join(dir, "fifo");
    await mkdir(fifoDir);
    await execFileAsync("mkfifo", [path.join(fifoDir, "vm.pid")]);
    const asFifo = await probeLiveness(fifoDir, { mode: "pidfile" });
    expect(asFifo.alive).toBe(false);
    expect(asFifo.warning).toContain("not a regular file");
  });

  it("is alive for the pid of a running process, with surrounding whitespace", async () => {
    const pid = await sleeper();
    await writePidFile(` ${pid}\n`);
    expect(await probeLiveness(dir, { mode: "pidfile" })).toEqual({
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
    expect((await probeLiveness(dir, { mode: "pidfile" })).alive).toBe(true);
  });

  it("uses the configured pid file name", async () => {
    const pid = await sleeper();
    await writeFile(path.join(dir, "other.pid"), `${pid}`);
    expect((await probeLiveness(dir, { mode: "pidfile", pidFile: "other.pid" })).alive).toBe(true);
    expect((await probeLiveness(dir, { mode: "pidfile" })).alive).toBe(false);
  });

  it("rejects a pid file name that leaves the machine directory", async () => {
    await expect(probeLiveness(dir, { mode: "pidfile", pidFile: "../vm.pid" })).rejects.toThrow(TypeError);
    await expect(probeLiveness(dir, { mode: "pidfile", pidFile: ".." })).rejects.toThrow(/file name/);
  });

  it("is not alive for the pid of an exited process", async () => {
    const pid = await runToCompletion("true", []);
    await writePidFile(`${pid}\n`);
    expect(await probeLiveness(dir, { mode: "pidfile" })).toEqual({
      alive: false,
      pid,
      reason: `pid ${pid} is not running`,
    });
  });

  it("is not alive when the pid was reused by a process started well after the pid file was written", async () => {
    const pid = await sleeper();
    await writePidFile(`${pid}\n`, 60_000);
    const result = await probeLiveness(dir, { mode: "pidfile" });
    expect(result.alive).toBe(false);
    expect(result.pid).toBe(pid);
    expect(result.reason).toMatch(new RegExp(`^pid ${pid} was reused \\(process started \\d+\\.\\ds after vm.pid was written\\)$`));
  });

  it("is alive when the process started within the tolerance after the pid file's mtime", async () => {
    expect(PID_REUSE_TOLERANCE_MS).toBeGreaterThan(1_000);
    const pid = await sleeper();
    // The mtime is taken after the spawn, so the process started at most ~1 s after it.
    await writePidFile(`${pid}\n`, 1_000);
    expect((await probeLiveness(dir, { mode: "pidfile" })).alive).toBe(true);
  });

  it("is alive for a process that started long before the pid file was written", async () => {
    await writePidFile(`${process.pid}\n`);
    expect((await probeLiveness(dir, { mode: "pidfile" })).alive).toBe(true);
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
    await writePidFile(`${zombie}\n`, 10_000);
    expect(await probeLiveness(dir, { mode: "pidfile" })).toEqual({
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
      expect((await probeLiveness(dir, { mode: "pidfile" })).alive).toBe(true);
      return;
    }
    const source = await readFile(fileURLToPath(new URL("../../src/controller/liveness.ts", import.meta.url)), "utf8");
    const compiled = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const probeDir = path.join(dir, "probe");
    await mkdir(probeDir);
    await writeFile(path.join(probeDir, "liveness.mjs"), compiled);
    await writeFile(
      path.join(probeDir, "main.mjs"),
      `import { probeLiveness } from "./liveness.mjs";
       let kill;
       try { process.kill(1, 0); kill = "ok"; } catch (e) { kill = e.code; }
       const result = await probeLiveness(process.argv[2], { mode: "pidfile" });
       process.stdout.write(JSON.stringify({ kill, result }));`,
    );
    await writeFile(path.join(probeDir, "vm.pid"), "1\n");
    await chmod(dir, 0o755);
    await chmod(probeDir, 0o755);
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
      execFile(
        process.execPath,
        [path.join(probeDir, "main.mjs"), probeDir],
        { uid: 65534, gid: 65534, cwd: "/" },
        (error, out) => (error ? reject(error) : resolve({ stdout: out })),
      );
    });
    const { kill, result } = JSON.parse(stdout) as { kill: string; result: { alive: boolean; reason: string } };
    expect(kill).toBe("EPERM");
    expect(result).toEqual({ alive: true, pid: 1, reason: "pid 1 is running" });
  });

  it("is never alive with liveness = none, and does not touch the disk", async () => {
    const pid = await sleeper();
    await writePidFile(`${pid}\n`);
    expect(await probeLiveness(dir, { mode: "none" })).toEqual({ alive: false, reason: "liveness = none" });
    // A path that would throw if it were used.
    expect(await probeLiveness("\0not a path", { mode: "none" })).toEqual({ alive: false, reason: "liveness = none" });
  });

  it("throws LivenessProbeError when the pid file cannot be read", async () => {
    // Root reads everything, so an unreadable file is made with a path that is too long.
    const deep = path.join(dir, "a".repeat(300));
    await expect(probeLiveness(deep, { mode: "pidfile" })).rejects.toThrow(LivenessProbeError);
    await expect(probeLiveness(deep, { mode: "pidfile" })).rejects.toThrow(/ENAMETOOLONG/);
  });
});

describe("processStartTime", () => {
  it("gives the start time of a process in ms since the epoch", async () => {
    const before = Date.now();
    const pid = await sleeper();
    const after = Date.now();
    const started = await processStartTime(pid);
    // The boot time is truncated to whole seconds, so the reading can be up to 1 s early.
    expect(started).toBeGreaterThanOrEqual(before - 1_000 - 50);
    expect(started).toBeLessThanOrEqual(after + 50);
    expect(await processStartTime(process.pid)).toBeLessThanOrEqual(started!);
  });

  it("is null for a process that does not exist", async () => {
    const pid = await runToCompletion("true", []);
    expect(await processStartTime(pid)).toBeNull();
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

describe("parseProcStat", () => {
  it("counts fields after the last parenthesis, so odd command names parse", () => {
    const rest = Array.from({ length: 50 }, (_, i) => String(i + 4)).join(" ");
    // Field 22 (starttime) is the 20th field after the state.
    const line = `123 (a) b) (c d) S ${rest}\n`;
    expect(parseProcStat(line)).toEqual({ state: "S", startTicks: 22 });
    expect(parseProcStat("garbage")).toBeUndefined();
    expect(parseProcStat("1 (x) R 2 3")).toBeUndefined();
  });
});
