/**
 * Liveness (docs/design.md#liveness): does a live VM still back a machine persisted as `running`?
 * - `daemon` (default): ArcBox runs every machine's VM inside its daemon, which holds a flock on
 *   `run/daemon.lock` while it lives; a machine is alive while the daemon is (see daemon-probe).
 * - `pidfile`: each VM is its own process and writes `<machine-dir>/vm.pid`; alive while that pid
 *   names a running process that did not start after the file was written.
 * - `none`: nothing is alive.
 *
 * Declaring a live VM dead is the costly mistake (its config would be rewritten to `stopped` while it
 * runs), so every doubtful case leans towards "alive" or towards an error that is retried, never
 * towards a confident "dead".
 */
import { constants as fsConstants, open } from "node:fs/promises";
import path from "node:path";
import { OverdueCalls } from "../platform/deadline.js";
import { probeDaemon } from "./daemon-probe.js";
import { defaultProcessTable, type ProcessTable } from "./process-table.js";
import { HostFileError } from "./host-file-error.js";

/** How the controller tells that a VM is alive (`liveness` in the controller config). */
export type LivenessMode = "daemon" | "pidfile" | "none";

export interface LivenessOptions {
  mode: LivenessMode;
  /** `daemon`: path of the arcbox daemon's lock file (`<arcbox-dir>/run/daemon.lock`). */
  daemonLock?: string;
  /** `pidfile`: file name of the pid file inside the machine directory; default {@link DEFAULT_PID_FILE}. */
  pidFile?: string;
  /** `pidfile`: where process states and start times are read; default {@link defaultProcessTable}. */
  processTable?: ProcessTable;
  /**
   * Deadlines of the file system calls (docs/design.md#hung-mounts), keyed by the daemon's lock path
   * or the machine directory. Default: one shared by every probe without its own.
   */
  calls?: OverdueCalls;
}

const sharedCalls = new OverdueCalls();

/** The verdict of {@link probeLiveness}, with the reason to log. */
export interface LivenessResult {
  alive: boolean;
  /** Short, human explanation, e.g. `pid 123 is running` or `the arcbox daemon is not running (…)`. */
  reason: string;
  /** The pid of the VM (pidfile) or of the daemon (daemon), when known. */
  pid?: number;
  /** Set when something could not be used and the verdict is a safe guess; log it as a warning. */
  warning?: string;
  /**
   * `daemon`: the errno code of an unexpected probe failure (the daemon then counts as alive);
   * count it in `arcbox_liveness_probe_errors_total`.
   */
  probeError?: string;
}

/** The pid file name of docs/design.md#files (`pid_file` in the controller config). */
export const DEFAULT_PID_FILE = "vm.pid";

/**
 * A process counts as a reused pid only when it started more than this after the pid file's mtime.
 * `/proc` start times are clock ticks counted from a boot time that is truncated to whole seconds,
 * and file mtimes come from a coarse kernel clock, so a VM that wrote its own pid file can appear to
 * have started up to about a second after the write. Two seconds keeps clear of that.
 */
export const PID_REUSE_TOLERANCE_MS = 2_000;

/** Largest pid Linux can hand out (PID_MAX_LIMIT on 64-bit); anything larger cannot be a pid. */
export const MAX_PID = 2 ** 22;

/** A pid file holds at most a few digits and a newline; anything longer is not a pid file. */
const MAX_PID_FILE_BYTES = 64;

/** Characters of bad pid file content quoted in a warning. */
const QUOTED_CONTENT_CHARS = 32;

/**
 * Reading the pid file or `/proc` failed in a way that says nothing about the VM (permissions, I/O).
 * The reconcile should fail and be retried rather than guess "dead".
 */
export class LivenessProbeError extends HostFileError {
  constructor(path: string, code: string | undefined, options?: { cause?: unknown }) {
    super(path, code, `cannot check liveness: reading ${path} failed (${code ?? "unknown error"})`, options);
  }
}

/**
 * Decides whether the machine in `machineDir` has a live VM.
 *
 * `none`: nothing is alive and nothing is read. `daemon`: alive while the daemon holds its lock;
 * an unexpected probe error counts as alive and sets `warning` and `probeError`. `pidfile`: the pid
 * file is read (following a symlink: VM runners may point it into /run; only a bounded number of
 * bytes is read and nothing is written, so following it is harmless) and its pid checked. A missing,
 * empty, unparseable or oversized pid file, a dead or zombie process and a reused pid give
 * `alive: false`; the unusable-file cases also carry a `warning`.
 *
 * Throws {@link LivenessProbeError} when the pid file exists but cannot be read (e.g. EACCES, EIO,
 * or ETIMEDOUT: its directory did not answer within the deadline of `calls`),
 * and a TypeError when `pidFile` is not a plain file name (it contains `/` or is `.` or `..`) or
 * `daemon` mode has no `daemonLock`.
 */
export async function probeLiveness(machineDir: string, options: LivenessOptions): Promise<LivenessResult> {
  if (options.mode === "none") {
    return { alive: false, reason: "liveness = none: no VM counts as alive" };
  }
  if (options.mode === "daemon") {
    if (options.daemonLock === undefined) throw new TypeError("liveness = daemon needs the daemon lock path");
    const status = await probeDaemon(options.daemonLock, options.calls ?? sharedCalls);
    return {
      alive: status.alive,
      reason: status.reason,
      ...(status.pid === undefined ? {} : { pid: status.pid }),
      ...(status.error ? { warning: status.error.message, probeError: status.error.code } : {}),
    };
  }
  const pidFileName = options.pidFile ?? DEFAULT_PID_FILE;
  if (!isPlainFileName(pidFileName)) {
    // Nothing outside the machine directory is ever read.
    throw new TypeError(`pid file must be a file name inside the machine directory, got ${JSON.stringify(pidFileName)}`);
  }
  const pidFilePath = path.join(machineDir, pidFileName);

  const contents = await readPidFile(pidFilePath, machineDir, options.calls ?? sharedCalls);
  if (contents.kind === "missing") {
    return { alive: false, reason: "no pid file" };
  }
  if (contents.kind === "unusable") {
    return { alive: false, reason: contents.reason, warning: `${pidFilePath}: ${contents.reason}` };
  }

  const parsed = parsePid(contents.text);
  if (parsed.kind === "empty") {
    return { alive: false, reason: "pid file is empty" };
  }
  if (parsed.kind === "invalid") {
    return {
      alive: false,
      reason: "pid file is unparseable",
      warning: `${pidFilePath}: ${parsed.problem}: ${quoteContent(contents.text)}`,
    };
  }
  return checkPid(parsed.pid, pidFileName, contents.mtimeMs, options.processTable ?? defaultProcessTable());
}

type PidFileContents =
  | { kind: "missing" }
  | { kind: "unusable"; reason: string }
  | { kind: "ok"; text: string; mtimeMs: number };

/** Reads the pid file, each call under the deadline of `calls` keyed by the machine directory. */
async function readPidFile(pidFilePath: string, machineDir: string, calls: OverdueCalls): Promise<PidFileContents> {
  const run = <T>(what: string, call: () => Promise<T>, late?: (result: T) => void) => calls.run(machineDir, `${what} of ${pidFilePath}`, call, late);
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO planted as the pid file must not block until a writer appears.
    handle = await run("open", () => open(pidFilePath, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY), (late) => void late.close().catch(() => undefined));
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return { kind: "missing" };
    throw new LivenessProbeError(pidFilePath, code, { cause: error });
  }
  try {
    const file = handle;
    const stats = await run("fstat", () => file.stat());
    if (!stats.isFile()) {
      return { kind: "unusable", reason: "pid file is not a regular file" };
    }
    if (stats.size > MAX_PID_FILE_BYTES) {
      return { kind: "unusable", reason: `pid file is ${stats.size} bytes, too large to hold a pid` };
    }
    // Read one byte past the bound: the file may have grown since fstat.
    const buffer = Buffer.alloc(MAX_PID_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await run("read", () => file.read(buffer, length, buffer.length - length, length));
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_PID_FILE_BYTES) {
      return { kind: "unusable", reason: `pid file is over ${MAX_PID_FILE_BYTES} bytes, too large to hold a pid` };
    }
    return { kind: "ok", text: buffer.subarray(0, length).toString("utf8"), mtimeMs: stats.mtimeMs };
  } catch (error) {
    throw new LivenessProbeError(pidFilePath, errorCode(error), { cause: error });
  } finally {
    // Not waited for: a close on a mount that stopped answering can hang too.
    void handle.close().catch(() => undefined);
  }
}

/** What {@link parsePid} found in a pid file. */
export type ParsedPid = { kind: "empty" } | { kind: "invalid"; problem: string } | { kind: "ok"; pid: number };

/**
 * Parses pid file content: a decimal pid in 1 ..= {@link MAX_PID}, optionally surrounded by ASCII
 * whitespace (a trailing newline is usual). Never throws; says what is wrong instead.
 */
export function parsePid(text: string): ParsedPid {
  const trimmed = text.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "");
  if (trimmed === "") return { kind: "empty" };
  if (!/^[0-9]+$/.test(trimmed)) return { kind: "invalid", problem: "not a decimal pid" };
  const digits = trimmed.replace(/^0+(?=[0-9])/, "");
  // Long digit strings would lose precision in Number(); they are out of range anyway.
  const pid = digits.length > 10 ? Number.POSITIVE_INFINITY : Number(digits);
  if (pid <= 0 || pid > MAX_PID) return { kind: "invalid", problem: `pid out of range 1..${MAX_PID}` };
  return { kind: "ok", pid };
}

async function checkPid(pid: number, pidFileName: string, pidFileMtimeMs: number, table: ProcessTable): Promise<LivenessResult> {
  if (!processExists(pid)) {
    return { alive: false, pid, reason: `pid ${pid} is not running` };
  }
  const found = await table.lookup(pid);
  if (found.kind === "absent") {
    // kill() saw it and the table did not: it exited in between. Ask kill() again to be sure.
    return processExists(pid)
      ? { alive: true, pid, reason: `pid ${pid} is running (not in the process table)` }
      : { alive: false, pid, reason: `pid ${pid} is not running` };
  }
  if (found.kind === "unknown") {
    return { alive: true, pid, reason: `pid ${pid} is running (state unknown: ${found.detail})` };
  }
  if (found.zombie) {
    return { alive: false, pid, reason: `pid ${pid} is a zombie (exited, not yet reaped)` };
  }
  if (found.startedMs !== undefined && found.startedMs - pidFileMtimeMs > PID_REUSE_TOLERANCE_MS) {
    const seconds = ((found.startedMs - pidFileMtimeMs) / 1000).toFixed(1);
    return {
      alive: false,
      pid,
      reason: `pid ${pid} was reused (process started ${seconds}s after ${pidFileName} was written)`,
    };
  }
  return { alive: true, pid, reason: `pid ${pid} is running` };
}

/**
 * Whether a process with this pid exists, by `kill(pid, 0)`: success or EPERM (it exists but belongs
 * to another user) mean it exists, ESRCH means it does not. `sendSignal` defaults to `process.kill`.
 * Throws any other error of `sendSignal` unchanged.
 */
export function processExists(
  pid: number,
  sendSignal: (pid: number, signal: number) => void = (p, s) => {
    process.kill(p, s);
  },
): boolean {
  try {
    sendSignal(pid, 0);
    return true;
  } catch (error) {
    const code = errorCode(error);
    if (code === "EPERM") return true;
    if (code === "ESRCH") return false;
    throw error;
  }
}

function isPlainFileName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

function quoteContent(text: string): string {
  const quoted = JSON.stringify(text.slice(0, QUOTED_CONTENT_CHARS));
  return text.length > QUOTED_CONTENT_CHARS ? `${quoted}…` : quoted;
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") {
    return error.code;
  }
  return undefined;
}
