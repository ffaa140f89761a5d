/**
 * Deadlines for calls on paths that may hang (docs/design.md#hung-mounts): a call that never answers
 * is given up on, its key fails fast until it answers, and listeners hear both transitions.
 */
import { describe, expect, it } from "vitest";
import { NoAnswerError, OverdueCalls, unansweredCalls, withDeadline } from "../../src/platform/deadline.js";

/** A call that answers only when the test says so. */
function pending<T>(): { promise: Promise<T>; answer(value: T): void; fail(error: Error): void } {
  let answer!: (value: T) => void;
  let fail!: (error: Error) => void;
  const promise = new Promise<T>((resolve, reject) => {
    answer = resolve;
    fail = reject;
  });
  return { promise, answer, fail };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("withDeadline", () => {
  it("gives the call's own result or error while it answers in time", async () => {
    await expect(withDeadline(Promise.resolve(7), 10_000, "read of /x")).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error("EACCES")), 10_000, "read of /x")).rejects.toThrow("EACCES");
    expect(unansweredCalls()).toBe(0);
  });

  it("gives up with ETIMEDOUT naming the call, counts it until it answers, and hands a late result to `late`", async () => {
    const call = pending<string>();
    const late: string[] = [];
    const error = await withDeadline(call.promise, 5, "open of /m/web", (value) => late.push(value)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoAnswerError);
    expect(error).toMatchObject({ code: "ETIMEDOUT", what: "open of /m/web", deadlineMs: 5, stillWaiting: false });
    expect((error as Error).message).toBe("ETIMEDOUT: no answer within 5 ms (a hung mount?), open of /m/web");
    expect(unansweredCalls()).toBe(1);
    call.answer("descriptor");
    await settle();
    expect(late).toEqual(["descriptor"]);
    expect(unansweredCalls()).toBe(0);
  });

  it("stops counting a call given up on that finally fails", async () => {
    const call = pending<string>();
    await expect(withDeadline(call.promise, 5, "stat of /m/web")).rejects.toBeInstanceOf(NoAnswerError);
    expect(unansweredCalls()).toBe(1);
    call.fail(new Error("ENOTCONN"));
    await settle();
    expect(unansweredCalls()).toBe(0);
  });
});

describe("OverdueCalls", () => {
  it("fails further calls on an overdue key at once, without running them, and leaves other keys alone", async () => {
    const calls = new OverdueCalls({ deadlineMs: 5 });
    const stuck = pending<void>();
    await expect(calls.run("/m/web", "open of /m/web", () => stuck.promise)).rejects.toMatchObject({ stillWaiting: false });
    let ran = false;
    const again = await calls
      .run("/m/web", "stat of /m/web/config.toml", async () => void (ran = true))
      .catch((error: unknown) => error);
    expect(ran).toBe(false);
    expect(again).toMatchObject({ code: "ETIMEDOUT", stillWaiting: true });
    expect((again as Error).message).toBe(
      "ETIMEDOUT: an earlier call on this path has not answered yet (a hung mount?), stat of /m/web/config.toml",
    );
    await expect(calls.run("/m/db", "open of /m/db", async () => "ok")).resolves.toBe("ok");
    expect(calls.isOverdue("/m/web")).toBe(true);
    expect(calls.overdueKeys()).toEqual(["/m/web"]);
    stuck.answer();
    await settle();
    expect(calls.isOverdue("/m/web")).toBe(false);
    await expect(calls.run("/m/web", "open of /m/web", async () => "ok")).resolves.toBe("ok");
  });

  it("tells listeners when a key becomes overdue and when its last overdue call answers, once each", async () => {
    const calls = new OverdueCalls({ deadlineMs: 5 });
    const heard: Array<[string, boolean]> = [];
    const unsubscribe = calls.subscribe((key, overdue) => heard.push([key, overdue]));
    const first = pending<void>();
    const second = pending<void>();
    // Two calls started together, both overdue: one transition each way.
    const both = [calls.run("/lock", "open of /lock", () => first.promise), calls.run("/lock", "open of /lock", () => second.promise)];
    await Promise.allSettled(both);
    expect(heard).toEqual([["/lock", true]]);
    first.answer();
    await settle();
    expect(heard).toEqual([["/lock", true]]);
    expect(calls.isOverdue("/lock")).toBe(true);
    second.answer();
    await settle();
    expect(heard).toEqual([["/lock", true], ["/lock", false]]);
    unsubscribe();
    const third = pending<void>();
    await calls.run("/lock", "open of /lock", () => third.promise).catch(() => undefined);
    expect(heard).toHaveLength(2);
    third.answer();
    await settle();
  });
});
