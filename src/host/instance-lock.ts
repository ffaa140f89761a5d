/**
 * Single-instance lock on a machines path (docs/design.md#instance-lock): an exclusive `flock` on
 * `<machines-dir>/.arcbox-controller.lock`, held for the controller's lifetime, the same idea as
 * arcbox's own daemon lock. The kernel releases it when the process dies, however it dies, so a
 * killed controller's successor starts at once and nothing ever has to guess whether an owner is
 * stale. The file holds the owner's pid, only so that a refused second controller can name it.
 *
 * The lock belongs to the path, not to one directory: when the directory at the path is replaced
 * (`mv machines machines.old; mkdir machines`), the lock held in the old one no longer counts, and
 * `ensure` takes it again in the new one (or reports the controller that got there first). A
 * directory that does not exist yet is locked once it appears.
 *
 * The lock file stays in place between runs (it is emptied on release): removing it would let two
 * controllers lock two different files of the same name. Taking the lock creates that one file if
 * missing and writes the pid into it; nothing else is ever written, and a full disk only means the
 * pid cannot be recorded.
 */
import { closeSync, constants, fstatSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { stat } from "node:fs/promises";
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

/** What {@link InstanceLock.ensure} found: the lock is held, or no directory is at the path to hold it in. */
export type LockState = "held" | "missing";

export interface InstanceLock {
  readonly path: string;
  /**
   * Set when the pid could not be written into the lock file (e.g. ENOSPC): the lock is held all the
   * same, but a second controller cannot name this one's pid.
   */
  readonly pidWriteError: string | undefined;
  /** How often the lock has been taken: 0 before the first time, then one more for each directory new at the path. */
  readonly generation: number;
  /**
   * Makes sure this process holds the lock of the directory now at the machines path: resolves
   * `held` at the cost of one `stat` when it already does, takes the lock anew when the directory
   * was replaced or has appeared (`generation` then counts up), and resolves `missing` while no
   * directory is there. Rejects with
   * {@link LockHeldError} when another controller holds the new directory's lock, and with
   * {@link LockError} when it cannot be taken. Concurrent calls share one attempt.
   */
  ensure(): Promise<LockState>;
  /** Empties the lock file and releases the lock. Idempotent; never throws. */
  release(): void;
}

/** A holder may be between taking the lock and writing its pid: look this often for the pid. */
const PID_READ_ATTEMPTS = 20;
const PID_READ_INTERVAL_MS = 5;

/**
 * Takes the lock on `machinesDir`, which must exist. Throws `LockHeldError` naming the holder's pid
 * when another process holds it, and `LockError` when the file cannot be opened or locked (code
 * `ENOENT` when the directory does not exist).
 */
export async function acquireInstanceLock(machinesDir: string): Promise<InstanceLock> {
  const lock = instanceLock(machinesDir);
  if ((await lock.ensure()) === "missing") throw new LockError(lock.path, "ENOENT");
  return lock;
}

/** The lock of `machinesDir`, not taken yet: {@link InstanceLock.ensure} takes it. */
export function instanceLock(machinesDir: string): InstanceLock {
  const path = join(machinesDir, LOCK_FILE_NAME);
  let fd: number | null = null;
  let pidWriteError: string | undefined;
  let released = false;
  let generation = 0;
  let attempt: Promise<LockState> | undefined;

  /** Whether the lock file now at the path is the one this process holds. */
  const current = async (): Promise<boolean> => {
    if (fd === null) return false;
    const atPath = await stat(path).catch(() => undefined);
    const held = fstatSync(fd);
    return atPath !== undefined && atPath.ino === held.ino && atPath.dev === held.dev;
  };

  const take = async (): Promise<LockState> => {
    if (released) return "missing";
    if (await current()) return "held";
    const taken = await lockFile(path);
    if (taken === null) return "missing";
    if (released) {
      dropLock(taken.fd);
      return "missing";
    }
    if (fd !== null) dropLock(fd); // the lock of a directory no longer at the path
    fd = taken.fd;
    pidWriteError = taken.pidWriteError;
    generation++;
    return "held";
  };

  return {
    path,
    get pidWriteError() {
      return pidWriteError;
    },
    get generation() {
      return generation;
    },
    ensure() {
      attempt ??= take().finally(() => (attempt = undefined));
      return attempt;
    },
    release() {
      released = true;
      if (fd === null) return;
      dropLock(fd);
      fd = null;
    },
  };
}

/**
 * Opens and locks the lock file at `path`, writing this process's pid. Resolves null when its
 * directory does not exist. Throws LockHeldError or LockError.
 */
async function lockFile(path: string): Promise<{ fd: number; pidWriteError: string | undefined } | null> {
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink planted at the lock's name must not redirect the pid write.
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw new LockError(path, code, { cause: error });
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
  return { fd, pidWriteError };
}

/** Empties the lock file (a courtesy) and closes it, which releases the lock. Never throws. */
function dropLock(fd: number): void {
  try {
    ftruncateSync(fd, 0);
  } catch {
    // Closing is what releases the lock.
  }
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
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
