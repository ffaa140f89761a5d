/**
 * The record of what the controller did recently (recoveries, failures, invalid configs, the arcbox
 * daemon going up or down), for the landing page and tools. It keeps the newest few hundred entries
 * in a ring: memory stays bounded however long the controller runs. A failure that repeats the
 * newest entry (the same machine failing the same way on every retry) is counted in that entry
 * instead of pushing older history out.
 */

/** The hook, exit and output details of a failed reconcile, as the log line carries them. */
export interface FailureDetails {
  /** The error's message. */
  err: string;
  /** The hook that failed, when a networking hook did. */
  hook?: string;
  exit_code?: number | null;
  signal?: string | null;
  timed_out?: boolean;
  /** The tail of the hook's stderr (only where it may be shown: see `show_hook_output`). */
  stderr?: string;
  /** The reconcile whose log lines tell the whole story. */
  reconcile_id?: string;
}

/** One thing the controller did or saw. Field names are those of the log lines. */
export type ActivityEvent =
  /** `no_hooks`: why no hook ran for want of a hooks directory (hooks off, the default one missing). */
  | { kind: "recovered"; machine: string; reason: string; hooks: string[]; no_hooks?: string; duration_ms: number }
  | ({ kind: "failed"; machine: string; attempt: number; retry_in_ms: number } & FailureDetails)
  | { kind: "invalid"; machine: string; err: string; path?: string }
  | { kind: "daemon"; up: boolean; reason: string };

/**
 * A recorded event: numbered from 1 in the order recorded, with the time it last happened (ISO 8601,
 * UTC), how often it happened in a row (`count`, from `first_time` on) and, for a repeated failure,
 * the latest attempt's details.
 */
export type ActivityEntry = ActivityEvent & { seq: number; time: string; count: number; first_time: string };

/** The JSON document of `GET /activity`. */
export interface ActivitySnapshot {
  /** How many events the record keeps. */
  capacity: number;
  /** Entries recorded since start-up, including those no longer kept. */
  recorded: number;
  /** The kept events, newest first. */
  events: ActivityEntry[];
}

/** Events kept by default: a few hundred, enough to look back over an incident. */
export const DEFAULT_ACTIVITY_CAPACITY = 300;
/** Longest text kept in one field; a stderr tail keeps its end, anything else its start. */
export const MAX_ACTIVITY_TEXT = 2048;

export interface ActivityLogOptions {
  /** Events kept (default {@link DEFAULT_ACTIVITY_CAPACITY}). */
  capacity?: number;
  /** The clock (tests). */
  now?: () => Date;
}

/** A bounded, newest-first record of controller activity. */
export class ActivityLog {
  readonly capacity: number;
  readonly #ring: (ActivityEntry | undefined)[];
  readonly #now: () => Date;
  /** Entries recorded so far; the next one goes to slot `#recorded % capacity`. */
  #recorded = 0;

  /** Throws a RangeError when `capacity` is not a positive integer. */
  constructor(options: ActivityLogOptions = {}) {
    const capacity = options.capacity ?? DEFAULT_ACTIVITY_CAPACITY;
    if (!Number.isSafeInteger(capacity) || capacity <= 0) {
      throw new RangeError(`activity capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#ring = new Array<ActivityEntry | undefined>(capacity);
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Records an event, dropping the oldest entry when full; a failure repeating the newest entry
   * (same machine, same error) updates that entry instead. Long texts are cut to
   * {@link MAX_ACTIVITY_TEXT} characters and arrays copied (at most 64 items), so an entry never
   * holds more than that. Returns the entry as kept. Never fails.
   */
  record(event: ActivityEvent): ActivityEntry {
    const kept = bounded(event);
    const time = this.#now().toISOString();
    const newestSlot = (this.#recorded - 1) % this.capacity;
    const newest = this.#recorded > 0 ? this.#ring[newestSlot] : undefined;
    if (kept.kind === "failed" && newest?.kind === "failed" && newest.machine === kept.machine && newest.err === kept.err) {
      const repeated = { ...kept, seq: newest.seq, time, count: newest.count + 1, first_time: newest.first_time } as ActivityEntry;
      this.#ring[newestSlot] = repeated;
      return repeated;
    }
    const entry = { ...kept, seq: this.#recorded + 1, time, count: 1, first_time: time } as ActivityEntry;
    this.#ring[this.#recorded % this.capacity] = entry;
    this.#recorded += 1;
    return entry;
  }

  /** Entries recorded since start-up, including those no longer kept. */
  get recorded(): number {
    return this.#recorded;
  }

  /** The kept events, newest first (at most `limit` of them). */
  recent(limit = this.capacity): ActivityEntry[] {
    const kept = Math.min(this.#recorded, this.capacity, Math.max(0, limit));
    const entries: ActivityEntry[] = [];
    for (let i = 1; i <= kept; i++) entries.push(this.#ring[(this.#recorded - i) % this.capacity]!);
    return entries;
  }

  /** The whole record as served at `GET /activity`. */
  snapshot(): ActivitySnapshot {
    return { capacity: this.capacity, recorded: this.#recorded, events: this.recent() };
  }
}

function bounded(event: ActivityEvent): ActivityEvent {
  const copy: Record<string, unknown> = { ...event };
  for (const [key, value] of Object.entries(copy)) {
    if (typeof value === "string") copy[key] = clip(value, key === "stderr");
    else if (Array.isArray(value)) copy[key] = value.slice(0, 64).map((item) => (typeof item === "string" ? clip(item, false) : item));
  }
  return copy as ActivityEvent;
}

function clip(text: string, keepEnd: boolean): string {
  if (text.length <= MAX_ACTIVITY_TEXT) return text;
  const cut = keepEnd ? `…${text.slice(-(MAX_ACTIVITY_TEXT - 1))}` : `${text.slice(0, MAX_ACTIVITY_TEXT - 1)}…`;
  // A slice may keep the whole original string alive; a copy holds only what is kept.
  return Buffer.from(cut, "utf8").toString("utf8");
}
