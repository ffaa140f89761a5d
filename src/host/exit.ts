/**
 * Ending the process when a file system call may still hang (docs/design.md#hung-mounts). Node.js's
 * `process.exit` runs libuv's teardown, which joins every thread of its pool: a thread stuck in a call
 * on a hung mount never returns, so the exit would hang with it, and a service manager would wait
 * for its kill timeout. `_exit(2)` ends the process without that teardown.
 */
import { unansweredCalls } from "../platform/deadline.js";
import { libc } from "./libc.js";

/** How long output still buffered for stdout and stderr may take to be written before `_exit`. */
const FLUSH_MS = 1000;

/**
 * Ends the process with `code`: through `process.exit` while every file system call has answered,
 * else (a call given up on is still stuck) through `_exit(2)`, once stdout and stderr are written out
 * (or after a second).
 */
export async function exitProcess(code: number): Promise<void> {
  if (unansweredCalls() > 0) {
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    let exit: ((status: number) => void) | undefined;
    try {
      exit = libc().lib.func("void _exit(int status)") as (status: number) => void;
    } catch {
      // Without the binding there is only process.exit left.
    }
    exit?.(code);
  }
  process.exit(code);
}

/** Resolves when what `stream` buffered is written, or after FLUSH_MS (a reader that never reads). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, FLUSH_MS);
    stream.write("", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Lets the process end by itself with `code` once its work is done, as a command does; when a call
 * given up on is still stuck (it would keep the process alive for good), ends it now instead.
 */
export function finishProcess(code: number): void {
  process.exitCode = code;
  if (unansweredCalls() > 0) void exitProcess(code);
}
