/**
 * Event sources (docs/design.md#sources): the start-up listing, filesystem watch events and the periodic resync.
 * Each source only names machines; what to do is the reconciler's decision.
 */
import { watch as fsWatch } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { probeDaemon, type DaemonStatus } from "../host/daemon-probe.js";
import { isLockFileName } from "../host/instance-lock.js";
import { NoAnswerError, OverdueCalls, withDeadline } from "../platform/deadline.js";
import { listMachineEntryNames } from "../store/index.js";

/**
 * Names of the machines in `machinesDir`: the entries arcbox-core's `list()` returns (a directory
 * holding config.toml; hidden ones too), but those in `except`, which are not looked at (so a relist
 * of a known fleet costs one directory read). A missing directory has no machines; other errors throw.
 * `calls`: the deadlines of the listing's calls (an entry that does not answer counts as a machine).
 */
export async function listMachineNames(machinesDir: string, options: { except?: ReadonlySet<string>; calls?: OverdueCalls } = {}): Promise<string[]> {
  return listMachineEntryNames(machinesDir, options);
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
  /**
   * The deadlines of file system calls, keyed by path (docs/design.md#hung-mounts): a machine
   * directory with an overdue call is not scanned (the scan would hang), and is watched once it
   * answers again (and `onMachine` told). The watch is ready without a directory whose scan does
   * not end within the deadline. Default: a new OverdueCalls.
   */
  calls?: OverdueCalls;
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
  const calls = options.calls ?? new OverdueCalls();
  let paused = options.startPaused ?? false;
  let watched = await identity(machinesDir);
  let watcher: DirectoryWatch | null = watched === null || paused ? null : await watchDirectory(options, calls, () => void check());
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
    watcher = await watchDirectory(options, calls, () => void check());
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
  // A machine directory that answers again was not scanned: watch it now.
  const unsubscribe = calls.subscribe((path, overdue) => {
    if (overdue || dirname(path) !== machinesDir) return;
    void serially(async () => {
      if (closed || paused || watcher === null) return;
      watcher.add(path);
      options.onMachine(basename(path), null);
    });
  });

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
      unsubscribe();
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

/** One watch of a machines directory. */
interface DirectoryWatch {
  /** Watches `path` (a machine directory) too, e.g. one left out while it did not answer. */
  add(path: string): void;
  close(): Promise<void>;
}

/**
 * One watch of the machines directory as it is now; `onSelfMoved` when the directory itself goes away.
 *
 * Two parts. The directory's own entries are watched with Node's `fs.watch`, which reports names
 * without looking at them: chokidar's scan of a directory stats every entry, and while one of them
 * hangs (a machine directory on a mount that stopped answering) it neither finishes nor watches the
 * entries found with it, and each later event would start a scan that hangs a further thread. Each
 * machine directory is then watched by chokidar on its own, once it answered a stat of ours (one
 * that does not answer is added once it does).
 */
async function watchDirectory(options: MachineWatcherOptions, calls: OverdueCalls, onSelfMoved: () => void): Promise<DirectoryWatch> {
  const { machinesDir, pidFile, onMachine, onError } = options;
  const relevant = new Set(["config.toml", pidFile]);
  const failed = (error: unknown) => onError(error instanceof Error ? error : new Error(String(error)));

  // Names of the entries, with what each was last seen as: a directory's identity, or "other".
  const entries = new Map<string, string>();
  const files = watch([], {
    ignoreInitial: true,
    depth: 0,
    followSymlinks: false,
    // In a machine directory, only the files we watch; directories there are never descended into.
    ignored: (path: string, stats) => {
      const parts = relative(machinesDir, path).split(sep);
      if (parts.length !== 2) return false;
      return stats?.isDirectory() === true || !relevant.has(parts[1]!);
    },
  });
  /** The machine of a file event: a watched file in a machine directory (the directories themselves are the top watch's). */
  const machineOf = (path: string): string | null => {
    const parts = relative(machinesDir, path).split(sep);
    return parts.length === 2 && relevant.has(parts[1]!) ? parts[0]! : null;
  };
  for (const event of ["add", "change", "unlink"] as const) {
    files.on(event, (path: string) => {
      const name = machineOf(path);
      if (name !== null) onMachine(name, event);
    });
  }
  // chokidar throttles its events per path and re-arms a file's watch after a rename, so a write
  // that closely follows another (our own rename-over included) can go unreported. Its raw events
  // (one per inotify event, before any throttling) are complete: they trigger too. The queue
  // deduplicates, and a reconcile of an unchanged file is a cheap no-op.
  files.on("raw", (_event, file, details) => {
    const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
    if (typeof watched !== "string") return;
    // `file` is an entry of a watched machine directory, or the watched file's own name.
    const parts = relative(machinesDir, watched).split(sep);
    const name = parts.length === 1 ? machineOf(join(watched, file)) : machineOf(watched);
    if (name !== null) onMachine(name, null);
  });
  files.on("error", failed);

  /** The identity of entry `name` now: `dev:ino` of a directory, "other", or null when there is none (or it does not answer). */
  const look = async (name: string): Promise<string | null | "no answer"> => {
    const path = join(machinesDir, name);
    try {
      const info = await calls.run(path, `lstat of ${path}`, () => lstat(path));
      return info.isDirectory() ? `${info.dev}:${info.ino}` : "other";
    } catch (error) {
      if (error instanceof NoAnswerError) return "no answer";
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return null;
      throw error;
    }
  };

  /** Timers of the re-checks of new directories, cleared when the watch closes. */
  const pending = new Set<NodeJS.Timeout>();
  /** Brings the watch of entry `name` up to date with what is there now; reports what changed. */
  const update = async (name: string): Promise<void> => {
    const path = join(machinesDir, name);
    const before = entries.get(name);
    const now = await look(name);
    if (now === "no answer") return; // watched once it answers (see add)
    if (now === before) return;
    if (before !== undefined && before !== "other") files.unwatch(path);
    if (now === null) entries.delete(name);
    else entries.set(name, now);
    // Added as not initial (chokidar's third argument), so that what the directory holds already is
    // reported: a config.toml written right after its directory was created.
    if (now !== null && now !== "other") files.add(path, undefined, true);
    const wasDir = before !== undefined && before !== "other";
    const isDir = now !== null && now !== "other";
    if (wasDir && before !== now) onMachine(name, "unlinkDir");
    else if (before === "other" && now !== "other") onMachine(name, "unlink");
    if (isDir) {
      onMachine(name, "addDir");
      // chokidar reads a new directory and arms its watch in two steps; a config.toml renamed into it
      // in between is never reported (arcbox writes the file a moment after creating the directory).
      // So a new machine directory is looked at again once its watch must be armed.
      for (const delay of NEW_DIRECTORY_RECHECKS_MS) {
        const timer = setTimeout(() => {
          pending.delete(timer);
          onMachine(name, null);
        }, delay);
        pending.add(timer);
      }
    } else if (now === "other") onMachine(name, "add");
  };
  /** One update per name at a time; events meanwhile make it run once more. */
  const updating = new Map<string, boolean>();
  const updateSoon = (name: string) => {
    if (updating.has(name)) return void updating.set(name, true);
    updating.set(name, false);
    void (async () => {
      do {
        updating.set(name, false);
        await update(name).catch(failed);
      } while (updating.get(name) === true);
      updating.delete(name);
    })();
  };

  const top = fsWatch(machinesDir, (_event, file) => {
    if (file === null) return onSelfMoved();
    const name = file.toString();
    // The directory itself renamed or removed is reported under its own name.
    if (name === basename(machinesDir)) onSelfMoved();
    if (isLockFileName(name)) return;
    onMachine(name, null);
    updateSoon(name);
  });
  top.on("error", failed);

  // The entries there now; each directory is watched once it has answered (one added later is
  // watched by `update`). chokidar is ready once it armed every path of its first `add`.
  const names = await calls.run(machinesDir, `readdir of ${machinesDir}`, () => readdir(machinesDir)).catch((error: unknown) => {
    failed(error);
    return [] as string[];
  });
  const seen = await Promise.all(
    names.filter((name) => !isLockFileName(name)).map(async (name) => [name, await look(name).catch(() => "no answer" as const)] as const),
  );
  const directories: string[] = [];
  for (const [name, now] of seen) {
    if (now === null || now === "no answer") continue;
    entries.set(name, now);
    if (now !== "other") directories.push(join(machinesDir, name));
  }
  if (directories.length > 0) {
    files.add(directories);
    await whenReady(files, calls.deadlineMs, () =>
      onError(new Error(`the watch of the machine directories is not ready after ${calls.deadlineMs} ms (a hung mount?); going on meanwhile`)),
    );
  }
  return {
    add: (path) => updateSoon(basename(path)),
    async close() {
      for (const timer of pending) clearTimeout(timer);
      top.close();
      await closeWatcher(files);
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
  /** Deadlines of the probe's file system calls (keyed by `lockPath`); default a new OverdueCalls. */
  calls?: OverdueCalls;
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
 * what notices a death, within one interval. One probe runs at a time: one asked for meanwhile runs
 * right after it. The first probe runs before this resolves. A lock directory whose watch is not
 * ready within the file system deadline (a hung mount) is left to the poll.
 */
export async function watchDaemon(options: DaemonWatchOptions): Promise<DaemonWatch> {
  const { lockPath, pollIntervalMs, onProbe, onChange, onError } = options;
  const calls = options.calls ?? new OverdueCalls();
  let status = await probeDaemon(lockPath, calls);
  onProbe(status);
  let closed = false;
  let probing = false;
  let again = false;
  const probe = async (): Promise<void> => {
    if (probing) return void (again = true);
    probing = true;
    try {
      do {
        again = false;
        const next = await probeDaemon(lockPath, calls);
        onProbe(next);
        const changed = next.alive !== status.alive;
        status = next;
        if (changed) onChange(next);
      } while (again && !closed);
    } finally {
      probing = false;
    }
  };
  const timer = setInterval(() => void probe(), pollIntervalMs);

  // Watch from the lock directory's parent, so that a `run/` directory created later is seen too.
  const runDir = dirname(lockPath);
  const base = dirname(runDir);
  let watcher: FSWatcher | null = null;
  if (await isDirectory(base, calls)) {
    watcher = watch(base, {
      ignoreInitial: true,
      depth: 1,
      followSymlinks: false,
      ignored: (path: string) => path !== base && path !== runDir && path !== lockPath,
    });
    watcher.on("all", () => void probe());
    watcher.on("error", (error) => onError(error instanceof Error ? error : new Error(String(error))));
    await whenReady(watcher, calls.deadlineMs, () => onError(new Error(`the watch of ${base} is not ready after ${calls.deadlineMs} ms (a hung mount?); the lock is polled`)));
  }
  return {
    get status() {
      return status;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      if (watcher) await closeWatcher(watcher);
    },
  };
}

/** Resolves when `watcher` is ready, or after `ms` (then `onLate` is called; the watch goes on). */
function whenReady(watcher: FSWatcher, ms: number, onLate: () => void): Promise<void> {
  return withDeadline(new Promise<void>((resolve) => watcher.once("ready", () => resolve())), ms, "watch").catch(onLate);
}

/** Whether `path` is a directory; false too when it does not answer within the deadline of `calls`. */
async function isDirectory(path: string, calls: OverdueCalls): Promise<boolean> {
  try {
    return (await calls.run(path, `stat of ${path}`, () => stat(path))).isDirectory();
  } catch {
    return false;
  }
}
