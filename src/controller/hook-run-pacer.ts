/**
 * Spaces out repeated hook runs for the same content of a machine (docs/design.md#reconcile-rules).
 * Runs for the same content in quick succession (each within twice its predecessor's wait) wait twice
 * as long as the one before, whatever ended the last (a hook that failed, one that rebuilt the
 * machine's directory so that the recovery started over, one that put the old content back after a
 * recovery). The work queue's backoff paces failures it sees; this paces the runs themselves. After a
 * quiet spell (or for other content) the first wait is short again: a machine that is legitimately
 * started and recovered again and again, minutes apart, is not held back.
 */
import type { Revision } from "../store/index.js";
import type { HookRunPacer } from "./reconciler.js";

export interface BackoffPacerOptions {
  /** The wait after the first run; doubled for each further run of the same content. Default 100 ms. */
  baseMs?: number;
  /** The longest wait. Default 5 min. */
  maxMs?: number;
  /** The clock, in milliseconds (tests). Default `performance.now`. */
  now?: () => number;
}

/** A HookRunPacer with exponential backoff per machine. Keeps one entry per machine whose hooks ran, until it is gone. */
export class BackoffPacer implements HookRunPacer {
  readonly #runs = new Map<string, { revision: Revision; count: number; lastAt: number }>();
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #now: () => number;

  constructor(options: BackoffPacerOptions = {}) {
    this.#baseMs = options.baseMs ?? 100;
    this.#maxMs = options.maxMs ?? 5 * 60_000;
    this.#now = options.now ?? (() => performance.now());
  }

  delayFor(name: string, revision: Revision): number {
    const runs = this.#runs.get(name);
    if (runs === undefined || runs.revision !== revision) return 0;
    const wait = this.#waitAfter(runs.count) - (this.#now() - runs.lastAt);
    return wait > 0 ? Math.ceil(wait) : 0;
  }

  ran(name: string, revision: Revision): void {
    const runs = this.#runs.get(name);
    const now = this.#now();
    const repeated = runs !== undefined && runs.revision === revision && now - runs.lastAt < 2 * this.#waitAfter(runs.count);
    this.#runs.set(name, { revision, count: repeated ? runs.count + 1 : 1, lastAt: now });
  }

  forget(name: string): void {
    this.#runs.delete(name);
  }

  /** The wait after the `count`-th run in a row. */
  #waitAfter(count: number): number {
    return Math.min(this.#baseMs * 2 ** (count - 1), this.#maxMs);
  }
}
