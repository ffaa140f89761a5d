/** The in-process interface of a networking hook (docs/design.md#hooks), shared by executable and library hooks. */
import type { Machine } from "../../store/machine.js";

export interface HookContext {
  /** Aborted when the controller shuts down; a hook should stop and throw promptly. */
  signal: AbortSignal;
  /** The machine's directory, `<machines-dir>/<name>`. */
  machineDir: string;
  /** Path of the machine's `config.toml`. */
  configPath: string;
}

/**
 * A networking hook: re-registers a machine's networking when the controller recovers it.
 * `recover` resolves on success and rejects on failure, with a `HookError` (or `HookRefusedError`
 * when the hook must not be run); other errors are wrapped in a `HookError` by `runHooks`.
 */
export interface NetworkHook {
  readonly name: string;
  recover(machine: Machine, context: HookContext): Promise<void>;
}
