/** Errors of the networking hooks (docs/design.md#hooks). Both stop the recovery of the machine. */

/** Base class of every error a networking hook run ends with. */
export abstract class NetworkHookError extends Error {
  /** Hook name: the file name of an executable hook, or the `name` of an in-process hook. */
  abstract readonly hook: string;
}

export interface HookFailure {
  hook: string;
  machine: string;
  /** Exit code of the hook process; null when it was killed by a signal or never ran. */
  exitCode?: number | null;
  /** Name of the signal that ended the hook process (e.g. `SIGSEGV`), or null. */
  signal?: string | null;
  /** The hook ran past its timeout and its process group was killed; `timeoutMs` says how long it had. */
  timedOut?: boolean;
  timeoutMs?: number;
  /** The run was aborted through the context's signal and its process group was killed. */
  aborted?: boolean;
  /** The last bytes of the hook's stderr, decoded as UTF-8 (invalid bytes replaced). */
  stderrTail?: string;
  /** What went wrong, when none of the above says it (e.g. `could not be started: EACCES`). */
  problem?: string;
  cause?: unknown;
}

/** Lines of the stderr tail quoted in the message; the full tail stays in `stderrTail`. */
const QUOTED_STDERR_LINES = 3;
const QUOTED_STDERR_CHARS = 600;

/**
 * A networking hook failed: it exited non-zero, was killed by a signal, timed out, was aborted,
 * could not be started, or (in-process hooks) threw. The message names the hook, the machine, what
 * happened and the last lines of the hook's stderr, e.g.
 * `network hook 10-bridge failed for machine dev: exit code 3: bridge br0 not found`.
 */
export class HookError extends NetworkHookError {
  override readonly name = "HookError";
  readonly hook: string;
  readonly machine: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly aborted: boolean;
  readonly stderrTail: string;
  /** The message without the quote of the hook's stderr: what happened, for places anyone may read. */
  readonly summary: string;

  constructor(failure: HookFailure) {
    const summary = `network hook ${failure.hook} failed for machine ${failure.machine}: ${describeFailure(failure)}`;
    super(`${summary}${quoteStderr(failure.stderrTail ?? "")}`, failure.cause === undefined ? undefined : { cause: failure.cause });
    this.summary = summary;
    this.hook = failure.hook;
    this.machine = failure.machine;
    this.exitCode = failure.exitCode ?? null;
    this.signal = failure.signal ?? null;
    this.timedOut = failure.timedOut ?? false;
    this.aborted = failure.aborted ?? false;
    this.stderrTail = failure.stderrTail ?? "";
  }
}

/**
 * A hook was not run because running it would be unsafe (writable by group or others, owned by
 * another user, not a regular file). The message names the file and the fix, e.g.
 * `refusing to run network hook /etc/arcbox/hooks/network.d/10-x: writable by group (mode 0775); fix with chmod go-w`.
 */
export class HookRefusedError extends NetworkHookError {
  override readonly name = "HookRefusedError";

  /** `hook` is the hook's path; `reason` says why and how to fix it. */
  constructor(
    readonly hook: string,
    readonly reason: string,
  ) {
    super(`refusing to run network hook ${hook}: ${reason}`);
  }
}

function describeFailure(failure: HookFailure): string {
  if (failure.problem !== undefined) return failure.problem;
  if (failure.timedOut) {
    const after = failure.timeoutMs === undefined ? "" : ` after ${formatDuration(failure.timeoutMs)}`;
    return `timed out${after} (killed its process group)`;
  }
  if (failure.aborted) return "aborted (killed its process group)";
  if (failure.signal) return `killed by ${failure.signal}`;
  if (failure.exitCode !== undefined && failure.exitCode !== null) return `exit code ${failure.exitCode}`;
  return "failed";
}

function quoteStderr(stderrTail: string): string {
  const lines = stderrTail
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "");
  if (lines.length === 0) return "";
  let quoted = lines.slice(-QUOTED_STDERR_LINES).join(" | ");
  if (quoted.length > QUOTED_STDERR_CHARS) quoted = `…${quoted.slice(-QUOTED_STDERR_CHARS)}`;
  return `: ${quoted}`;
}

/** `300ms`, `30s`, `1.5s`. */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${Number((ms / 1000).toFixed(3))}s`;
}
