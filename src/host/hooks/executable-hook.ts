/** Running one networking hook executable (docs/design.md#hooks). */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { lstat, realpath, stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { OverdueCalls } from "../../platform/deadline.js";
import { ancestorsOf, formatMode, untrustedDirectoryReason } from "../../platform/dir-trust.js";
import { toJsonWithBigInts, type Machine } from "../../store/machine.js";
import { HookError, HookRefusedError } from "./errors.js";
import type { HookContext, NetworkHook } from "./network-hook.js";
import { OutputTail } from "./output-tail.js";
import { runningTimeTimeout } from "./running-time.js";

/** `hook_timeout` default: how long a hook may run. */
export const DEFAULT_HOOK_TIMEOUT_MS = 30_000;
/** Time between SIGTERM and SIGKILL for a hook's process group. */
export const DEFAULT_KILL_GRACE_MS = 5_000;
/** How much of a hook's stderr is kept for the error report. */
export const DEFAULT_STDERR_TAIL_BYTES = 8 * 1024;
/** The only PATH a hook sees: the controller's own environment is never passed on. */
export const HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * After the hook exits, how long to wait for its stderr to reach EOF. A process the hook left behind
 * (a daemon it started) may hold the pipe open for ever; after this the pipe is closed on our side.
 */
const OUTPUT_DRAIN_MS = 200;
/** How often to look whether a terminated process group is empty before the grace period ends. */
const GROUP_POLL_MS = 50;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ExecutableHookOptions {
  /** How long the hook may run before its process group gets SIGTERM; default 30 s. */
  timeoutMs?: number;
  /** After SIGTERM, how long until the process group gets SIGKILL; default 5 s. */
  killGraceMs?: number;
  /** Bytes of stderr kept for the error report; default 8 KiB. */
  stderrTailBytes?: number;
  /**
   * Deadlines of the checks made on the hook's file before each run, keyed by the directory it is in
   * (docs/design.md#hung-mounts); default: a new OverdueCalls.
   */
  calls?: OverdueCalls;
}

/**
 * The working directory of every hook. Not the machine directory: a hook that is an interpreter (a
 * link to /bin/sh) would take its `recover` argument for a script there, in a directory another user
 * may write. A hook finds its machine through `ARCBOX_MACHINE_DIR`.
 */
export const HOOK_WORKING_DIRECTORY = "/";

/**
 * A hook that is an executable file, run as `<file> recover <machine>` without a shell, in
 * {@link HOOK_WORKING_DIRECTORY}, with only the `ARCBOX_*` environment of docs/design.md#hooks and the
 * machine as JSON on stdin.
 *
 * The hook runs in its own process group. On timeout or abort the whole group gets SIGTERM, then
 * SIGKILL after the grace period unless it has emptied, and the run ends only once that is done. When
 * the hook exits by itself (success or failure), processes it left behind are not killed: a hook may
 * legitimately start a daemon. Their hold on the hook's stderr is cut shortly after the hook exits,
 * so they cannot stall the controller. stdout is discarded (connected to /dev/null).
 */
export class ExecutableHook implements NetworkHook {
  /** The file name, e.g. `10-bridge`: what logs and metrics call the hook. */
  readonly name: string;
  private readonly timeoutMs: number;
  private readonly killGraceMs: number;
  private readonly stderrTailBytes: number;
  private readonly calls: OverdueCalls;

  /** Throws a RangeError for an option that is not a positive integer of milliseconds/bytes. */
  constructor(
    readonly path: string,
    options: ExecutableHookOptions = {},
  ) {
    this.name = basename(path);
    this.timeoutMs = checkedPositive("timeoutMs", options.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS, MAX_TIMER_MS);
    this.killGraceMs = checkedPositive("killGraceMs", options.killGraceMs ?? DEFAULT_KILL_GRACE_MS, MAX_TIMER_MS);
    this.stderrTailBytes = checkedPositive(
      "stderrTailBytes",
      options.stderrTailBytes ?? DEFAULT_STDERR_TAIL_BYTES,
      Number.MAX_SAFE_INTEGER,
    );
    this.calls = options.calls ?? new OverdueCalls();
  }

  /**
   * Runs the hook for `machine`. Right before starting it, checks the file again (it may have been
   * replaced since discovery): throws {@link HookRefusedError} when it is not a regular file, is
   * writable by group or others, or is owned by neither root nor the controller's user. Throws
   * {@link HookError} when it cannot be started, exits non-zero, is killed by a signal, times out or
   * is aborted through `context.signal`.
   */
  async recover(machine: Machine, context: HookContext): Promise<void> {
    const failure = { hook: this.name, machine: machine.name };
    await this.refuseIfUnsafe(failure);
    if (context.signal.aborted) {
      throw new HookError({ ...failure, aborted: true, problem: "aborted before it started" });
    }

    let child: ChildProcess;
    try {
      child = spawn(this.path, ["recover", machine.name], {
        shell: false,
        cwd: HOOK_WORKING_DIRECTORY,
        env: hookEnvironment(machine, context),
        detached: true, // own process group, so a timeout can kill everything it started
        stdio: ["pipe", "ignore", "pipe"],
      });
    } catch (error) {
      // Synchronous spawn errors: e.g. a NUL byte in an argument or environment value.
      throw new HookError({ ...failure, problem: `could not be started: ${messageOf(error)}`, cause: error });
    }

    const stdin = child.stdin!;
    const stderr = child.stderr!;
    const stderrTail = new OutputTail(this.stderrTailBytes);
    stderr.on("data", (chunk: Buffer) => stderrTail.push(chunk));
    const stderrClosed = once(stderr, "close").catch(() => undefined);
    // EPIPE/ECONNRESET when the hook exits without reading stdin: its business, not a failure.
    stdin.on("error", () => undefined);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    const started = new Promise<Error | undefined>((resolve) => {
      child.once("spawn", () => resolve(undefined));
      child.once("error", resolve);
    });
    child.on("error", () => undefined);

    const startError = await started;
    if (startError !== undefined) {
      stdin.destroy();
      stderr.destroy();
      const problem = explainStartError(startError);
      throw new HookError({ ...failure, problem: `could not be started: ${problem}`, cause: startError });
    }
    stdin.end(toJsonWithBigInts(machine));

    const processGroup = child.pid!;
    let stopReason: "timeout" | "abort" | undefined;
    let stopping: Promise<void> | undefined;
    const stop = (reason: "timeout" | "abort") => {
      if (stopping !== undefined) return;
      stopReason = reason;
      stopping = terminateProcessGroup(processGroup, this.killGraceMs);
    };
    // Counted in running time: a hook that ended while the controller was stopped did not time out.
    const timeout = runningTimeTimeout(this.timeoutMs, () => stop("timeout"));
    const onAbort = () => stop("abort");
    context.signal.addEventListener("abort", onAbort, { once: true });
    if (context.signal.aborted) onAbort(); // aborted while the process was starting

    let result: { code: number | null; signal: NodeJS.Signals | null };
    try {
      result = await exited;
      timeout.clear();
      if (stopping !== undefined) await stopping;
      await waitAtMost(stderrClosed, OUTPUT_DRAIN_MS);
    } finally {
      timeout.clear();
      context.signal.removeEventListener("abort", onAbort);
      stdin.destroy();
      stderr.destroy();
    }

    const report = { ...failure, exitCode: result.code, signal: result.signal, stderrTail: stderrTail.text() };
    if (stopReason === "timeout") throw new HookError({ ...report, timedOut: true, timeoutMs: this.timeoutMs });
    if (stopReason === "abort") throw new HookError({ ...report, aborted: true });
    if (result.code !== 0) throw new HookError(report);
  }

  private async refuseIfUnsafe(failure: { hook: string; machine: string }): Promise<void> {
    let reason;
    try {
      // Within the deadline: a file on a mount that stopped answering would hang its start too.
      reason = await this.calls.run(dirname(this.path), `the checks of hook ${this.path}`, async () => {
        const linked = (await lstat(this.path)).isSymbolicLink();
        const stats = await stat(this.path); // follows a symlink: the target is what runs
        return unsafeHookReason(stats, this.path) ?? (linked ? await untrustedTargetReason(this.path) : undefined);
      });
    } catch (error) {
      throw new HookError({ ...failure, problem: `could not be started: ${messageOf(error)}`, cause: error });
    }
    if (reason !== undefined) throw new HookRefusedError(this.path, reason);
  }
}

/**
 * Why a hook file with these stats must not be run, or undefined when it may. Root and the
 * controller's own user are the only owners trusted; nobody else may be able to write it.
 */
function unsafeHookReason(stats: { mode: number; uid: number; isFile(): boolean }, file: string): string | undefined {
  if (!stats.isFile()) return "not a regular file";
  const writableBy = [stats.mode & 0o020 ? "group" : "", stats.mode & 0o002 ? "others" : ""].filter(Boolean);
  if (writableBy.length > 0) {
    return `writable by ${writableBy.join(" and ")} (mode ${formatMode(stats.mode)}); fix with chmod go-w ${file}`;
  }
  const ownUid = process.getuid?.();
  if (stats.uid !== 0 && stats.uid !== ownUid) {
    const ours = ownUid === undefined || ownUid === 0 ? "root" : `root or the controller's user (uid ${ownUid})`;
    return `owned by uid ${stats.uid}, not by ${ours}; fix with chown root ${file}`;
  }
  return undefined;
}

/**
 * Why a symlinked hook leads somewhere unsafe, or undefined: the file it resolves to must lie in
 * directories that only root or the controller's user can change (as the hooks directory itself;
 * a sticky directory such as /tmp is fine), or another user could put their program in its place.
 */
async function untrustedTargetReason(hook: string): Promise<string | undefined> {
  const ownUid = process.geteuid?.();
  const trustedUids = new Set([0, ...(ownUid === undefined ? [] : [ownUid])]);
  let target: string;
  try {
    target = await realpath(hook);
  } catch (error) {
    return `its target cannot be resolved (${messageOf(error)})`;
  }
  for (const dir of ancestorsOf(target)) {
    let info;
    try {
      info = await stat(dir);
    } catch (error) {
      return `its target ${target} cannot be checked (${messageOf(error)})`;
    }
    const problem = untrustedDirectoryReason(info, { trustedUids, stickyAllowed: true });
    if (problem !== undefined) return `it leads to ${target}, in ${dir}, which is ${problem}; link only to files in directories of root or the controller's user`;
  }
  return undefined;
}

/** The complete environment of a hook: nothing of the controller's own environment leaks in. */
function hookEnvironment(machine: Machine, context: HookContext): Record<string, string> {
  const env: Record<string, string> = {
    PATH: HOOK_PATH,
    ARCBOX_HOOK_ACTION: "recover",
    ARCBOX_MACHINE: machine.name,
    ARCBOX_MACHINE_DIR: resolve(context.machineDir),
    ARCBOX_CONFIG: resolve(context.configPath),
    ARCBOX_VM_ID: machine.vm_id,
  };
  if (machine.ip_address !== undefined) env.ARCBOX_MACHINE_IP = machine.ip_address;
  return env;
}

/**
 * SIGTERM to every process of the group, then SIGKILL once `graceMs` has passed unless the group has
 * emptied by then. Zombies still count as members, so with an init that does not reap orphans the
 * full grace period passes; the SIGKILL is harmless then.
 */
async function terminateProcessGroup(processGroup: number, graceMs: number): Promise<void> {
  signalGroup(processGroup, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!signalGroup(processGroup, 0)) return;
    await delay(Math.min(GROUP_POLL_MS, Math.max(0, deadline - Date.now())));
  }
  signalGroup(processGroup, "SIGKILL");
}

/** Signals a whole process group; false when the group no longer exists. */
function signalGroup(processGroup: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-processGroup, signal);
    return true;
  } catch (error) {
    // EPERM: some member belongs to another user now (a setuid helper); the group still exists.
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** spawn's ENOENT for a file that was there a moment ago usually means its `#!` interpreter is missing. */
function explainStartError(error: Error): string {
  if ((error as NodeJS.ErrnoException).code !== "ENOENT") return error.message;
  return `${error.message} (is the interpreter named in its #! line installed?)`;
}

/** Waits for `promise`, but no longer than `ms`; the timer does not outlive the wait. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function checkedPositive(option: string, value: number, max: number): number {
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw new RangeError(`${option} must be a positive integer up to ${max}, got ${value}`);
  }
  return value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
