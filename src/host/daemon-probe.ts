/**
 * Is the arcbox daemon alive? Judged exactly as arcbox's own CLI does (docs/design.md#liveness-daemon): the daemon holds
 * an exclusive flock on `<arcbox-dir>/run/daemon.lock` for its whole life and writes its pid there.
 *
 * The probe asks for a *shared* lock without waiting. A live daemon's exclusive lock refuses it
 * (alive). When nobody holds the file the shared lock is granted and released at once (dead): it is
 * held for microseconds, never blocks another prober (shared locks coexist), and the file is opened
 * read-only, so it is never written or created.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { FlockError, tryFlock, unlockFlock } from "./flock.js";

/** What one probe of the daemon's lock found. */
export interface DaemonStatus {
  alive: boolean;
  /** A short explanation for logs, the landing page and `reconcile --dry-run`. */
  reason: string;
  /** The daemon's pid as written in the lock file, when alive and readable. */
  pid?: number;
  /**
   * Set when the probe failed in an unexpected way (EACCES, EIO …): the daemon then counts as
   * alive, because declaring live VMs dead is the costly mistake.
   */
  error?: { code: string; message: string };
}

/** Bytes of the lock file read to find the daemon's pid. */
const MAX_PID_BYTES = 32;

/**
 * Probes the daemon lock at `lockPath`. Never throws: no lock file (or no `run/` directory) means
 * dead; a lock held by anyone means alive; any unexpected error means alive, with `error` set.
 */
export function probeDaemon(lockPath: string): DaemonStatus {
  let fd: number;
  try {
    // O_NONBLOCK: a fifo planted at the path must not block the probe.
    fd = openSync(lockPath, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "UNKNOWN";
    if (code === "ENOENT" || code === "ENOTDIR") return { alive: false, reason: `the arcbox daemon is not running (no lock file ${lockPath})` };
    return unexpected(lockPath, code, error);
  }
  try {
    if (!tryFlock(fd, "shared")) {
      const pid = readPid(fd);
      return { alive: true, reason: `the arcbox daemon is running${pid === undefined ? "" : ` (pid ${pid})`}`, ...(pid === undefined ? {} : { pid }) };
    }
    unlockFlock(fd);
    return { alive: false, reason: `the arcbox daemon is not running (nobody holds ${lockPath})` };
  } catch (error) {
    return unexpected(lockPath, error instanceof FlockError ? error.code : ((error as NodeJS.ErrnoException).code ?? "UNKNOWN"), error);
  } finally {
    closeSync(fd);
  }
}

function unexpected(lockPath: string, code: string, error: unknown): DaemonStatus {
  const message = `cannot probe the arcbox daemon's lock ${lockPath}: ${code} (${(error as Error).message}); assuming it is running`;
  return { alive: true, reason: `the arcbox daemon is assumed to be running (probe failed: ${code})`, error: { code, message } };
}

/** The pid the daemon wrote into its lock file, if it reads as one. Never throws. */
function readPid(fd: number): number | undefined {
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const buffer = Buffer.alloc(MAX_PID_BYTES);
    const length = readSync(fd, buffer, 0, MAX_PID_BYTES, 0);
    const text = buffer.subarray(0, length).toString("utf8").trim();
    return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}
