/**
 * A timeout measured in the controller's running time (docs/design.md#hooks): time in which the
 * process could not run (stopped by SIGSTOP, or on a host that was suspended) does not count. A
 * hook that finished meanwhile must not be called timed out, and killed and run again, merely
 * because the clock moved on while nobody could look.
 */

/** Longest step between two looks at the clock. */
const STEP_MS = 1000;
/**
 * How late a step may be and still count in full: a busy event loop runs timers late, a stopped
 * process very late. Whatever a step is later than this is taken for time the process did not run.
 */
const LATE_ALLOWANCE_MS = 500;

/** A running-time timeout; `clear` cancels it. */
export interface RunningTimeTimeout {
  clear(): void;
}

/**
 * Calls `onExpire` once `ms` of running time have passed. The expiry is reported one turn of the
 * event loop after it is noticed, so that an exit that became known in the same turn (a hook that
 * ended while the process was stopped) is handled first and can `clear` the timeout.
 */
export function runningTimeTimeout(ms: number, onExpire: () => void, now: () => number = () => performance.now()): RunningTimeTimeout {
  let counted = 0;
  let timer: NodeJS.Timeout | undefined;
  let last = now();
  const step = (delay: number) => {
    timer = setTimeout(() => {
      const at = now();
      counted += Math.min(at - last, delay + LATE_ALLOWANCE_MS);
      last = at;
      if (counted < ms) return step(Math.min(STEP_MS, ms - counted));
      timer = setTimeout(onExpire, 0);
    }, delay);
  };
  step(Math.min(STEP_MS, ms));
  return {
    clear() {
      clearTimeout(timer);
    },
  };
}
