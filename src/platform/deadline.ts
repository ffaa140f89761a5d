/**
 * Deadlines for file system calls on paths others control (docs/design.md#hung-mounts): a machine
 * directory, the daemon's lock or the hooks directory may lie on a mount that stops answering (a FUSE
 * daemon that hangs, an NFS server gone). Such calls run off the main thread, in libuv's thread pool;
 * a deadline decides when to stop waiting for one. The call itself cannot be cancelled: it keeps its
 * thread until the mount answers. So while a call on some key (a machine directory, say) is overdue,
 * further calls on that key fail at once instead of tying up more threads.
 */

/** How long a file system call on a path others control may take before it is given up. */
export const FS_DEADLINE_MS = 10_000;

/** A call that did not answer within its deadline. `code` is `ETIMEDOUT`, as for Node's own errors. */
export class NoAnswerError extends Error {
  override readonly name = "NoAnswerError";
  readonly code = "ETIMEDOUT";
  constructor(
    /** What did not answer, e.g. `open of /m/web`. */
    readonly what: string,
    readonly deadlineMs: number,
    /** Failed at once, because an earlier call on the same path is still overdue. */
    readonly stillWaiting = false,
  ) {
    super(
      stillWaiting
        ? `ETIMEDOUT: an earlier call on this path has not answered yet (a hung mount?), ${what}`
        : `ETIMEDOUT: no answer within ${formatSeconds(deadlineMs)} (a hung mount?), ${what}`,
    );
  }
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Calls past their deadline that have not answered yet, in the whole process. */
let unanswered = 0;

/**
 * How many calls given up on (past their deadline) have still not answered. While any has not, the
 * thread it runs on is stuck, and Node.js's own exit (which waits for every thread of libuv's pool)
 * would hang: see `exitProcess` (src/host/exit.ts).
 */
export function unansweredCalls(): number {
  return unanswered;
}

/**
 * Resolves as `work` does, or rejects with NoAnswerError once `ms` have passed. The timer does not
 * keep the process alive; `work` goes on (and its result, if it ever comes, goes to `late`).
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string, late?: (result: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let overdue = false;
    const timer = setTimeout(() => {
      overdue = true;
      unanswered++;
      reject(new NoAnswerError(what, ms));
    }, ms);
    timer.unref();
    work.then(
      (value) => {
        clearTimeout(timer);
        if (overdue) {
          unanswered--;
          late?.(value);
        } else resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (overdue) unanswered--;
        else reject(error);
      },
    );
  });
}

export interface OverdueCallsOptions {
  /** The deadline of each call; default {@link FS_DEADLINE_MS}. */
  deadlineMs?: number;
}

/** Told when a key got its first overdue call (`overdue: true`), or its last overdue call returned (`false`). */
export type OverdueListener = (key: string, overdue: boolean) => void;

/**
 * Runs calls with a deadline, by key (what they touch: a machine directory, the daemon's lock):
 * while a call on a key is overdue, further calls on it fail at once with NoAnswerError.
 */
export class OverdueCalls {
  readonly deadlineMs: number;
  readonly #overdue = new Map<string, number>();
  readonly #listeners = new Set<OverdueListener>();

  constructor(options: OverdueCallsOptions = {}) {
    this.deadlineMs = options.deadlineMs ?? FS_DEADLINE_MS;
  }

  /** Calls `listener` whenever a key becomes overdue or answers again; returns what unsubscribes it. */
  subscribe(listener: OverdueListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Whether a call on `key` is overdue now. */
  isOverdue(key: string): boolean {
    return this.#overdue.has(key);
  }

  /** The keys with an overdue call. */
  overdueKeys(): string[] {
    return [...this.#overdue.keys()];
  }

  /**
   * Runs `call` for `key` with the deadline: rejects with NoAnswerError when it is overdue, or at once
   * when an earlier call on `key` still is. `late` gets the result of a call that answered after its
   * deadline (e.g. to close a descriptor nobody waits for any more).
   */
  run<T>(key: string, what: string, call: () => Promise<T>, late?: (result: T) => void): Promise<T> {
    if (this.#overdue.has(key)) return Promise.reject(new NoAnswerError(what, this.deadlineMs, true));
    const work = call();
    return withDeadline(work, this.deadlineMs, what, late).catch((error: unknown) => {
      if (error instanceof NoAnswerError && !error.stillWaiting) this.#track(key, work);
      throw error;
    });
  }

  #track(key: string, work: Promise<unknown>): void {
    const count = this.#overdue.get(key) ?? 0;
    this.#overdue.set(key, count + 1);
    if (count === 0) this.#notify(key, true);
    const done = () => {
      const left = (this.#overdue.get(key) ?? 1) - 1;
      if (left > 0) return void this.#overdue.set(key, left);
      this.#overdue.delete(key);
      this.#notify(key, false);
    };
    work.then(done, done);
  }

  #notify(key: string, overdue: boolean): void {
    for (const listener of this.#listeners) listener(key, overdue);
  }
}
