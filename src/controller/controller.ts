/**
 * The controller's lifecycle (docs/design.md#reconcile): lock, sweep, watch, list, queue, reconcile,
 * resync and a graceful stop. Data flows one way: sources → work queue → reconciler → store / metrics.
 */
import { basename } from "node:path";
import type { Logger } from "pino";
import { MachineStore, type Revision, type StoreIoError } from "../store/index.js";
import type { ActivityLog, FailureDetails } from "../metrics/activity.js";
import type { ControllerMetrics, UnresponsivePathKind } from "../metrics/controller-metrics.js";
import { OverdueCalls } from "../platform/deadline.js";
import type { HealthCheck } from "../metrics/http-server.js";
import type { ControllerConfig } from "./config.js";
import { DEFAULT_KILL_GRACE_MS, DirectoryHookSupply, fixedHooks, HookError, skipReasonForName, type HookSupply, type HooksNotice, type HooksStatus, type NetworkHook } from "../host/hooks.js";
import { instanceLock, LockHeldError, type InstanceLock, type LockState } from "../host/instance-lock.js";
import type { LivenessOptions } from "../host/liveness.js";
import { defaultProcessTable } from "../host/process-table.js";
import type { DaemonStatus } from "../host/daemon-probe.js";
import { Reconciler, ReconcileError, type MachineView, type ReconcileObserver } from "./reconciler.js";
import { listMachineNames, startResync, watchDaemon, watchMachines, type DaemonWatch, type MachinesWatch, type RewatchReason } from "./sources.js";
import { WorkQueue, type ProcessResult } from "./workqueue.js";
import { BackoffPacer } from "./hook-run-pacer.js";

export interface ControllerOptions {
  config: ControllerConfig;
  logger: Logger;
  metrics: ControllerMetrics;
  /**
   * In-process hooks (library use), run in this order; or the supply of the executables of
   * `hooks_dir`, already checked by the caller. Without it, `start` checks `hooks_dir` itself.
   */
  hooks?: NetworkHook[] | DirectoryHookSupply;
  /**
   * The single-instance lock, made (and possibly taken) by the caller, who releases it. Without it,
   * `start` takes the lock and `stop` releases it. Either way the controller takes it again when the
   * machines directory is replaced or appears.
   */
  instanceLock?: InstanceLock;
  /**
   * Told when the controller cannot go on: another controller took the lock of a machines directory
   * that replaced this one's (a LockHeldError), or the lock could not be taken there. The caller
   * should stop it. Nothing more is reconciled meanwhile.
   */
  onFatal?: (error: Error) => void;
  /** Where recoveries, failures, invalid configs and the daemon's ups and downs are recorded for the landing page. */
  activity?: ActivityLog;
  /**
   * The deadlines of file system calls on paths others control (docs/design.md#hung-mounts), shared
   * with the caller's own checks so that a path found not answering is not waited for again.
   * Default: a new one.
   */
  calls?: OverdueCalls;
}

/**
 * The fewest machines persisted `running` for which a daemon death pauses the config watch (and
 * only when they are at least half of all), and the fewest machines for which a start with the
 * daemon down defers it (their states are not read yet): below it the pause and the full re-watch
 * after it would cost more than they save.
 */
const BULK_RECOVERY_MIN_RUNNING = 100;

/** The watcher's health detail during a pause (healthy: every machine is queued, and looked at again after). */
const PAUSED_DETAIL = "paused while the machines are recovered (the arcbox daemon is down)";

/**
 * A whole stop fits in `shutdown_timeout` plus the hooks' SIGTERM-to-SIGKILL grace. In-flight work
 * gets `shutdown_timeout` less this reserve: the hooks then still running are stopped early enough
 * for their SIGKILL, the HTTP server's close and the process's exit to fit in the bound too.
 */
const STOP_RESERVE_MS = 250;
/** How long stop() waits for the hooks it stopped: their grace, and a little for them to be reaped. */
const KILLED_HOOKS_WAIT_MS = DEFAULT_KILL_GRACE_MS + 100;

/** Watch errors after which events are no longer delivered: the process should be restarted. */
const FATAL_WATCH_ERRORS = new Set(["ENOSPC", "EMFILE", "ENFILE"]);

export class Controller {
  private readonly store: MachineStore;
  /**
   * Deadlines of every file system call on a path others control (docs/design.md#hung-mounts), keyed
   * by the path: a machine directory, the daemon's lock, the hooks directory.
   */
  private readonly calls: OverdueCalls;
  private readonly reconciler: Reconciler;
  private readonly queue: WorkQueue;
  private readonly abort = new AbortController();
  private readonly lock: InstanceLock;
  private readonly ownsLock: boolean;
  /** Set once the lock was lost to another controller (or could not be taken): nothing more is reconciled. */
  private lockFailure: Error | null = null;
  /** The lock's generation whose directory was swept of leftover temp files. */
  private sweptGeneration = 0;
  private watcher: MachinesWatch | null = null;
  private daemon: DaemonWatch | null = null;
  /** The last unexpected daemon-probe error logged, so a lasting one is logged once, not every poll. */
  private daemonProbeError: string | null = null;
  private resync: { stop(): void } | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private lastHeartbeat = Date.now();
  private watcherFailure: string | null = null;
  private initialPassQueued = false;
  private readonly known = new Set<string>();
  /** The known machines last seen persisted `running`. */
  private readonly runningMachines = new Set<string>();
  /** Machines whose last recovery failed, with the revision it failed on (until a reconcile succeeds). */
  private readonly failedRevisions = new Map<string, Revision>();
  private stopping = false;

  private readonly hooks: HookSupply;
  /** Spaces out hook runs that keep repeating for the same content. */
  private readonly pacer = new BackoffPacer();
  /** Machines an operator asked to look at now (SIGHUP): their next reconcile is not paced. */
  private readonly unpaced = new Set<string>();
  /** The executable hooks' supply, when hooks come from a directory: `start` checks it unless the caller did. */
  private readonly directoryHooks: { supply: DirectoryHookSupply; checked: boolean } | null;

  constructor(private readonly options: ControllerOptions) {
    const { config, metrics } = options;
    this.calls = options.calls ?? new OverdueCalls();
    // Paths the caller's checks already found not answering count from the start.
    for (const path of this.calls.overdueKeys()) this.pathAnswers(path, false);
    this.calls.subscribe((path, overdue) => this.pathAnswers(path, !overdue));
    this.store = new MachineStore({ dir: config.machinesDir, calls: this.calls });
    const given = options.hooks;
    if (Array.isArray(given)) {
      metrics.knownHooks(given.map((hook) => hook.name));
      this.hooks = fixedHooks(given);
      this.directoryHooks = null;
    } else {
      const supply = given ?? directoryHookSupply({ ...options, calls: this.calls });
      this.hooks = supply;
      this.directoryHooks = { supply, checked: given !== undefined };
    }
    this.lock = options.instanceLock ?? instanceLock(config.machinesDir);
    this.ownsLock = options.instanceLock === undefined;
    this.reconciler = new Reconciler({
      store: this.store,
      hooks: this.hooks,
      liveness: { ...livenessOptions(config), calls: this.calls },
      startupGraceMs: config.startupGraceMs,
      signal: this.abort.signal,
      observer: this.trackingObserver(withActivity(metricsObserver(metrics), options.activity)),
      pacer: this.pacer,
    });
    this.queue = new WorkQueue({
      workers: config.workers,
      observer: metrics.workqueue,
      process: (name) => this.process(name),
      onError: (name, error, retryInMs, attempt) => this.logFailure(name, error, retryInMs, attempt),
    });
    metrics.trackInFlight(() => this.queue.inFlight());
  }

  /**
   * Starts the controller: checks the hooks directory unless the caller did (throws
   * `HooksDirectoryError` when a named one cannot be used), takes the single-instance lock (throws
   * `LockHeldError` if another controller holds it), removes the store's leftover temp files, starts
   * probing the daemon (with `liveness = "daemon"`) and watching, and queues every machine. A machines
   * directory that does not exist is waited for (the watcher's health check fails meanwhile), then
   * locked and reconciled. With the daemon down and at least 100 machines, the watch starts only once
   * every one has been taken up (or the daemon is up), then queues every machine again. Resolves
   * when the controller is ready.
   */
  async start(): Promise<void> {
    const { config, logger, metrics } = this.options;
    if (this.directoryHooks && !this.directoryHooks.checked) {
      logHooksNotice(logger, await this.directoryHooks.supply.check());
      this.directoryHooks.checked = true;
    }
    if ((await this.lock.ensure()) === "missing") {
      logger.warn({ machines_dir: config.machinesDir }, "the machines directory does not exist; waiting for it to appear");
    } else {
      this.sweptGeneration = this.lock.generation;
      await this.sweep();
    }

    this.heartbeat = setInterval(() => (this.lastHeartbeat = Date.now()), 1000);
    this.heartbeat.unref();

    if (config.liveness === "daemon") {
      this.daemon = await watchDaemon({
        lockPath: config.daemonLock,
        pollIntervalMs: config.daemonPollIntervalMs,
        calls: this.calls,
        onProbe: (status) => this.daemonProbed(status),
        onChange: (status) => {
          logger.info({ daemon_lock: config.daemonLock, reason: status.reason }, status.alive ? "arcbox daemon is up" : "arcbox daemon is down");
          this.options.activity?.record({ kind: "daemon", up: status.alive, reason: status.reason });
          // Level-based: every machine is looked at again; the reconciler decides.
          // A paused watch resumes (its look at every machine is the one needed).
          const next = !status.alive ? this.recoverAfterDaemonDeath() : this.watcher?.paused ? this.resumeWatching() : this.enqueueAll(false);
          void next.catch((error: unknown) => logger.error({ err: (error as Error).message }, "listing machines failed"));
        },
        onError: (error) => logger.error({ err: error.message, daemon_lock: config.daemonLock }, "daemon lock watch error"),
      });
      // A stop asked for while starting: what started is closed, nothing more starts.
      if (this.stopping) return void (await this.daemon.close());
      if (!this.daemon.status.alive) {
        logger.info({ reason: this.daemon.status.reason }, "arcbox daemon is down");
        this.options.activity?.record({ kind: "daemon", up: false, reason: this.daemon.status.reason });
      }
    }

    // With the daemon down (a host just booted), a large fleet is recovered before the config watch
    // starts, for the reason a death pauses it (see recoverAfterDaemonDeath); every machine is looked
    // at again once the watch is up.
    const listed = this.daemon && !this.daemon.status.alive ? await listMachineNames(config.machinesDir, { calls: this.calls }) : [];
    const deferWatch = listed.length >= BULK_RECOVERY_MIN_RUNNING;

    // Watch before listing, so nothing created in between is missed (a deferred watch relists when it starts).
    this.watcher = await watchMachines({
      machinesDir: config.machinesDir,
      pidFile: config.pidFile,
      startPaused: deferWatch,
      calls: this.calls,
      onMachine: (name, event) => {
        if (event !== null) metrics.watchEvent(event);
        this.queue.add(name);
      },
      onError: (error) => {
        metrics.watchEvent("error");
        const code = (error as NodeJS.ErrnoException).code ?? "";
        if (FATAL_WATCH_ERRORS.has(code)) this.watcherFailure = `${code}: ${error.message}`;
        logger.error({ err: error.message, code }, "file watch error");
      },
      onRewatch: (why) => this.rewatched(why),
    });
    if (this.stopping) return void (await Promise.all([this.watcher.close(), this.daemon?.close()]));
    if (deferWatch) logger.info({ machines: listed.length }, "the arcbox daemon is down: recovering the machines before watching config files");
    await this.enqueueAll(true, deferWatch ? listed : undefined);
    if (deferWatch) void this.resumeWhenTakenUp();
    this.initialPassQueued = true;
    this.resync = startResync(config.resyncIntervalMs, async () => {
      try {
        await this.enqueueAll();
      } catch (error) {
        logger.error({ err: (error as Error).message }, "resync listing failed");
      }
    });
    logger.info(
      { data_dir: config.dataDir, machines_dir: config.machinesDir, hooks_dir: config.hooksDir, liveness: config.liveness, workers: config.workers },
      "controller started",
    );
  }

  /**
   * Stops gracefully: readiness fails, watching and resync stop, in-flight reconciles finish within
   * `shutdown_timeout` from the call, less a quarter second (then running hooks are stopped, and
   * waited for through their kill grace; no file is ever half-written because every write is a
   * rename), and the lock is released. Resolves whether in-flight work drained in time.
   */
  async stop(): Promise<boolean> {
    if (this.stopping) return true;
    this.stopping = true;
    const started = Date.now();
    const { config, logger } = this.options;
    this.resync?.stop();
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.daemon?.close();
    await this.watcher?.close();
    const drained = await this.queue.shutDown({ timeoutMs: Math.max(0, config.shutdownTimeoutMs - STOP_RESERVE_MS - (Date.now() - started)) });
    if (!drained) {
      logger.warn({ shutdown_timeout_ms: config.shutdownTimeoutMs }, "in-flight reconciles did not finish in time; stopping their hooks");
      this.abort.abort();
      await this.queue.shutDown({ timeoutMs: KILLED_HOOKS_WAIT_MS });
    }
    if (this.ownsLock) this.lock.release();
    return drained;
  }

  /** Stops running hooks now (their process groups get SIGTERM, then SIGKILL); their machines stay `running` and are retried. */
  abortInFlight(): void {
    this.abort.abort();
  }

  /**
   * Looks at every machine again now (SIGHUP): queues every machine, as a resync does, and retries at
   * once those waiting out a failure's backoff (hooks are discovered afresh at each recovery anyway).
   * Resolves with how many machines were queued and how many of them were retried early; 0 and 0
   * before the first listing and while stopping.
   */
  async resyncNow(): Promise<{ queued: number; retried: number }> {
    if (this.stopping || !this.initialPassQueued) return { queued: 0, retried: 0 };
    const names = await this.enqueueAll(true, undefined, { retryNow: true });
    return { queued: names.queued, retried: names.retried };
  }

  /** How the hooks stand (for the landing page); null with in-process hooks. */
  hooksStatus(): HooksStatus | null {
    return this.directoryHooks?.supply.status() ?? null;
  }

  /** `/healthz` checks: the event loop turns and the watcher still delivers events. */
  liveness(): HealthCheck[] {
    const lag = Date.now() - this.lastHeartbeat;
    const problem = this.watcherFailure ?? this.watcher?.problem ?? null;
    return [
      { name: "event-loop", ok: lag < 10_000, detail: `last heartbeat ${lag}ms ago` },
      { name: "watcher", ok: problem === null, detail: problem ?? (this.watcher?.paused ? PAUSED_DETAIL : "watching") },
    ];
  }

  /** `/readyz` checks: started, first full listing queued, watcher ready, not shutting down. */
  readiness(): HealthCheck[] {
    const problem = this.watcherFailure ?? this.watcher?.problem ?? null;
    return [
      { name: "watcher", ok: this.watcher !== null && problem === null, detail: problem ?? (this.watcher?.paused ? PAUSED_DETAIL : this.watcher ? "ready" : "starting") },
      { name: "initial-listing", ok: this.initialPassQueued, detail: this.initialPassQueued ? "queued" : "pending" },
      { name: "shutdown", ok: !this.stopping, detail: this.stopping ? "shutting down" : "running" },
    ];
  }

  /** Resolves when no reconcile is waiting or running (delayed requeues excluded). For tests and tools. */
  idle(): Promise<void> {
    return this.queue.onIdle();
  }

  /**
   * The daemon died: every machine is queued. When most of a large fleet was running, the config
   * watch pauses until that work is taken up, since each recovery's write would come back as watch
   * events whose handling (chokidar re-reads the machine's directory and re-arms its file watch, then
   * a no-op reconcile follows) costs more CPU than the recovery itself. Afterwards every machine is
   * looked at again, as after any gap in watching. The daemon coming back ends the pause at once.
   */
  private async recoverAfterDaemonDeath(): Promise<void> {
    const running = this.runningMachines.size;
    const bulk = this.watcher !== null && running >= BULK_RECOVERY_MIN_RUNNING && running * 2 >= this.known.size;
    // Queued first: the recoveries start while the watch closes.
    const queued = this.enqueueAll(false);
    if (bulk) {
      this.options.logger.info({ machines: running }, "pausing the config watch while the machines are recovered");
      await this.watcher?.pause();
    }
    await queued;
    if (bulk) await this.resumeWhenTakenUp();
  }

  /**
   * Ends a pause of the config watch once no machine waits to be reconciled: one still running (a
   * hung hook, say) does not hold the watch off.
   */
  private async resumeWhenTakenUp(): Promise<void> {
    await this.queue.onEmpty();
    await this.resumeWatching();
  }

  /** Ends a pause of the config watch now; a no-op when not paused or stopping (failures go to the watch's `onError`). */
  private async resumeWatching(): Promise<void> {
    if (this.stopping || !this.watcher?.paused) return;
    await this.watcher.resume();
  }

  /**
   * Queues every machine: those listed now (or in `listed`, a listing just made) and those seen
   * before (a vanished one is then forgotten).
   */
  private async enqueueAll(isResync = true, listed?: readonly string[], { retryNow = false } = {}): Promise<{ queued: number; retried: number }> {
    let retried = 0;
    const add = (name: string) => {
      if (!retryNow) return this.queue.add(name);
      this.unpaced.add(name);
      if (this.queue.retryNow(name)) retried++;
    };
    // The known ones first: their work starts while the directory is listed.
    const queued = new Set(this.known);
    for (const name of queued) add(name);
    const others = listed ?? (await listMachineNames(this.options.config.machinesDir, { except: queued, calls: this.calls }));
    for (const name of others) add(name);
    if (isResync) this.options.metrics.resyncCompleted(new Date());
    return { queued: queued.size + others.length, retried };
  }

  /**
   * The machines directory is watched anew: a directory new at the path (also one that replaced it
   * during a pause) is locked and swept first; then every machine is looked at.
   */
  private async rewatched(why: RewatchReason): Promise<void> {
    const { logger, config } = this.options;
    if ((await this.holdLock()) === null) return;
    if (why === "replaced") logger.warn({ machines_dir: config.machinesDir }, "the machines directory was replaced; watching the new one and looking at every machine");
    else if (why === "appeared") logger.info({ machines_dir: config.machinesDir }, "the machines directory appeared; watching it and looking at every machine");
    else logger.info({ machines_dir: config.machinesDir }, "watching config files again; looking at every machine");
    void this.enqueueAll(false).catch((error: unknown) => logger.error({ err: (error as Error).message }, "listing machines failed"));
  }

  /**
   * Holds the lock of the directory now at the machines path (taking it again after a replacement),
   * and says how (see LockState). Null once another controller holds it or it could not be taken:
   * that is logged once and reported to `onFatal`, and nothing more is reconciled.
   */
  private async holdLock(): Promise<LockState | null> {
    if (this.lockFailure) return null;
    let state: LockState;
    try {
      state = await this.lock.ensure();
    } catch (error) {
      if (this.lockFailure) return null;
      this.lockFailure = error as Error;
      const held = error instanceof LockHeldError;
      this.options.logger.fatal(
        { err: (error as Error).message, machines_dir: this.options.config.machinesDir, ...(held ? { owner_pid: error.ownerPid } : {}) },
        held ? "another controller holds the lock of the new machines directory; stopping" : "cannot take the lock of the new machines directory; stopping",
      );
      this.options.onFatal?.(error as Error);
      return null;
    }
    if (this.lock.generation !== this.sweptGeneration) {
      // A directory new at the path: remove what a crashed writer left there (ours now in flight excepted).
      this.sweptGeneration = this.lock.generation;
      await this.sweep({ keepOwn: true }).catch((error: unknown) =>
        this.options.logger.warn({ err: (error as Error).message }, "cannot remove leftover temp files in the new machines directory"),
      );
    }
    return state;
  }

  /** Removes the store's leftover temp files (of a crash), reporting what it could not clean; `keepOwn`: not this process's. */
  private async sweep({ keepOwn = false } = {}): Promise<void> {
    const { logger } = this.options;
    const swept = await this.store.sweepTempFiles({ keepOwn, onProblem: (problem) => logSweepProblem(logger, problem) });
    for (const path of swept) logger.info({ path }, "removed leftover temp file");
  }

  /** A path stopped answering (a call on it is past its deadline), or answers again. */
  private pathAnswers(path: string, answers: boolean): void {
    const { config, logger, metrics } = this.options;
    const kind = pathKind(path, config);
    metrics.unresponsivePath(kind, answers ? -1 : 1);
    if (!answers) {
      logger.error({ path, kind, deadline_ms: this.calls.deadlineMs }, "a path does not answer (a hung mount?); what needs it fails until it does");
      return;
    }
    logger.info({ path, kind }, "the path answers again");
    // A machine waiting out its backoff is looked at now.
    if (kind === "machine" && !this.stopping) this.queue.retryNow(basename(path));
  }

  private daemonProbed(status: DaemonStatus): void {
    const { metrics, logger, config } = this.options;
    metrics.daemonUp(status.alive);
    if (status.error) {
      metrics.livenessProbeError();
      if (this.daemonProbeError !== status.error.message) logger.warn({ daemon_lock: config.daemonLock, code: status.error.code }, status.error.message);
    }
    this.daemonProbeError = status.error?.message ?? null;
  }

  /** Keeps the set of machines seen, so a resync also reconciles those that vanished unnoticed. */
  private trackingObserver(next: ReconcileObserver): ReconcileObserver {
    return {
      ...next,
      observed: (view) => {
        if (view.kind === "gone") this.known.delete(view.name);
        else this.known.add(view.name);
        if (view.kind === "gone") this.pacer.forget(view.name);
        if (view.kind === "machine" && view.machine.state === "running") this.runningMachines.add(view.name);
        else this.runningMachines.delete(view.name);
        next.observed?.(view);
      },
    };
  }

  private async process(name: string): Promise<ProcessResult | void> {
    const { logger, metrics } = this.options;
    // A directory that replaced this one's is locked before anything in it is touched.
    if ((await this.holdLock()) === null) return { deferred: true };
    const reconcileId = newReconcileId();
    const log = logger.child({ machine: name, reconcile_id: reconcileId });
    const started = performance.now();
    // An event while a failed recovery waits out its backoff (often an event its own hooks caused)
    // does not run the hooks again for the same content: the pending retry will.
    const failed = this.failedRevisions.get(name);
    const deferRecoveryOf = failed !== undefined && this.queue.isDelayed(name) ? failed : undefined;
    try {
      const outcome = await this.reconciler.reconcile(name, log, { deferRecoveryOf, unpaced: this.unpaced.delete(name) });
      const seconds = (performance.now() - started) / 1000;
      if (outcome.kind === "deferred") {
        metrics.reconcileFinished("requeue_after", seconds);
        return { deferred: true };
      }
      this.failedRevisions.delete(name);
      if (outcome.kind === "pending") {
        metrics.reconcileFinished("requeue_after", seconds);
        return { requeueAfter: outcome.requeueAfterMs };
      }
      log.debug({ outcome: outcome.kind, duration_ms: Math.round(seconds * 1000) }, "reconciled");
      if (outcome.kind === "recovered") {
        this.options.activity?.record({
          kind: "recovered",
          machine: name,
          reason: outcome.reason,
          hooks: outcome.hooks,
          ...(outcome.noHooks === undefined ? {} : { no_hooks: outcome.noHooks }),
          duration_ms: outcome.durationMs,
        });
      }
      // A live VM can crash without touching any file: look again later (jittered, so thousands of
      // machines started together do not come back together).
      const { view } = outcome;
      // With the daemon's liveness there is no per-VM crash to miss: the daemon source re-queues.
      const recheck = this.options.config.liveness === "daemon" ? 0 : this.options.config.recheckIntervalMs;
      if (recheck > 0 && view.kind === "machine" && view.machine.state === "running" && view.alive) {
        metrics.reconcileFinished("requeue_after", seconds);
        return { requeueAfter: Math.round(recheck * (0.9 + Math.random() * 0.2)) };
      }
      metrics.reconcileFinished("success", seconds);
    } catch (error) {
      metrics.reconcileFinished("error", (performance.now() - started) / 1000);
      const failure = error instanceof ReconcileError ? error : new ReconcileError(`${name}: ${(error as Error).message}`, name, error);
      failure.reconcileId = reconcileId;
      if (failure.revision === undefined) this.failedRevisions.delete(name);
      else this.failedRevisions.set(name, failure.revision);
      throw failure;
    }
  }

  private logFailure(name: string, error: unknown, retryInMs: number, attempt: number): void {
    const reconcileId = error instanceof ReconcileError ? error.reconcileId : undefined;
    const fields = failureFields(error);
    this.options.logger.error({ machine: name, reconcile_id: reconcileId, retry_in_ms: retryInMs, attempt, ...fields }, "reconcile failed; will retry");
    // The landing page and /activity are for anyone who can reach the port: what a hook printed may
    // be a secret, and stays in the log unless the operator chose otherwise.
    const shown = this.options.config.showHookOutput ? fields : withoutHookOutput(error, fields);
    this.options.activity?.record({ kind: "failed", machine: name, attempt, retry_in_ms: retryInMs, ...shown, ...(reconcileId === undefined ? {} : { reconcile_id: reconcileId }) });
  }
}

/**
 * The executable hooks of `hooks_dir` (or none, by choice), looked at again for each recovery so
 * edits to the directory apply at once; each fresh discovery updates the known hooks' metrics and
 * reports entries skipped for a reason a person should fix.
 */
export function directoryHookSupply({
  config,
  logger,
  metrics,
  calls,
}: Pick<ControllerOptions, "config" | "logger" | "metrics"> & { calls?: OverdueCalls }): DirectoryHookSupply {
  return new DirectoryHookSupply(
    { dir: config.hooksDir, source: config.hooksDirSource },
    {
      timeoutMs: config.hookTimeoutMs,
      ...(calls ? { calls } : {}),
      onDiscovered: (found) => {
        metrics.knownHooks(found.hooks.map((hook) => hook.name));
        for (const skip of found.skipped) {
          // Hidden files and editor or package leftovers are skipped by design; anything else wants fixing.
          const expected = skipReasonForName(basename(skip.file)) !== undefined;
          logger[expected ? "debug" : "warn"]({ hook: skip.file, reason: skip.reason }, "skipping network hook");
        }
      },
    },
  );
}

/** Logs what the start-up check of the hooks directory found. */
export function logHooksNotice(logger: Logger, notice: HooksNotice): void {
  logger[notice.level](notice.fields, notice.message);
}

/** The liveness settings of a configuration, with the process table chosen for this host. */
export function livenessOptions(config: ControllerConfig): LivenessOptions {
  return { mode: config.liveness, daemonLock: config.daemonLock, pidFile: config.pidFile, processTable: defaultProcessTable() };
}

/** What a path whose calls are overdue is to the controller. */
function pathKind(path: string, config: ControllerConfig): UnresponsivePathKind {
  if (path === config.daemonLock) return "daemon_lock";
  if (path === config.machinesDir) return "machines_dir";
  if (config.hooksDir !== null && path === config.hooksDir) return "hooks";
  return "machine";
}

/** Log fields of a failed reconcile; a hook failure adds the hook, its exit and its stderr tail. */
export function failureFields(error: unknown): FailureDetails {
  const cause = error instanceof ReconcileError ? error.cause : error;
  const fields: FailureDetails = { err: (error as Error).message };
  if (cause instanceof HookError) {
    Object.assign(fields, { hook: cause.hook, exit_code: cause.exitCode, signal: cause.signal, timed_out: cause.timedOut, stderr: cause.stderrTail });
  }
  return fields;
}

/**
 * The failure's fields without what its hook printed: no stderr tail, and the message's quote of it
 * replaced by the hook error's summary. Other failures are returned as they are.
 */
export function withoutHookOutput(error: unknown, fields: FailureDetails): FailureDetails {
  const cause = error instanceof ReconcileError ? error.cause : error;
  if (!(cause instanceof HookError)) return fields;
  const { stderr: _stderr, ...rest } = fields;
  return { ...rest, err: fields.err.replace(cause.message, cause.summary) };
}

/** Routes the reconciler's observations into the metrics. */
export function metricsObserver(metrics: ControllerMetrics): ReconcileObserver {
  return {
    observed: (view: MachineView) => {
      if (view.kind === "gone") metrics.deleteMachine(view.name);
      else if (view.kind === "invalid") metrics.setMachine(view.name, "invalid", false);
      else metrics.setMachine(view.name, view.machine.state, view.needsRecovery, view.alive);
    },
    recoveryFinished: (result) => metrics.recoveryFinished(result),
    storeWrite: (result) => metrics.storeWrite(result),
    livenessProbeError: () => metrics.livenessProbeError(),
    hookFinished: (hook, result, seconds) => metrics.hookFinished(hook, result, seconds),
  };
}

/**
 * Adds the activity record to an observer: each distinct content of an invalid config is recorded
 * once, as it is logged once; a machine valid again or gone may be recorded anew later.
 */
export function withActivity(next: ReconcileObserver, activity: ActivityLog | undefined): ReconcileObserver {
  if (!activity) return next;
  const recorded = new Map<string, string>();
  return {
    ...next,
    observed: (view) => {
      next.observed?.(view);
      if (view.kind !== "invalid") recorded.delete(view.name);
      else if (recorded.get(view.name) !== view.error.message) {
        recorded.set(view.name, view.error.message);
        activity.record({ kind: "invalid", machine: view.name, err: view.error.message, ...(view.error.path === undefined ? {} : { path: view.error.path }) });
      }
    },
  };
}

/** Logs a machine directory the start-up sweep could not clean (it goes on with the others). */
export function logSweepProblem(logger: Logger, problem: StoreIoError): void {
  logger.warn({ path: problem.path, code: problem.code, err: problem.message }, "cannot remove leftover temp files here; skipping it");
}

/** A short id tying one reconcile's log lines together (not a secret: no need for the crypto RNG's cost). */
export function newReconcileId(): string {
  return Math.floor(Math.random() * 2 ** 32)
    .toString(16)
    .padStart(8, "0");
}
