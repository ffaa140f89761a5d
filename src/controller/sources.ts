/**
 * Event sources (docs/design.md#sources): the start-up listing, filesystem watch events and the periodic resync.
 * Each source only names machines; what to do is the reconciler's decision.
 */
import { stat } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { probeDaemon, type DaemonStatus } from "../host/daemon-probe.js";
import { isLockFileName } from "../host/instance-lock.js";
import { listMachineEntryNames } from "../store/index.js";

/**
 * Names of the machines in `machinesDir`: the entries arcbox-core's `list()` returns (a directory
 * holding config.toml; hidden ones too), but those in `except`, which are not looked at (so a relist
 * of a known fleet costs one directory read). A missing directory has no machines; other errors throw.
 */
export async function listMachineNames(machinesDir: string, except?: ReadonlySet<string>): Promise<string[]> {
  return listMachineEntryNames(machinesDir, { except });
}

/** Why the machines directory is watched anew. */
export type RewatchReason = "appeared" | "replaced" | "resumed";

export interface MachineWatcherOptions {
  machinesDir: string;
  pidFile: string;
  /**
   * Called with the machine name for every relevant event: `event` is chokidar's event name, or
   * null for a raw filesystem event (see below), which only triggers a reconcile.
   */
  onMachine: (name: string, event: string | null) => void;
  onError: (error: Error) => void;
  /**
   * The machines directory is watched anew: it appeared (it was missing), it was replaced (moved away,
   * deleted and created again) or a pause ended. Every machine should be looked at, since events in
   * between were missed. The returned promise is awaited before the watch goes on.
   */
  onRewatch: (why: RewatchReason) => void | Promise<void>;
  /** How often the directory's identity is checked, besides the events that announce a replacement. Default 1 s. */
  checkIntervalMs?: number;
  /** Start paused: nothing is watched (nor scanned) until `resume`, which then calls `onRewatch("resumed")`. */
  startPaused?: boolean;
}

/** A running watch of the machines directory. */
export interface MachinesWatch {
  /** Why events may not be arriving (the directory is gone), or null while all is well (paused included). */
  readonly problem: string | null;
  /** True between `pause` and `resume`. */
  readonly paused: boolean;
  /**
   * Stops watching (no events, no identity checks) until `resume`, freeing the watch's memory and the
   * work it does for every write. Resolves once the watch is closed; a no-op while paused.
   */
  pause(): Promise<void>;
  /**
   * Watches the directory as it is now, as after a replacement, then calls `onRewatch("resumed")`:
   * what changed during the pause was not reported. Resolves once the new watch is ready; a no-op
   * unless paused. A failure is passed to `onError` (and `problem` set when the directory is gone).
   */
  resume(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Watches `<machines-dir>/<name>` directories and their `config.toml` and pid file with native
 * filesystem events (no polling, no write-finish delay: the reconciler copes with partial states
 * because it re-reads, and the store writes by rename). Resolves once the initial scan is done
 * (at once with `startPaused`).
 *
 * Native watches follow a directory's inode, not its path: after `mv machines machines.old; mkdir
 * machines` they would watch the old one. So the directory's identity (device and inode) is checked
 * whenever the watched directory itself is renamed or removed, and every `checkIntervalMs`; a new
 * directory at the path is watched anew and `onRewatch` called. While no directory is there,
 * `problem` says so.
 *
 * `check`, `pause`, `resume` and `close` run one at a time, in the order called.
 */
export async function watchMachines(options: MachineWatcherOptions): Promise<MachinesWatch> {
  const { machinesDir, onError, onRewatch } = options;
  let paused = options.startPaused ?? false;
  let watched = await identity(machinesDir);
  let watcher: { close(): Promise<void> } | null = watched === null || paused ? null : await watchDirectory(options, () => void check());
  let problem: string | null = watched === null ? `machines directory ${machinesDir} does not exist` : null;
  let closed = false;
  let soon: NodeJS.Timeout | null = null;
  // Nothing can be watched while the directory is missing: look again soon (a replacement usually
  // follows at once). One timer at a time.
  const recheckSoon = () => {
    soon ??= setTimeout(() => {
      soon = null;
      void check();
    }, GONE_RECHECK_MS).unref();
  };

  let last: Promise<void> = Promise.resolve();
  /** Runs `step` after every step called before it; errors go to `onError`. */
  const serially = (step: () => Promise<void>): Promise<void> =>
    (last = last.then(step).catch((error: unknown) => onError(error instanceof Error ? error : new Error(String(error)))));

  /** Watches whatever directory is at the path now (none: `problem` says so). */
  const rewatch = async (now: string | null, why: RewatchReason) => {
    await watcher?.close();
    watcher = null;
    watched = now;
    if (now === null) {
      problem = `machines directory ${machinesDir} is gone; waiting for it to come back`;
      recheckSoon();
      return;
    }
    watcher = await watchDirectory(options, () => void check());
    problem = null;
    await onRewatch(why);
  };

  let checking: Promise<void> | null = null;
  const check = (): Promise<void> =>
    (checking ??= serially(async () => {
      checking = null;
      if (closed || paused) return;
      const now = await identity(machinesDir);
      if (closed) return;
      if (now === watched) {
        if (now === null) recheckSoon();
        return;
      }
      await rewatch(now, watched === null ? "appeared" : "replaced");
    }));
  const timer = setInterval(() => void check(), options.checkIntervalMs ?? 1000);
  timer.unref();
  if (watched === null) recheckSoon();

  return {
    get problem() {
      return problem;
    },
    get paused() {
      return paused;
    },
    pause: () =>
      serially(async () => {
        if (closed || paused) return;
        paused = true;
        await watcher?.close();
        watcher = null;
      }),
    resume: () =>
      serially(async () => {
        if (closed || !paused) return;
        paused = false;
        await rewatch(await identity(machinesDir), "resumed");
      }),
    async close() {
      closed = true;
      clearInterval(timer);
      if (soon) clearTimeout(soon);
      await serially(async () => {
        await watcher?.close();
        watcher = null;
      });
    },
  };
}

/** When a new machine directory is looked at again (see watchDirectory). */
const NEW_DIRECTORY_RECHECKS_MS = [100, 1000];

/** While the machines directory is missing, how often to look for it. */
const GONE_RECHECK_MS = 100;

/** `dev:ino` of a directory, or null when there is none at `path`. */
async function identity(path: string): Promise<string | null> {
  try {
    const info = await stat(path);
    return info.isDirectory() ? `${info.dev}:${info.ino}` : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return null;
    throw error;
  }
}

/** One chokidar watch of the directory as it is now; `onSelfMoved` when the directory itself goes away. */
async function watchDirectory(options: MachineWatcherOptions, onSelfMoved: () => void): Promise<{ close(): Promise<void> }> {
  const { machinesDir, pidFile, onMachine, onError } = options;
  const relevant = new Set(["config.toml", pidFile]);

  /** The machine a path belongs to, or null when the path is not one we care about. */
  const machineOf = (path: string): string | null => {
    const rel = relative(machinesDir, path);
    if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`)) return null; // a machine may be named "..x"
    const parts = rel.split(sep);
    const name = parts[0]!;
    if (isLockFileName(name)) return null;
    if (parts.length === 1) return name;
    if (parts.length === 2 && relevant.has(parts[1]!)) return name;
    return null;
  };

  /** The machine of a raw event: `file` is an entry of the watched directory, or the watched file's own name. */
  const machineOfRaw = (watched: string, file: string): string | null => {
    const rel = relative(machinesDir, watched);
    const depth = rel === "" ? 0 : rel.split(sep).length;
    return machineOf(depth < 2 ? join(watched, file) : watched);
  };

  const watcher = watch(machinesDir, {
    ignoreInitial: true,
    depth: 1,
    followSymlinks: false,
    // Skip whole subtrees that can never matter (disk images, sockets); keep the root.
    ignored: (path: string, stats) => {
      if (path === machinesDir) return false;
      const rel = relative(machinesDir, path);
      const parts = rel.split(sep);
      if (isLockFileName(parts[0]!)) return true;
      if (parts.length === 1) return false;
      if (parts.length > 2) return true;
      // Second level: only the files we watch; directories there are never descended into.
      return stats?.isDirectory() === true || !relevant.has(basename(path));
    },
  });

  /** Timers of the re-checks of new directories, cleared when the watch closes. */
  const pending = new Set<NodeJS.Timeout>();
  for (const event of ["add", "change", "unlink", "addDir", "unlinkDir"] as const) {
    watcher.on(event, (path: string) => {
      const name = machineOf(path);
      if (name === null) return;
      onMachine(name, event);
      // chokidar reads a new directory and arms its watch in two steps; a config.toml renamed into it
      // in between is never reported (arcbox writes the file a moment after creating the directory).
      // So a new machine directory is looked at again once its watch must be armed.
      if (event === "addDir" && relative(machinesDir, path) === name) {
        for (const delay of NEW_DIRECTORY_RECHECKS_MS) {
          const timer = setTimeout(() => {
            pending.delete(timer);
            onMachine(name, null);
          }, delay);
          pending.add(timer);
        }
      }
    });
  }
  // chokidar throttles its events per path and re-arms a file's watch after a rename, so a write
  // that closely follows another (our own rename-over included) can go unreported. Its raw events
  // (one per inotify event, before any throttling) are complete: they trigger too. The queue
  // deduplicates, and a reconcile of an unchanged file is a cheap no-op.
  watcher.on("raw", (_event, file, details) => {
    const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
    if (watched === machinesDir && file === basename(machinesDir)) {
      onSelfMoved();
      return;
    }
    const name = typeof watched === "string" ? machineOfRaw(watched, file) : null;
    if (name !== null) onMachine(name, null);
  });
  watcher.on("error", (error) => onError(error instanceof Error ? error : new Error(String(error))));

  await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  return {
    async close() {
      for (const timer of pending) clearTimeout(timer);
      await closeWatcher(watcher);
    },
  };
}

/**
 * Closes a chokidar watcher for good. chokidar 5 can reopen a closed watcher: the removal of a
 * directory entry still awaiting its `readdir` when `close()` ran (as after the machines directory
 * was moved away) ends in `add()`, which clears `closed` and calls `fs.watch` again. That handle is
 * never closed, and since chokidar shares handles by path, a later watcher's `close()` leaves it
 * open too: a stopped process would never exit. So `add` is disabled first.
 */
async function closeWatcher(watcher: FSWatcher): Promise<void> {
  watcher.add = () => watcher;
  await watcher.close();
}

/** Schedules `run` every `intervalMs` ±10% (jitter keeps a fleet of controllers from resyncing in step). */
export function startResync(intervalMs: number, run: () => Promise<void>): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = () => {
    const jittered = intervalMs * (0.9 + Math.random() * 0.2);
    timer = setTimeout(async () => {
      await run();
      if (!stopped) schedule();
    }, jittered);
  };
  schedule();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}


export interface DaemonWatchOptions {
  /** The daemon's lock file (`<arcbox-dir>/run/daemon.lock`). */
  lockPath: string;
  /** How often the lock is probed. */
  pollIntervalMs: number;
  /** Every probe's result, in order (for the `arcbox_daemon_up` gauge and probe-error counting). */
  onProbe: (status: DaemonStatus) => void;
  /** The daemon went from alive to dead or back (not called for the first probe). */
  onChange: (status: DaemonStatus) => void;
  onError: (error: Error) => void;
}

/** A running daemon source. */
export interface DaemonWatch {
  /** The result of the latest probe. */
  readonly status: DaemonStatus;
  close(): Promise<void>;
}

/**
 * The arcbox daemon's liveness as a source (docs/design.md#sources): the lock is probed at start, every
 * `pollIntervalMs`, and whenever the lock file or its directory changes (a starting daemon writes
 * its pid there). A dying daemon changes no file (the kernel just drops its flock), so the poll is
 * what notices a death, within one interval. The first probe runs before this resolves.
 */
export async function watchDaemon(options: DaemonWatchOptions): Promise<DaemonWatch> {
  const { lockPath, pollIntervalMs, onProbe, onChange, onError } = options;
  let status = probeDaemon(lockPath);
  onProbe(status);
  const probe = () => {
    const next = probeDaemon(lockPath);
    onProbe(next);
    const changed = next.alive !== status.alive;
    status = next;
    if (changed) onChange(next);
  };
  const timer = setInterval(probe, pollIntervalMs);

  // Watch from the lock directory's parent, so that a `run/` directory created later is seen too.
  const runDir = dirname(lockPath);
  const base = dirname(runDir);
  let watcher: FSWatcher | null = null;
  if (await isDirectory(base)) {
    watcher = watch(base, {
      ignoreInitial: true,
      depth: 1,
      followSymlinks: false,
      ignored: (path: string) => path !== base && path !== runDir && path !== lockPath,
    });
    watcher.on("all", () => probe());
    watcher.on("error", (error) => onError(error instanceof Error ? error : new Error(String(error))));
    await new Promise<void>((resolve) => watcher!.once("ready", () => resolve()));
  }
  return {
    get status() {
      return status;
    },
    async close() {
      clearInterval(timer);
      if (watcher) await closeWatcher(watcher);
    },
  };
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
