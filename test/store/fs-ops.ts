/** Test support: the real durable-write fs operations with some replaced (fault injection). */
import { nodeFsOps, type DurableFsOps } from "../../src/store/durable-write.js";

type Wrappers = { [K in keyof DurableFsOps]?: (real: DurableFsOps[K]) => DurableFsOps[K] };

/** The real operations, each in `wrappers` wrapped around its real implementation. */
export function fsOpsWith(wrappers: Wrappers): DurableFsOps {
  const ops = { ...nodeFsOps } as Record<keyof DurableFsOps, unknown>;
  for (const key of Object.keys(wrappers) as (keyof DurableFsOps)[]) {
    const wrap = wrappers[key] as ((real: unknown) => unknown) | undefined;
    if (wrap) ops[key] = wrap(nodeFsOps[key]);
  }
  return ops as DurableFsOps;
}

/** A Node.js-style system error. */
export function systemError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}
