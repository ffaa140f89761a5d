/** Test support: the store's real file operations with some replaced (fault injection). */
import { defaultFsOps, type DurableFsOps } from "../../src/store/dir-ops.js";

type Operation = Exclude<keyof DurableFsOps, "access">;
type Wrappers = { [K in Operation]?: (real: DurableFsOps[K]) => DurableFsOps[K] };

/** `base` (this system's operations by default), each operation in `wrappers` wrapped around its real implementation. */
export function fsOpsWith(wrappers: Wrappers, base: DurableFsOps = defaultFsOps()): DurableFsOps {
  const ops = { ...base } as Record<keyof DurableFsOps, unknown>;
  for (const key of Object.keys(wrappers) as Operation[]) {
    const wrap = wrappers[key] as ((real: unknown) => unknown) | undefined;
    if (wrap) ops[key] = wrap(base[key]);
  }
  return ops as unknown as DurableFsOps;
}

/** A Node.js-style system error. */
export function systemError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}
