/**
 * Is the arcbox daemon alive? Judged as arcbox's own CLI does (docs/design.md#liveness-daemon): the
 * daemon holds an exclusive flock on `<arcbox-dir>/run/daemon.lock` for its whole life and writes its
 * pid there.
 *
 * The probe asks for a *shared* lock without waiting. A live daemon's exclusive lock refuses it
 * (alive). When nobody holds the file the shared lock is granted and released at once (dead): it is
 * held for microseconds, never blocks another prober (shared locks coexist), and the file is opened
 * read-only, so it is never written or created.
 *
 * Whoever can write `<arcbox-dir>/run` decides what is at the path, so only a regular file is
 * probed: a symlink is never followed, and a FIFO, socket, device or directory is never opened for
 * real (the open cannot block or act on a device: O_NOFOLLOW, O_NONBLOCK, O_NOCTTY; what it opened is
 * checked before anything else). Such a path counts as a live daemon with a probe error, as any
 * unexpected failure does. Every call but the flock pair runs off the main thread with a deadline
 * (the lock may lie on a mount that stops answering, docs/design.md#hung-mounts).
 */
import { constants, type Stats } from "node:fs";
import { lstat, open, type FileHandle } from "node:fs/promises";
import { NoAnswerError, OverdueCalls } from "../platform/deadline.js";
import { FlockError, tryFlock, unlockFlock } from "./flock.js";

/** What one probe of the daemon's lock found. */
export interface DaemonStatus {
  alive: boolean;
  /** A short explanation for logs, the landing page and `reconcile --dry-run`. */
  reason: string;
  /** The daemon's pid as written in the lock file, when alive and readable. */
  pid?: number;
  /**
   * Set when the probe failed in an unexpected way (EACCES, EIO, ETIMEDOUT, a lock path that is not
   * a regular file …): the daemon then counts as alive, because declaring live VMs dead is the costly
   * mistake.
   */
  error?: { code: string; message: string };
}

/** The `error.code` of a lock path that is not a regular file. */
export const NOT_REGULAR_FILE = "NOT_REGULAR_FILE";

/** Bytes of the lock file read to find the daemon's pid. */
const MAX_PID_BYTES = 32;

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** Calls of probes made without `calls` of their own. */
const sharedCalls = new OverdueCalls();

/**
 * Probes the daemon lock at `lockPath`. Never rejects: no lock file (or no `run/` directory) means
 * dead; a lock held by anyone means alive; a path that is not a regular file, a call that does not
 * answer within the deadline of `calls` (keyed by `lockPath`) or any other unexpected error means
 * alive, with `error` set.
 */
export async function probeDaemon(lockPath: string, calls: OverdueCalls = sharedCalls): Promise<DaemonStatus> {
  const run = <T>(what: string, call: () => Promise<T>, late?: (result: T) => void) => calls.run(lockPath, `${what} of ${lockPath}`, call, late);
  let file: FileHandle;
  try {
    const entry = await run("lstat", () => lstat(lockPath));
    if (!entry.isFile()) return notRegular(lockPath, entry);
    file = await run("open", () => open(lockPath, OPEN_FLAGS), (late) => void late.close().catch(() => undefined));
  } catch (error) {
    const code = codeOf(error);
    if (code === "ENOENT" || code === "ENOTDIR") return { alive: false, reason: `the arcbox daemon is not running (no lock file ${lockPath})` };
    // ELOOP: a symlink put there since the lstat.
    if (code === "ELOOP") return notRegular(lockPath);
    return unexpected(lockPath, code, error);
  }
  try {
    const opened = await run("fstat", () => file.stat());
    if (!opened.isFile()) return notRegular(lockPath, opened);
    // The lock is taken and released on this thread, back to back: held for microseconds, so a daemon
    // starting at that moment is not refused its own lock. (A non-blocking flock waits on nothing
    // where locks are local; only where a file system keeps them itself, and stopped answering since
    // the fstat above, could it block.)
    if (!tryFlock(file.fd, "shared")) {
      const pid = await readPid(file, run);
      return { alive: true, reason: `the arcbox daemon is running${pid === undefined ? "" : ` (pid ${pid})`}`, ...(pid === undefined ? {} : { pid }) };
    }
    unlockFlock(file.fd);
    return { alive: false, reason: `the arcbox daemon is not running (nobody holds ${lockPath})` };
  } catch (error) {
    return unexpected(lockPath, codeOf(error), error);
  } finally {
    // Not waited for: closing a file on a mount that stopped answering can hang too.
    void file.close().catch(() => undefined);
  }
}

function codeOf(error: unknown): string {
  return error instanceof FlockError || error instanceof NoAnswerError ? error.code : ((error as NodeJS.ErrnoException).code ?? "UNKNOWN");
}

function unexpected(lockPath: string, code: string, error: unknown): DaemonStatus {
  const message = `cannot probe the arcbox daemon's lock ${lockPath}: ${code} (${(error as Error).message}); assuming it is running`;
  return { alive: true, reason: `the arcbox daemon is assumed to be running (probe failed: ${code})`, error: { code, message } };
}

/** A lock path that is not a regular file: never opened (again), the daemon assumed to be running. */
function notRegular(lockPath: string, stats?: Stats): DaemonStatus {
  const what = stats === undefined ? "a symlink" : describe(stats);
  const message = `the arcbox daemon's lock ${lockPath} is ${what}, not a regular file; it is not probed, and the daemon is assumed to be running`;
  return { alive: true, reason: `the arcbox daemon is assumed to be running (its lock is ${what})`, error: { code: NOT_REGULAR_FILE, message } };
}

function describe(stats: Stats): string {
  if (stats.isSymbolicLink()) return "a symlink";
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return "a device";
  return "not a file";
}

/** The pid the daemon wrote into its lock file, if it reads as one. Never rejects. */
async function readPid(file: FileHandle, run: <T>(what: string, call: () => Promise<T>) => Promise<T>): Promise<number | undefined> {
  try {
    const buffer = Buffer.alloc(MAX_PID_BYTES);
    const { bytesRead } = await run("read", () => file.read(buffer, 0, MAX_PID_BYTES, 0));
    const text = buffer.subarray(0, bytesRead).toString("utf8").trim();
    return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}
