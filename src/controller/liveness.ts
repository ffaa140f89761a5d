/**
 * Liveness (DESIGN §3): is the VM of a machine still running? With `pidfile`, the VM runner writes
 * its process id to `<machine-dir>/vm.pid`; the machine is alive when that pid names a running
 * process that did not start after the file was written.
 *
 * Declaring a live VM dead is the costly mistake (its config would be rewritten to `stopped` while it
 * runs), so every doubtful case leans towards "alive" or towards an error that is retried, never
 * towards a confident "dead".
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { constants as fsConstants, open, readFile } from "node:fs/promises";
import path from "node:path";

/** `pidfile`: the VM runner's pid file decides; `none`: no VM is ever alive (start-up at boot). */
export type LivenessMode = "pidfile" | "none";

export interface LivenessOptions {
  mode: LivenessMode;
  /** File name of the pid file inside the machine directory; default {@link DEFAULT_PID_FILE}. */
  pidFile?: string;
}

/** The verdict of {@link probeLiveness}, with the reason to log. */
export interface LivenessResult {
  alive: boolean;
  /** Short, human explanation, e.g. `pid 123 is running` or `no pid file`. */
  reason: string;
  /** The pid read from the pid file, when it could be parsed. */
  pid?: number;
  /** Set when the pid file exists but cannot be used (unparseable, not a regular file, too large). */
  warning?: string;
}

/** The pid file name of DESIGN §1 (`pid_file` in the controller config). */
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
export class LivenessProbeError extends Error {
  override readonly name = "LivenessProbeError";
  constructor(
    readonly path: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(`cannot check liveness: reading ${path} failed (${code ?? "unknown error"})`, options);
  }
}

/**
 * Decides whether the machine in `machineDir` has a live VM process.
 *
 * With `mode: "none"` nothing is alive and the disk is not touched. With `mode: "pidfile"` the pid
 * file is read (following a symlink: VM runners may point it into /run; only a bounded number of
 * bytes is read and nothing is written, so following it is harmless) and its pid checked.
 * A missing, empty, unparseable or oversized pid file, a dead or zombie process and a reused pid
 * give `alive: false`; the unusable-file cases also carry a `warning`.
 *
 * Throws {@link LivenessProbeError} when the pid file exists but cannot be read (e.g. EACCES, EIO),
 * and a TypeError when `pidFile` is not a plain file name (it contains `/` or is `.` or `..`).
 */
export async function probeLiveness(machineDir: string, options: LivenessOptions): Promise<LivenessResult> {
  if (options.mode === "none") {
    return { alive: false, reason: "liveness = none" };
  }
  const pidFileName = options.pidFile ?? DEFAULT_PID_FILE;
  if (!isPlainFileName(pidFileName)) {
    // Nothing outside the machine directory is ever read.
    throw new TypeError(`pid file must be a file name inside the machine directory, got ${JSON.stringify(pidFileName)}`);
  }
  const pidFilePath = path.join(machineDir, pidFileName);

  const contents = await readPidFile(pidFilePath);
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
  return checkPid(parsed.pid, pidFileName, contents.mtimeMs);
}

type PidFileContents =
  | { kind: "missing" }
  | { kind: "unusable"; reason: string }
  | { kind: "ok"; text: string; mtimeMs: number };

async function readPidFile(pidFilePath: string): Promise<PidFileContents> {
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO planted as the pid file must not block until a writer appears.
    handle = await open(pidFilePath, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return { kind: "missing" };
    throw new LivenessProbeError(pidFilePath, code, { cause: error });
  }
  try {
    const stats = await handle.stat();
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
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
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
    await handle.close();
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

async function checkPid(pid: number, pidFileName: string, pidFileMtimeMs: number): Promise<LivenessResult> {
  if (!processExists(pid)) {
    return { alive: false, pid, reason: `pid ${pid} is not running` };
  }
  const stat = await readProcessStat(pid);
  if (stat === "no-proc") {
    return { alive: true, pid, reason: `pid ${pid} is running` };
  }
  if (stat === "unavailable") {
    // kill() saw it, /proc did not: it exited in between, or /proc hides it (hidepid). Ask again.
    return processExists(pid)
      ? { alive: true, pid, reason: `pid ${pid} is running (start time unavailable)` }
      : { alive: false, pid, reason: `pid ${pid} is not running` };
  }
  if (stat.state === "Z") {
    return { alive: false, pid, reason: `pid ${pid} is a zombie (exited, not yet reaped)` };
  }
  const startedMs = await processStartTimeMs(stat.startTicks);
  if (startedMs !== undefined && startedMs - pidFileMtimeMs > PID_REUSE_TOLERANCE_MS) {
    const seconds = ((startedMs - pidFileMtimeMs) / 1000).toFixed(1);
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

interface ProcessStat {
  state: string;
  startTicks: number;
}

let procAvailable: boolean | undefined;

/** `/proc/<pid>/stat` state and start time; "no-proc" without a /proc, "unavailable" when unreadable. */
async function readProcessStat(pid: number): Promise<ProcessStat | "no-proc" | "unavailable"> {
  procAvailable ??= existsSync("/proc/self/stat");
  if (!procAvailable) return "no-proc";
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return "unavailable";
  }
  const parsed = parseProcStat(text);
  return parsed ?? "unavailable";
}

/**
 * Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may itself
 * contain spaces and parentheses, so fields are counted after the last `)`. Returns undefined when
 * the line does not have the expected shape.
 */
export function parseProcStat(text: string): ProcessStat | undefined {
  const end = text.lastIndexOf(")");
  if (end < 0) return undefined;
  const fields = text.slice(end + 1).trim().split(/\s+/);
  // fields[0] is field 3 (state); starttime is field 22.
  const state = fields[0];
  const startTicks = Number(fields[22 - 3]);
  if (state === undefined || !Number.isSafeInteger(startTicks) || startTicks < 0) return undefined;
  return { state, startTicks };
}

/**
 * Start time of process `pid` in ms since the epoch, from /proc (Linux): accurate to a clock tick
 * plus the boot time's whole-second truncation, and it shifts when the wall clock is stepped, so
 * compare two readings with a tolerance. null without /proc, for no such process, or when unreadable.
 * Never throws.
 */
export async function processStartTime(pid: number): Promise<number | null> {
  const stat = await readProcessStat(pid);
  if (typeof stat !== "object") return null;
  return (await processStartTimeMs(stat.startTicks)) ?? null;
}

/** Process start time in ms since the epoch, or undefined when the boot time cannot be read. */
async function processStartTimeMs(startTicks: number): Promise<number | undefined> {
  const bootSeconds = await readBootTimeSeconds();
  if (bootSeconds === undefined) return undefined;
  return (bootSeconds + startTicks / clockTicksPerSecond()) * 1000;
}

/** `btime` of /proc/stat. Read every time: it moves when the wall clock is stepped (NTP). */
async function readBootTimeSeconds(): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile("/proc/stat", "utf8");
  } catch {
    return undefined;
  }
  const match = /^btime\s+(\d+)\s*$/m.exec(text);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** Linux's USER_HZ, which is 100 on every common configuration. */
const DEFAULT_CLOCK_TICKS = 100;
let clockTicks: number | undefined;

function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 }).trim());
      clockTicks = Number.isSafeInteger(value) && value > 0 ? value : DEFAULT_CLOCK_TICKS;
    } catch {
      clockTicks = DEFAULT_CLOCK_TICKS;
    }
  }
  return clockTicks;
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
