import { describe, expect, it } from "vitest";
import { ActivityLog, MAX_ACTIVITY_TEXT, type ActivityEvent } from "../../src/metrics/activity.js";

const recovered = (machine: string): ActivityEvent => ({ kind: "recovered", machine, reason: "daemon is down", hooks: ["10-net"], duration_ms: 12 });

describe("activity record", () => {
  it("keeps events newest first, numbered in order, with the time they were recorded", () => {
    let clock = Date.parse("2026-04-27T04:13:21.000Z");
    const log = new ActivityLog({ now: () => new Date((clock += 1000)) });
    log.record(recovered("web"));
    log.record({ kind: "failed", machine: "db", attempt: 1, retry_in_ms: 100, err: "network hook 10-net failed", hook: "10-net", exit_code: 3, stderr: "no bridge\n" });
    log.record({ kind: "daemon", up: false, reason: "no process holds the lock" });
    expect(log.recent().map((e) => [e.seq, e.kind, e.time])).toEqual([
      [3, "daemon", "2026-04-27T04:13:24.000Z"],
      [2, "failed", "2026-04-27T04:13:23.000Z"],
      [1, "recovered", "2026-04-27T04:13:22.000Z"],
    ]);
    expect(log.recent(2).map((e) => e.seq)).toEqual([3, 2]);
    expect(log.recent(0)).toEqual([]);
    expect(log.recent()[1]).toMatchObject({ machine: "db", hook: "10-net", exit_code: 3, stderr: "no bridge\n" });
    expect(log.snapshot()).toEqual({ capacity: 300, recorded: 3, events: log.recent() });
  });

  it("stays bounded after 10,000 events: the newest `capacity` are kept, and 10,000 more add nothing", () => {
    const log = new ActivityLog({ capacity: 250 });
    const event = (i: number): ActivityEvent => ({
      kind: "failed",
      machine: `m-${i % 10}`,
      attempt: 1,
      retry_in_ms: 100,
      err: "x".repeat(100),
      stderr: "e".repeat(10_000),
    });
    for (let i = 1; i <= 10_000; i++) log.record(event(i));
    const after10k = log.snapshot();
    expect(after10k.recorded).toBe(10_000);
    expect(after10k.events).toHaveLength(250);
    expect(after10k.events.map((e) => e.seq)).toEqual(Array.from({ length: 250 }, (_, i) => 10_000 - i));
    for (let i = 10_001; i <= 20_000; i++) log.record(event(i));
    const size20k = JSON.stringify(log.snapshot()).length;
    for (let i = 20_001; i <= 30_000; i++) log.record(event(i));
    expect(log.recent()).toHaveLength(250);
    // The same number of entries of the same shape (seq 29751..30000 has as many digits as
    // 19751..20000): 10,000 more events did not grow the record by a byte.
    expect(JSON.stringify(log.snapshot()).length).toBe(size20k);
    // Each entry's stderr was cut to the bound.
    expect(Math.max(...log.recent().map((e) => (e.kind === "failed" ? e.stderr!.length : 0)))).toBe(MAX_ACTIVITY_TEXT);
  });

  it("cuts long texts: a stderr tail keeps its end, anything else its start; hook lists are copied", () => {
    const log = new ActivityLog();
    const hooks = ["10-net"];
    const entry = log.record({ kind: "failed", machine: "m", attempt: 1, retry_in_ms: 1, err: `start${"x".repeat(5000)}`, stderr: `${"y".repeat(5000)}end` });
    expect(entry.kind === "failed" && entry.err.startsWith("start") && entry.err.endsWith("…")).toBe(true);
    expect(entry.kind === "failed" && entry.stderr!.startsWith("…") && entry.stderr!.endsWith("end")).toBe(true);
    const kept = log.record({ kind: "recovered", machine: "m", reason: "r", hooks, duration_ms: 1 });
    hooks.push("20-later");
    expect(kept.kind === "recovered" && kept.hooks).toEqual(["10-net"]);
  });

  it("counts a failure repeating the newest entry in that entry, with the latest attempt; anything else is a new entry", () => {
    let clock = Date.parse("2026-04-27T04:00:00.000Z");
    const log = new ActivityLog({ now: () => new Date((clock += 1000)) });
    const failure = (machine: string, attempt: number, err = "db: recovery failed: exit code 3"): ActivityEvent => ({
      kind: "failed",
      machine,
      attempt,
      retry_in_ms: 100 * 2 ** (attempt - 1),
      err,
    });
    log.record(failure("db", 1));
    log.record(failure("db", 2));
    const third = log.record(failure("db", 3));
    expect(third).toMatchObject({ seq: 1, count: 3, attempt: 3, retry_in_ms: 400, first_time: "2026-04-27T04:00:01.000Z", time: "2026-04-27T04:00:03.000Z" });
    expect(log.recent()).toEqual([third]);
    expect(log.recorded).toBe(1);
    // Another error, another machine, or anything in between: new entries.
    log.record(failure("db", 4, "db: recovery failed: exit code 4"));
    log.record(failure("web", 1));
    log.record(failure("db", 5, "db: recovery failed: exit code 4"));
    expect(log.recent().map((e) => [e.seq, "machine" in e ? e.machine : null, e.count])).toEqual([
      [4, "db", 1],
      [3, "web", 1],
      [2, "db", 1],
      [1, "db", 3],
    ]);
  });

  it("refuses a capacity that is not a positive integer", () => {
    for (const capacity of [0, -1, 1.5, Number.NaN]) expect(() => new ActivityLog({ capacity })).toThrow(RangeError);
  });
});

