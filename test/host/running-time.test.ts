import { afterEach, describe, expect, it, vi } from "vitest";
import { runningTimeTimeout } from "../../src/host/hooks/running-time.js";

afterEach(() => vi.useRealTimers());

describe("runningTimeTimeout", () => {
  it("expires after its time when the process runs all along", async () => {
    vi.useFakeTimers();
    let expired = false;
    runningTimeTimeout(2500, () => (expired = true), () => Date.now());
    await vi.advanceTimersByTimeAsync(2499);
    expect(expired).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    expect(expired).toBe(true);
  });

  it("does not count time in which it could not run, and can be cleared before the expiry is reported", async () => {
    vi.useFakeTimers();
    let expired = false;
    let clock = 0;
    runningTimeTimeout(5000, () => (expired = true), () => clock);
    // One second runs normally, then the process is stopped for a minute: the next step comes a
    // minute late, and counts only as one step and its allowance (2.5 s in all, not 61 s).
    clock += 1000;
    await vi.advanceTimersByTimeAsync(1000);
    clock += 60_000;
    await vi.advanceTimersByTimeAsync(1000);
    expect(expired).toBe(false);
    const timeout = runningTimeTimeout(100, () => (expired = true), () => clock);
    clock += 100;
    await vi.advanceTimersByTimeAsync(100); // noticed; reported a turn later
    timeout.clear();
    await vi.advanceTimersByTimeAsync(10);
    expect(expired).toBe(false);
  });
});
