import PQueue from "p-queue";

/** What a successful `process` call asks for next. */
export interface ProcessResult {
  /**
   * Process the key again after this many ms (controller-runtime `RequeueAfter`): the key's failure
   * count is reset and it is re-added with `addAfter`. Absent, zero, negative or not finite: no requeue.
   */
  requeueAfter?: number;
  /**
   * The key was looked at but deliberately left for its pending backoff retry: its failure count and
   * that retry are kept as they are (no `forget`, no requeue).
   */
  deferred?: boolean;
}

/**
 * Metric hooks, with client-go's `MetricsProvider` meaning. Every callback is optional. They run after
 * the queue's state is updated and must not throw: a throw surfaces as an unhandled rejection.
 */
export interface WorkQueueObserver {
  /** Every `add` call (and every fired delayed add), deduplicated or not: `arcbox_workqueue_adds_total`. */
  added?(key: string): void;
  /** The number of waiting keys (not in flight, not delayed), after every change: `arcbox_workqueue_depth`. */
  depth?(depth: number): void;
  /** Seconds a key waited from becoming ready to processing start: `arcbox_workqueue_queue_duration_seconds`. */
  queued?(seconds: number): void;
  /** Seconds one `process` call took: `arcbox_workqueue_work_duration_seconds`. */
  worked?(seconds: number): void;
  /** Every `addRateLimited` call (a retry after a failure): `arcbox_workqueue_retries_total`. */
  retried?(key: string): void;
}

/** Construction options of a {@link WorkQueue}. */
export interface WorkQueueOptions {
  /** How many different keys are processed at once. Positive integer; default 4. */
  workers?: number;
  /**
   * Processes one key. Resolving is success: the key's failure count is reset (`forget`), and a
   * `requeueAfter` is honoured. Rejecting or throwing synchronously is failure: the key is retried
   * after its backoff (`addRateLimited`) and `onError` is told.
   */
  process: (key: string) => Promise<ProcessResult | void> | ProcessResult | void;
  /** Per-key exponential backoff: `baseMs × 2^(failures so far)`, at most `maxMs`. Defaults 100 ms and 5 min. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Metric hooks; none by default. */
  observer?: WorkQueueObserver;
  /**
   * Told when `process` failed for `key`: `retryInMs` is the delay before the retry, `attempt` the number
   * of consecutive failures of that key including this one (1 for the first). Not called after `shutDown`.
   * Must not throw.
   */
  onError?: (key: string, error: unknown, retryInMs: number, attempt: number) => void;
}

/** A key being processed, for the in-flight gauges computed at scrape time. */
export interface InFlightKey {
  key: string;
  /** When processing started, in `performance.now()` milliseconds. */
  startedAt: number;
}

interface DelayedAdd {
  readyAt: number;
  timer: NodeJS.Timeout;
}

/** A caller of `onIdle` or `onEmpty`, waiting for `reached` to hold. */
interface Waiter {
  reached: () => boolean;
  resolve: () => void;
}

const DEFAULT_WORKERS = 4;
const DEFAULT_BACKOFF_BASE_MS = 100;
const DEFAULT_BACKOFF_MAX_MS = 5 * 60_000;
/** Longest delay `setTimeout` honours; longer ones would fire after 1 ms. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * A rate-limited, delaying work queue of string keys with client-go's guarantees:
 * - a waiting key is stored once however often it is added, and waiting keys start in the order they
 *   became ready;
 * - a key is processed by at most one worker at a time; a key added while it is processed is marked
 *   dirty and processed once more after the current run finishes (at once after a success; after a
 *   failure, at its backoff retry, which sees the same change: so work that itself causes events, such
 *   as a failing hook touching its machine's files, cannot spin without backoff);
 * - up to `workers` different keys are processed at once (p-queue does the bounding);
 * - failures are retried with per-key exponential backoff, and success forgets the key's failures.
 * Time is read with `performance.now()`; timers are plain `setTimeout`s, all cleared by `shutDown`.
 */
export class WorkQueue {
  readonly #process: WorkQueueOptions["process"];
  readonly #observer: WorkQueueObserver;
  readonly #onError: WorkQueueOptions["onError"];
  readonly #backoffBaseMs: number;
  readonly #backoffMaxMs: number;
  readonly #pool: PQueue;
  /** Ready keys with a pool task not yet started, and when they became ready. */
  readonly #waiting = new Map<string, number>();
  /** Keys being processed, and when their run started. */
  readonly #processing = new Map<string, number>();
  /** Keys added while being processed: run again once the current run ends. */
  readonly #dirty = new Set<string>();
  readonly #delayed = new Map<string, DelayedAdd>();
  readonly #failures = new Map<string, number>();
  #waiters: Waiter[] = [];
  #shuttingDown = false;

  /** Creates an idle queue. Throws a `RangeError` naming the option when `workers` or `backoff` is invalid. */
  constructor(options: WorkQueueOptions) {
    const workers = options.workers ?? DEFAULT_WORKERS;
    if (!Number.isInteger(workers) || workers < 1) {
      throw new RangeError(`WorkQueue option "workers" must be a positive integer, got ${String(workers)}`);
    }
    this.#backoffBaseMs = options.backoff?.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
    this.#backoffMaxMs = options.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
    for (const [name, value] of [["baseMs", this.#backoffBaseMs], ["maxMs", this.#backoffMaxMs]] as const) {
      if (!Number.isFinite(value) || value < 0) {
        throw new RangeError(`WorkQueue option "backoff.${name}" must be a finite number ≥ 0, got ${String(value)}`);
      }
    }
    this.#process = options.process;
    this.#observer = options.observer ?? {};
    this.#onError = options.onError;
    this.#pool = new PQueue({ concurrency: workers });
  }

  /** Number of waiting keys: ready, not yet started (neither in-flight nor delayed keys count). */
  get length(): number {
    return this.#waiting.size;
  }

  /** Number of keys with a pending delayed add (`addAfter`, backoff retries, `requeueAfter`). */
  get delayedLength(): number {
    return this.#delayed.size;
  }

  /** True while a delayed add of `key` is pending (a backoff retry, `addAfter`, `requeueAfter`). */
  isDelayed(key: string): boolean {
    return this.#delayed.has(key);
  }

  /** Makes `key` ready now. No-op for a key already waiting, and ignored (no throw) after `shutDown`. */
  add(key: string): void {
    if (this.#shuttingDown) return;
    this.#observer.added?.(key);
    if (this.#waiting.has(key)) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    this.#enqueue(key);
  }

  /**
   * Adds `key` after `delayMs` (`≤ 0` or NaN: now; at most about 24.8 days, longer is shortened to that).
   * A key already pending keeps the earlier of its two ready times. Ignored after `shutDown`.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (!(delayMs > 0)) {
      this.add(key);
      return;
    }
    delayMs = Math.min(delayMs, MAX_TIMER_DELAY_MS);
    const readyAt = performance.now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined) {
      if (pending.readyAt <= readyAt) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.#delayed.set(key, { readyAt, timer });
  }

  /**
   * Makes `key` ready now, also when a delayed add of it is pending (a failure's backoff retry, a
   * `requeueAfter`): that add is cancelled and the key added. Its failure count is kept, so a retry
   * that fails again backs off from where it was. Returns whether a delayed add was pending; false
   * (and nothing done) after `shutDown`.
   */
  retryNow(key: string): boolean {
    if (this.#shuttingDown) return false;
    const pending = this.#delayed.get(key);
    if (pending !== undefined) {
      clearTimeout(pending.timer);
      this.#delayed.delete(key);
    }
    this.add(key);
    return pending !== undefined;
  }

  /** Counts a failure of `key` and adds it after its backoff delay, which it returns (0 after `shutDown`). */
  addRateLimited(key: string): number {
    if (this.#shuttingDown) return 0;
    const failures = this.#failures.get(key) ?? 0;
    const delayMs = Math.min(this.#backoffBaseMs * 2 ** failures, this.#backoffMaxMs);
    this.#failures.set(key, failures + 1);
    this.#observer.retried?.(key);
    this.addAfter(key, delayMs);
    return delayMs;
  }

  /** Resets the failure count of `key`, so its next backoff starts again at the base delay. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** Consecutive failures of `key` counted since it was last forgotten. */
  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** The keys being processed now, with their start times (`performance.now()` ms). */
  inFlight(): ReadonlyArray<InFlightKey> {
    return [...this.#processing].map(([key, startedAt]) => ({ key, startedAt }));
  }

  /**
   * Resolves once no key is waiting or in flight and, with `includeDelayed`, no delayed add is pending
   * (a key that keeps failing then never lets it resolve). Resolves at once when already idle.
   */
  onIdle(options: { includeDelayed?: boolean } = {}): Promise<void> {
    const includeDelayed = options.includeDelayed ?? false;
    return this.#when(() => this.#isIdle(includeDelayed));
  }

  /**
   * Resolves once no key is waiting to start; keys may still be in flight or delayed. Resolves at once
   * when none is waiting.
   */
  onEmpty(): Promise<void> {
    return this.#when(() => this.#waiting.size === 0);
  }

  /**
   * Stops the queue: later adds are ignored, pending delayed adds are cancelled, waiting keys are dropped
   * without being started. Resolves `true` once in-flight runs have finished, or `false` if `timeoutMs`
   * (default: no limit) elapsed first; the runs are not interrupted either way.
   */
  async shutDown(options: { timeoutMs?: number } = {}): Promise<boolean> {
    this.#shuttingDown = true;
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    this.#pool.clear();
    this.#dirty.clear();
    if (this.#waiting.size > 0) {
      this.#waiting.clear();
      this.#observer.depth?.(0);
    }
    this.#settleWaiters();
    const drained = this.onIdle().then(() => true);
    if (options.timeoutMs === undefined) return drained;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), options.timeoutMs);
    });
    try {
      return await Promise.race([drained, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  #enqueue(key: string): void {
    this.#waiting.set(key, performance.now());
    this.#observer.depth?.(this.#waiting.size);
    void this.#pool.add(() => this.#run(key));
  }

  async #run(key: string): Promise<void> {
    const readyAt = this.#waiting.get(key);
    // Dropped by shutDown between being scheduled and being started.
    if (readyAt === undefined) return;
    this.#waiting.delete(key);
    const startedAt = performance.now();
    this.#processing.set(key, startedAt);
    this.#observer.depth?.(this.#waiting.size);
    this.#observer.queued?.((startedAt - readyAt) / 1000);
    if (this.#waiting.size === 0) this.#settleWaiters();

    let outcome: { ok: true; result: ProcessResult | void } | { ok: false; error: unknown };
    try {
      // Deferred so that add() never runs the caller's process synchronously.
      outcome = { ok: true, result: await Promise.resolve().then(() => this.#process(key)) };
    } catch (error) {
      outcome = { ok: false, error };
    }

    this.#processing.delete(key);
    if (this.#dirty.delete(key) && outcome.ok) this.#enqueue(key);
    try {
      this.#observer.worked?.((performance.now() - startedAt) / 1000);
      if (this.#shuttingDown) return;
      if (outcome.ok && outcome.result?.deferred) {
        // Left for the retry that is already scheduled.
      } else if (outcome.ok) {
        this.forget(key);
        const requeueAfter = outcome.result?.requeueAfter;
        if (requeueAfter !== undefined && requeueAfter > 0 && Number.isFinite(requeueAfter)) {
          this.addAfter(key, requeueAfter);
        }
      } else {
        const retryInMs = this.addRateLimited(key);
        this.#onError?.(key, outcome.error, retryInMs, this.numRequeues(key));
      }
    } finally {
      this.#settleWaiters();
    }
  }

  #isIdle(includeDelayed: boolean): boolean {
    return this.#waiting.size === 0 && this.#processing.size === 0 && (!includeDelayed || this.#delayed.size === 0);
  }

  #when(reached: () => boolean): Promise<void> {
    if (reached()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ reached, resolve }));
  }

  #settleWaiters(): void {
    if (this.#waiters.length === 0) return;
    const stillWaiting: Waiter[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.reached()) waiter.resolve();
      else stillWaiting.push(waiter);
    }
    this.#waiters = stillWaiting;
  }
}
