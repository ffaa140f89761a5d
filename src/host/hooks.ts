/**
 * Networking hooks (docs/design.md#hooks): on recovery, the executables of `hooks_dir` (or in-process hooks of a
 * library user) re-register a machine's networking, one at a time, in file name order.
 */
export type { HookContext, NetworkHook } from "./hooks/network-hook.js";
export { HookError, HookRefusedError, NetworkHookError, type HookFailure } from "./hooks/errors.js";
export {
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_KILL_GRACE_MS,
  DEFAULT_STDERR_TAIL_BYTES,
  ExecutableHook,
  HOOK_PATH,
  type ExecutableHookOptions,
} from "./hooks/executable-hook.js";
export {
  cachedHookDiscovery,
  checkHooksDirectoryTrust,
  discoverHooks,
  HooksDirectoryError,
  skipReasonForName,
  type DiscoveredHooks,
  type SkippedHookFile,
} from "./hooks/discovery.js";
export { runHooks, type HookObserver, type HookResult } from "./hooks/run-hooks.js";
export {
  DirectoryHookSupply,
  fixedHooks,
  type DirectoryHookSupplyOptions,
  type HookSet,
  type HookSupply,
  type HooksNotice,
  type HooksSetting,
  type HooksStatus,
} from "./hooks/hook-supply.js";
