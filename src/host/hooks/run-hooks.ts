/** Running the networking hooks of a recovery, in order (docs/design.md#hooks). */
import { performance } from "node:perf_hooks";
import type { Machine } from "../../store/machine.js";
import { HookError, NetworkHookError } from "./errors.js";
import type { HookContext, NetworkHook } from "./network-hook.js";

/** How one hook run ended, as the `result` label of `arcbox_network_hook_runs_total`. */
export type HookResult = "success" | "failure" | "timeout";

/** Told about every hook that finished (for metrics and logs). */
export interface HookObserver {
  hookFinished(hook: string, result: HookResult, seconds: number): void;
}

/**
 * Runs `hooks` one at a time, in the given order, for `machine`, and returns the names of those that
 * ran (all of them, on success). Stops at the first failure and throws it: a {@link HookError} or
 * `HookRefusedError` as thrown by the hook; any other error an in-process hook throws is wrapped in a
 * {@link HookError} (with the original as `cause`). The observer hears `timeout` for a hook that timed
 * out and `failure` for every other failure, a refusal included.
 */
export async function runHooks(
  hooks: readonly NetworkHook[],
  machine: Machine,
  context: HookContext,
  observer?: HookObserver,
): Promise<{ ran: string[] }> {
  const ran: string[] = [];
  for (const hook of hooks) {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      await hook.recover(machine, context);
    } catch (error) {
      const failure = asNetworkHookError(error, hook.name, machine.name);
      const timedOut = failure instanceof HookError && failure.timedOut;
      observer?.hookFinished(hook.name, timedOut ? "timeout" : "failure", seconds());
      throw failure;
    }
    observer?.hookFinished(hook.name, "success", seconds());
    ran.push(hook.name);
  }
  return { ran };
}

function asNetworkHookError(error: unknown, hook: string, machine: string): NetworkHookError {
  if (error instanceof NetworkHookError) return error;
  const problem = error instanceof Error ? error.message : String(error);
  return new HookError({ hook, machine, problem, cause: error });
}
