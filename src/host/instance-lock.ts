/**
 * Single-instance lock on a machines directory (DESIGN §2): an exclusive `flock` on
 * `<machines-dir>/.arcbox-controller.lock`, held for the controller's lifetime, the same idea as
 * arcbox's own daemon lock. The kernel releases it when the process dies, however it dies, so a
 * killed controller's successor starts at once and nothing ever has to guess whether an owner is
 * stale. The file holds the owner's pid, only so that a refused second controller can name it.
 *
 * The lock file stays in place between runs (it is emptied on release): removing it would let two
 * controllers lock two different files of the same name. Taking the lock creates that one file if
 * missing and writes the pid into it; nothing else is ever written, and a full disk only means the
 * pid cannot be recorded.
 */
import { closeSync, constants, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { tryFlock } from "./flock.js";
import { HostFileError } from "./host-file-error.js";

export const LOCK_FILE_NAME = ".arcbox-controller.lock";

/** Another live controller holds the lock. */
export class LockHeldError extends Error {
  override readonly name = "LockHeldError";
  constructor(
    readonly lockPath: string,
    /** The holder's pid, or undefined when it has not (or could not) record it. */
    readonly ownerPid: number | undefined,
  ) {
    super(
      `another arcbox-controller (${ownerPid === undefined ? "pid unknown" : `pid ${ownerPid}`}) is already managing ` +
        `${lockPath.slice(0, -LOCK_FILE_NAME.length - 1)}; stop it first (it holds a lock on ${lockPath})`,
    );
  }
}

/** The lock file could not be opened or locked (not the same as being held by another controller). */
export class LockError extends HostFileError {
  constructor(path: string, code: string | undefined, options?: { cause?: unknown }) {
    super(path, code, `cannot take the single-instance lock ${path}: ${code ?? String(options?.cause)}`, options);
  }
}

export interface InstanceLock {
  readonly path: string;
  /**
   * Set when the pid could not be written into the lock file (e.g. ENOSPC): the lock is held all the
   * same, but a second controller cannot name this one's pid.
   */
  readonly pidWriteError: string | undefined;
  /** Empties the lock file and releases the lock. Idempotent; never throws. */
  release(): void;
}

/** A holder may be between taking the lock and writing its pid: look this often for the pid. */
const PID_READ_ATTEMPTS = 20;
const PID_READ_INTERVAL_MS = 5;

/**
 * Takes the lock on `machinesDir`, which must exist. Throws `LockHeldError` naming the holder's pid
 * when another process holds it, and `LockError` when the file cannot be opened or locked.
 */
export async function acquireInstanceLock(machinesDir: string): Promise<InstanceLock> {
  const path = join(machinesDir, LOCK_FILE_NAME);
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink planted at the lock's name must not redirect the pid write.
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
  } catch (error) {
    throw new LockError(path, (error as NodeJS.ErrnoException).code, { cause: error });
  }
  let locked: boolean;
  try {
    locked = tryFlock(fd, "exclusive");
  } catch (error) {
    closeSync(fd);
    throw new LockError(path, (error as NodeJS.ErrnoException).code, { cause: error });
  }
  if (!locked) {
    const owner = await readOwnerPid(fd);
    closeSync(fd);
    throw new LockHeldError(path, owner);
  }
  let pidWriteError: string | undefined;
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch (error) {
    pidWriteError = (error as NodeJS.ErrnoException).code ?? String(error);
    try {
      ftruncateSync(fd, 0); // never leave a partial pid
    } catch {
      // Nothing more to do: the lock itself is held.
    }
  }
  let open = true;
  return {
    path,
    pidWriteError,
    release() {
      if (!open) return;
      open = false;
      try {
        ftruncateSync(fd, 0);
      } catch {
        // Emptying is a courtesy; closing releases the lock.
      }
      closeSync(fd);
    },
  };
}

async function readOwnerPid(fd: number): Promise<number | undefined> {
  const buffer = Buffer.alloc(32);
  for (let attempt = 0; attempt < PID_READ_ATTEMPTS; attempt++) {
    try {
      const text = buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, 0)).toString("utf8").trim();
      if (/^[1-9][0-9]{0,9}$/.test(text)) return Number(text);
    } catch {
      return undefined;
    }
    await new Promise((resolve) => setTimeout(resolve, PID_READ_INTERVAL_MS));
  }
  return undefined;
}
