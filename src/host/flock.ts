/**
 * `flock(2)`, which Node.js does not expose, called through the C library binding (./libc.ts).
 *
 * flock locks belong to an open file description and are released by the kernel when the last
 * descriptor of it closes, also when the process dies. They are independent of `fcntl` locks on
 * Linux, so a flock probe sees exactly the locks that arcbox's daemon (and `flock(1)`) take.
 * Node opens every file with O_CLOEXEC, so a child process (a hook) never inherits a lock.
 */
import { constants } from "node:os";
import { errnoName, libc } from "./libc.js";

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

type FlockCall = (fd: number, operation: number) => number;

let flock: FlockCall | undefined;

function load(): FlockCall {
  flock ??= libc().lib.func("int flock(int fd, int operation)") as FlockCall;
  return flock;
}

/** A failed flock call, with the errno name as `code` (`EBADF`, `ENOLCK`, …) like Node's own errors. */
export class FlockError extends Error {
  override readonly name = "FlockError";
  constructor(
    readonly code: string,
    readonly errno: number,
  ) {
    super(`flock failed: ${code}`);
  }
}

function call(fd: number, operation: number): boolean {
  const flockCall = load();
  for (;;) {
    if (flockCall(fd, operation) === 0) return true;
    const error = libc().errno();
    if (error === constants.errno.EINTR) continue;
    if (error === constants.errno.EWOULDBLOCK || error === constants.errno.EAGAIN) return false;
    throw new FlockError(errnoName(error), error);
  }
}

/**
 * Tries to take a flock on `fd` without waiting: `exclusive` (one holder) or shared (any number of
 * shared holders, but no exclusive one). Returns false when another open file holds a conflicting
 * lock. Throws FlockError for any other failure (EBADF, ENOLCK, EINVAL, …).
 */
export function tryFlock(fd: number, kind: "exclusive" | "shared"): boolean {
  return call(fd, (kind === "exclusive" ? LOCK_EX : LOCK_SH) | LOCK_NB);
}

/** Releases a flock taken on `fd` (closing the last descriptor does the same). Throws FlockError. */
export function unlockFlock(fd: number): void {
  call(fd, LOCK_UN);
}

