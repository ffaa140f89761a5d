import { afterEach, describe, expect, it, vi } from "vitest";
import { WorkQueue, type ProcessResult, type WorkQueueOptions } from "../../src/controller/workqueue.js";

/** A promise with its resolver exposed, to hold a `process` call open. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Lets pending microtasks and immediates run (real timers). */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Polls `condition` until it holds; fails after a generous timeout. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const queues: WorkQueue[] = [];
function makeQueue(options: WorkQueueOptions): WorkQueue {
  const queue = new WorkQueue(options);
  queues.push(queue);
  return queue;
}

afterEach(async () => {
  vi.useRealTimers();
  for (const queue of queues.splice(0)) await queue.shutDown({ timeoutMs: 1000 });
});

describe("WorkQueue deduplication and per-key exclusion", () => {
  it("stores a waiting key once however often it is added", async () => {
    const blocker = gate();
    const calls: string[] = [];
    const queue = makeQueue({
      workers: 1,
      process: async (key) => {
        calls.push(key);
        if (key === "blocker") await blocker.promise;
      },
    });
    queue.add("blocker");
    await waitFor(() => calls.length === 1, "blocker to start");
    for (let i = 0; i < 100; i++) queue.add("a");
    expect(queue.length).toBe(1);
    blocker.open();
    await queue.onIdle();
    expect(calls).toEqual(["blocker", "a"]);
  });

  it("never runs one key twice at once, and runs a key added during its run once more after", async () => {
    const gates = [gate(), gate()];
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const queue = makeQueue({
      workers: 4,
      process: async () => {
        const g = gates[runs++];
        running++;
        maxRunning = Math.max(maxRunning, running);
        await g?.promise;
        running--;
      },
    });
    queue.add("a");
    await waitFor(() => runs === 1, "first run");
    for (let i = 0; i < 5; i++) queue.add("a");
    await settle();
    expect(runs).toBe(1);
    expect(queue.length).toBe(0);
    gates[0]?.open();
    await waitFor(() => runs === 2, "second run");
    gates[1]?.open();
    await queue.onIdle();
    await settle();
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
  });

  it("runs different keys in parallel up to `workers` and never more", async () => {
    const gates = new Map<string, ReturnType<typeof gate>>();
    const started: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const queue = makeQueue({
      workers: 3,
      process: async (key) => {
        started.push(key);
        running++;
        maxRunning = Math.max(maxRunning, running);
        const g = gate();
        gates.set(key, g);
        await g.promise;
        running--;
      },
    });
    const keys = Array.from({ length: 10 }, (_, i) => `m${i}`);
    for (const key of keys) queue.add(key);
    await waitFor(() => started.length === 3, "three runs");
    await settle();
    expect(started).toEqual(["m0", "m1", "m2"]);
    expect(queue.length).toBe(7);
    for (let released = 0; released < keys.length; released++) {
      const key = keys[released]!;
      await waitFor(() => gates.has(key), `${key} to start`);
      gates.get(key)!.open();
    }
    await queue.onIdle();
    expect(started).toEqual(keys);
    expect(maxRunning).toBe(3);
  });

  it("rejects an invalid worker count with the option's name", () => {
    expect(() => new WorkQueue({ workers: 0, process: async () => {} })).toThrow(/"workers"/);
    expect(() => new WorkQueue({ backoff: { baseMs: -1 }, process: async () => {} })).toThrow(/backoff\.baseMs/);
  });
});

describe("WorkQueue backoff", () => {
  it("retries a failing key after 100, 200, 400 … ms, capped at 5 min, never earlier", async () => {
    vi.useFakeTimers();
    const retries: number[] = [];
    const attempts: number[] = [];
    let calls = 0;
    let retried = 0;
    const queue = makeQueue({
      process: async () => {
        calls++;
        throw new Error("boom");
      },
      onError: (_key, _error, retryInMs, attempt) => {
        retries.push(retryInMs);
        attempts.push(attempt);
      },
      observer: { retried: () => retried++ },
    });
    queue.add("a");
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    const expected = [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 102_400, 204_800, 300_000, 300_000];
    for (const [i, delay] of expected.entries()) {
      expect(retries[i]).toBe(delay);
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(calls).toBe(i + 1);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls).toBe(i + 2);
    }
    expect(retries.slice(0, expected.length)).toEqual(expected);
    expect(attempts.slice(0, 3)).toEqual([1, 2, 3]);
    expect(retried).toBe(expected.length + 1);
    expect(queue.numRequeues("a")).toBe(expected.length + 1);
  });

  it("retryNow runs a key waiting out its backoff at once, keeps its failure count, and runs it once", async () => {
    vi.useFakeTimers();
    let calls = 0;
    let failing = true;
    const retries: number[] = [];
    const queue = makeQueue({
      process: async () => {
        calls++;
        if (failing) throw new Error("boom");
      },
      onError: (_key, _error, retryInMs) => retries.push(retryInMs),
    });
    queue.add("a");
    for (const delay of [0, 100, 200, 400]) await vi.advanceTimersByTimeAsync(delay);
    expect([calls, retries.at(-1), queue.isDelayed("a")]).toEqual([4, 800, true]);

    // Still failing: retried now, not in 800 ms, and it backs off from where it was.
    expect(queue.retryNow("a")).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect([calls, retries.at(-1), queue.numRequeues("a")]).toEqual([5, 1600, 5]);

    failing = false;
    expect(queue.retryNow("a")).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect([calls, queue.isDelayed("a"), queue.numRequeues("a")]).toEqual([6, false, 0]);
    // The cancelled retry never fires; a key with nothing pending is just added.
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toBe(6);
    expect(queue.retryNow("a")).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(7);
  });

  it("a key added while its run fails waits for its backoff: work that causes its own events cannot spin", async () => {
    vi.useFakeTimers();
    let calls = 0;
    const queue = makeQueue({
      process: async (key) => {
        calls++;
        queue.add(key); // e.g. a failing hook that touches its machine's files
        throw new Error("boom");
      },
    });
    queue.add("a");
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(3);
    expect(queue.length).toBe(0);
  });

  it("a deferred result keeps the failure count and the pending retry", async () => {
    vi.useFakeTimers();
    let calls = 0;
    const queue = makeQueue({
      process: async () => {
        calls++;
        if (calls === 1) throw new Error("boom");
        if (calls === 2) return { deferred: true };
        throw new Error("boom again");
      },
    });
    queue.add("a");
    await vi.advanceTimersByTimeAsync(0);
    expect(queue.isDelayed("a")).toBe(true);
    queue.add("a"); // an event during the backoff
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(2);
    expect(queue.numRequeues("a")).toBe(1);
    expect(queue.isDelayed("a")).toBe(true);
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(3);
    // The sequence went on: the next delay is 200 ms, not 100.
    expect(queue.numRequeues("a")).toBe(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(calls).toBe(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(4);
  });

  it("treats a synchronous throw like a rejection", async () => {
    vi.useFakeTimers();
    const errors: unknown[] = [];
    let calls = 0;
    const queue = makeQueue({
      process: () => {
        calls++;
        throw new Error("sync boom");
      },
      onError: (_key, error, retryInMs) => errors.push([error instanceof Error ? error.message : error, retryInMs]),
    });
    expect(() => queue.add("a")).not.toThrow();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toEqual([["sync boom", 100]]);
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(2);
    expect(errors[1]).toEqual(["sync boom", 200]);
  });

  it("starts the sequence over after a success, and after forget", async () => {
    vi.useFakeTimers();
    const outcomes = ["fail", "fail", "fail", "ok", "fail"];
    const retries: number[] = [];
    const queue = makeQueue({
      process: async () => {
        if (outcomes.shift() === "fail") throw new Error("boom");
      },
      onError: (_key, _error, retryInMs) => retries.push(retryInMs),
    });
    queue.add("a");
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(100 + 200 + 400);
    expect(outcomes).toEqual(["fail"]);
    expect(queue.numRequeues("a")).toBe(0);
    queue.add("a");
    await vi.advanceTimersByTimeAsync(0);
    expect(retries).toEqual([100, 200, 400, 100]);

    expect(queue.addRateLimited("b")).toBe(100);
    expect(queue.addRateLimited("b")).toBe(200);
    expect(queue.numRequeues("b")).toBe(2);
    queue.forget("b");
    expect(queue.numRequeues("b")).toBe(0);
    expect(queue.addRateLimited("b")).toBe(100);
  });
});

describe("WorkQueue delayed adds", () => {
  it("adds after the delay and not before; the earliest pending time wins", async () => {
    vi.useFakeTimers();
    const calls: string[] = [];
    const queue = makeQueue({ process: async (key) => void calls.push(key) });
    queue.addAfter("a", 1000);
    queue.addAfter("b", 1000);
    queue.addAfter("b", 300);
    queue.addAfter("c", 300);
    queue.addAfter("c", 1000);
    expect(queue.delayedLength).toBe(3);
    await vi.advanceTimersByTimeAsync(299);
    expect(calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls.sort()).toEqual(["b", "c"]);
    await vi.advanceTimersByTimeAsync(699);
    expect(calls).toEqual(["b", "c"]);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toEqual(["b", "c", "a"]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toEqual(["b", "c", "a"]);
    expect(queue.delayedLength).toBe(0);
  });

  it("adds at once for a zero or negative delay", async () => {
    vi.useFakeTimers();
    const calls: string[] = [];
    const queue = makeQueue({ process: async (key) => void calls.push(key) });
    queue.addAfter("zero", 0);
    queue.addAfter("negative", -5);
    expect(queue.delayedLength).toBe(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual(["zero", "negative"]);
  });

  it("re-adds after requeueAfter on success and forgets past failures", async () => {
    vi.useFakeTimers();
    const results: Array<"fail" | ProcessResult | undefined> = ["fail", { requeueAfter: 500 }, undefined];
    let calls = 0;
    const queue = makeQueue({
      process: async () => {
        calls++;
        const result = results.shift();
        if (result === "fail") throw new Error("boom");
        return result;
      },
    });
    queue.add("a");
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(2);
    expect(queue.numRequeues("a")).toBe(0);
    await vi.advanceTimersByTimeAsync(499);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(3);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(calls).toBe(3);
  });

  it("onIdle waits for delayed adds only when asked to", async () => {
    vi.useFakeTimers();
    let calls = 0;
    const queue = makeQueue({ process: async () => void calls++ });
    queue.addAfter("a", 1000);
    let idleWithDelayed = false;
    void queue.onIdle({ includeDelayed: true }).then(() => (idleWithDelayed = true));
    let idle = false;
    void queue.onIdle().then(() => (idle = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(idle).toBe(true);
    expect(idleWithDelayed).toBe(false);
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toBe(1);
    expect(idleWithDelayed).toBe(true);
  });
});

describe("WorkQueue onEmpty", () => {
  it("resolves once the last waiting key has started, while keys are still in flight", async () => {
    const gates = new Map(["a", "b", "c"].map((key) => [key, gate()]));
    const started: string[] = [];
    const queue = makeQueue({
      workers: 2,
      process: async (key) => {
        started.push(key);
        await gates.get(key)!.promise;
      },
    });
    let empty = false;
    let idle = false;
    for (const key of gates.keys()) queue.add(key);
    void queue.onEmpty().then(() => (empty = true));
    void queue.onIdle().then(() => (idle = true));
    await settle();
    expect(started).toEqual(["a", "b"]);
    expect(empty).toBe(false);
    gates.get("a")!.open();
    await waitFor(() => started.includes("c"), "c to start");
    await settle();
    expect(empty).toBe(true);
    expect(idle).toBe(false);
    expect(queue.inFlight().map(({ key }) => key).sort()).toEqual(["b", "c"]);
    gates.get("b")!.open();
    gates.get("c")!.open();
    await waitFor(() => idle, "idle");
    let again = false;
    void queue.onEmpty().then(() => (again = true));
    await settle(1);
    expect(again).toBe(true);
  });

  it("resolves at shutdown, which drops the waiting keys", async () => {
    const blocker = gate();
    const queue = makeQueue({ workers: 1, process: async () => blocker.promise });
    queue.add("a");
    queue.add("b");
    let empty = false;
    void queue.onEmpty().then(() => (empty = true));
    await settle();
    expect(empty).toBe(false);
    const stopped = queue.shutDown();
    await settle();
    expect(empty).toBe(true);
    blocker.open();
    await stopped;
  });
});

describe("WorkQueue shutdown", () => {
  it("waits for in-flight work, ignores new adds, cancels delayed ones and starts no waiting one", async () => {
    vi.useFakeTimers();
    const slow = gate();
    const calls: string[] = [];
    let slowFinished = false;
    const queue = makeQueue({
      workers: 1,
      process: async (key) => {
        calls.push(key);
        if (key === "slow") {
          await slow.promise;
          slowFinished = true;
          throw new Error("failed while shutting down");
        }
      },
    });
    queue.add("slow");
    queue.add("waiting");
    queue.addAfter("delayed", 1000);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual(["slow"]);

    let drained: boolean | undefined;
    void queue.shutDown().then((result) => (drained = result));
    queue.add("new");
    queue.addAfter("new-delayed", 10);
    expect(queue.length).toBe(0);
    expect(queue.delayedLength).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(drained).toBeUndefined();
    expect(queue.inFlight().map((entry) => entry.key)).toEqual(["slow"]);

    slow.open();
    await vi.advanceTimersByTimeAsync(0);
    expect(slowFinished).toBe(true);
    expect(drained).toBe(true);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(calls).toEqual(["slow"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("returns false when in-flight work outlasts timeoutMs", async () => {
    vi.useFakeTimers();
    const slow = gate();
    const queue = makeQueue({ process: () => slow.promise });
    queue.add("slow");
    await vi.advanceTimersByTimeAsync(0);
    let drained: boolean | undefined;
    void queue.shutDown({ timeoutMs: 1000 }).then((result) => (drained = result));
    await vi.advanceTimersByTimeAsync(999);
    expect(drained).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(drained).toBe(false);
    expect(queue.inFlight()).toHaveLength(1);
    slow.open();
    await queue.onIdle();
    expect(queue.inFlight()).toHaveLength(0);
  });
});

describe("WorkQueue observer", () => {
  it("reports adds, depth changes and positive queue and work durations", async () => {
    const added: string[] = [];
    const depths: number[] = [];
    const queued: number[] = [];
    const worked: number[] = [];
    const first = gate();
    const queue = makeQueue({
      workers: 1,
      process: async (key) => {
        if (key === "a" && worked.length === 0) await first.promise;
        await new Promise((resolve) => setTimeout(resolve, 5));
      },
      observer: {
        added: (key) => added.push(key),
        depth: (depth) => depths.push(depth),
        queued: (seconds) => queued.push(seconds),
        worked: (seconds) => worked.push(seconds),
      },
    });
    queue.add("a"); // starts at once: depth 1 then 0
    await waitFor(() => queue.inFlight().length === 1, "a to start");
    queue.add("b"); // 1
    queue.add("a"); // dirty while running: no depth change
    queue.add("c"); // 2
    queue.add("b"); // duplicate: no depth change
    const inFlight = queue.inFlight();
    expect(inFlight.map((entry) => entry.key)).toEqual(["a"]);
    expect(inFlight[0]!.startedAt).toBeLessThanOrEqual(performance.now());
    first.open();
    await queue.onIdle();
    expect(added).toEqual(["a", "b", "a", "c", "b"]);
    // a ends → re-queued (3), b starts (2), c starts (1), a starts (0)
    expect(depths).toEqual([1, 0, 1, 2, 3, 2, 1, 0]);
    expect(worked).toHaveLength(4);
    expect(queued).toHaveLength(4);
    for (const seconds of worked) expect(seconds).toBeGreaterThan(0);
    for (const seconds of queued.slice(1)) expect(seconds).toBeGreaterThan(0);
  });
});
