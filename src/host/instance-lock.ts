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
 * pid cannot be recorded. The file is the controller's user's alone (0600): a flock needs only a
 * read-only descriptor, so a file others could open would let any local user hold the lock.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants, fchmodSync, fstatSync, ftruncateSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { tryFlock, unlockFlock } from "./flock.js";
import { HostFileError } from "./host-file-error.js";

export const LOCK_FILE_NAME = ".arcbox-controller.lock";

/** The lock file, or the new one that replaces a lock file others could open (for a moment). Neither is a machine. */
export function isLockFileName(name: string): boolean {
  return name === LOCK_FILE_NAME || name.startsWith(`${LOCK_FILE_NAME}.`);
}

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

/** Mode of the lock file: only its owner, the controller's user, can open it. */
export const LOCK_FILE_MODE = 0o600;

/** The lock file could not be opened or locked (not the same as being held by another controller). */
export class LockError extends HostFileError {
  constructor(path: string, code: string | undefined, options?: { cause?: unknown; detail?: string }) {
    const why = `${code ?? String(options?.cause)}${options?.detail === undefined ? "" : ` (${options.detail})`}`;
    super(path, code, `cannot take the single-instance lock ${path}: ${why}`, options);
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
    // O_NOFOLLOW: a symlink planted at the lock's name must not redirect the pid write. 0600 (and
    // the check below): a flock needs only a read-only descriptor, so others must not open it.
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, LOCK_FILE_MODE);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw new LockError(path, code, { cause: error });
  }
  if (!isPrivate(fstatSync(fd))) {
    // Only another controller takes an exclusive lock (an older version kept its file 0644): that one
    // is really running. Shared holders are anyone who could open the file; they are left behind.
    const exclusiveHolder = !tryShared(fd, path);
    if (exclusiveHolder) {
      const owner = await readOwnerPid(fd);
      closeSync(fd);
      throw new LockHeldError(path, owner);
    }
    closeSync(fd);
    fd = replaceWithPrivateFile(path);
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

/** Takes and drops a shared lock: false when an exclusive one is held. Throws LockError (closing `fd`). */
function tryShared(fd: number, path: string): boolean {
  try {
    if (!tryFlock(fd, "shared")) return false;
    unlockFlock(fd);
    return true;
  } catch (error) {
    closeSync(fd);
    throw new LockError(path, (error as NodeJS.ErrnoException).code, { cause: error });
  }
}

/** Whether a lock file is the controller's user's alone (its owner, mode 0600). */
function isPrivate(stats: { uid: number; mode: number }): boolean {
  return stats.uid === process.geteuid?.() && (stats.mode & 0o7777) === LOCK_FILE_MODE;
}

/**
 * Puts a new private lock file in place of one others could open (left by an older version, or
 * planted): someone holding a lock on the old file then holds nothing that counts. A new file is
 * renamed over the old name rather than the old one chmod-ed, since a descriptor opened before a
 * chmod keeps working. Returns its descriptor; throws LockError.
 */
function replaceWithPrivateFile(path: string): number {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}`;
  let fd: number;
  try {
    fd = openSync(temp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, LOCK_FILE_MODE);
  } catch (error) {
    throw new LockError(path, (error as NodeJS.ErrnoException).code, { cause: error, detail: "cannot create a private lock file beside it" });
  }
  try {
    fchmodSync(fd, LOCK_FILE_MODE); // whatever the umask
    renameSync(temp, path);
    return fd;
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw new LockError(path, (error as NodeJS.ErrnoException).code, { cause: error, detail: "cannot replace it with a private lock file" });
  }
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
