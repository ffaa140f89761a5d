/**
 * Reconcile(name): the level-based decision for one machine (docs/design.md#reconcile-rules). An event only names a
 * machine; the reconciler reads the disk and decides from what it finds, so running it again is
 * always safe.
 */
import type { Logger } from "pino";
import {
  ConflictError,
  MachineNotFoundError,
  StoreError,
  StoreIoError,
  type LoadedMachine,
  type MachineHandle,
  type MachineStore,
  type Revision,
} from "../store/index.js";
import type { Machine } from "../store/machine.js";
import { runHooks, type HookObserver, type HookSupply } from "../host/hooks.js";
import { LivenessProbeError, probeLiveness, type LivenessOptions, type LivenessResult } from "../host/liveness.js";

/** What the controller observed about one machine; it feeds metrics and the landing page. */
export type MachineView =
  | { kind: "machine"; name: string; machine: Machine; alive: boolean; needsRecovery: boolean }
  | { kind: "invalid"; name: string; error: StoreError }
  | { kind: "gone"; name: string };

/** The outcome of one successful reconcile. Failures are thrown. */
export type ReconcileOutcome =
  | { kind: "healthy"; view: MachineView }
  /** `noHooks`: why no hook ran, when there was no hooks directory to run (hooks off, the default one missing). */
  | { kind: "recovered"; hooks: string[]; noHooks?: string; reason: string; durationMs: number; view: MachineView }
  /** Only with `dryRun`: a real reconcile would recover the machine now, for `reason`. */
  | { kind: "wouldRecover"; reason: string; view: MachineView }
  | { kind: "pending"; requeueAfterMs: number; view: MachineView }
  /**
   * A recovery of exactly this content already failed and its retry is pending (`deferRecoveryOf`):
   * nothing was run; the retry will try again.
   */
  | { kind: "deferred"; view: MachineView }
  | { kind: "invalid"; view: MachineView }
  | { kind: "gone"; view: MachineView };

/** Side channels a reconcile reports to; every member is optional. */
export interface ReconcileObserver extends Partial<HookObserver> {
  /** A machine's observed state changed (or was first seen). */
  observed?(view: MachineView): void;
  recoveryFinished?(result: "success" | "error"): void;
  storeWrite?(result: "success" | "conflict" | "error"): void;
  /** A liveness probe failed unexpectedly (`code` is the errno name): `arcbox_liveness_probe_errors_total`. */
  livenessProbeError?(code: string): void;
}

export interface ReconcilerOptions {
  store: MachineStore;
  /** The hooks of each recovery, asked for every recovery so edits to the hooks directory apply at once. */
  hooks: HookSupply;
  /** How a VM is judged alive (mode, daemon lock, pid file, process table). */
  liveness: LivenessOptions;
  /** `pidfile` only: a `running` machine whose config is younger than this and has no live VM is left to boot. */
  startupGraceMs: number;
  /**
   * Decide, but do not act: where a recovery would start, the reconcile ends with `wouldRecover`
   * instead. No hook runs and nothing is written.
   */
  dryRun?: boolean;
  /** Aborted at shutdown: running hooks are stopped and the file stays `running`. */
  signal?: AbortSignal;
  observer?: ReconcileObserver;
  /**
   * Paces repeated hook runs for the same content (see HookRunPacer): a recovery whose hooks ran for
   * this very content a moment ago waits its turn. None: no pacing.
   */
  pacer?: HookRunPacer;
}

/**
 * Spaces out the hook runs of a machine whose recovery keeps coming back to the same content in
 * quick succession, whatever its hooks did meanwhile (failed, rebuilt the machine's directory, or
 * put the old content back after a recovery).
 */
export interface HookRunPacer {
  /** Milliseconds to wait before the hooks may run again for `revision` of `name`; 0: run now. */
  delayFor(name: string, revision: Revision): number;
  /** The hooks ran (to any end) for `revision` of `name`. */
  ran(name: string, revision: Revision): void;
  /** `name` is gone: its runs are forgotten. */
  forget(name: string): void;
}

/** Error of a reconcile that could not converge; the queue retries it with backoff. */
export class ReconcileError extends Error {
  override readonly name = "ReconcileError";
  /** The id of the reconcile that failed, for its log line (set by whoever assigned the id). */
  reconcileId: string | undefined;
  constructor(
    message: string,
    readonly machine: string,
    override readonly cause?: unknown,
    /** The revision of the config whose recovery failed, when the failure came after reading it. */
    readonly revision?: Revision,
  ) {
    super(message);
  }
}

/** Options of one reconcile. */
export interface ReconcileRequestOptions {
  /**
   * Do not start a recovery of a config at this revision: one already failed and its backoff retry is
   * pending. Anything else (a changed file, a VM that came back) is reconciled as usual.
   */
  deferRecoveryOf?: Revision;
  /** Run the hooks now even if they ran for this content a moment ago (an operator asked: SIGHUP). */
  unpaced?: boolean;
}

/** The hooks one reconcile has run, and for which content (kept across its restarts after write conflicts). */
interface HooksDone {
  revision?: Revision;
  hooks?: string[];
  noHooks?: string;
}

/** How often a reconcile starts over after write conflicts before it fails (and backs off). */
const MAX_CONFLICT_RESTARTS = 3;

export class Reconciler {
  /** Invalid files already reported, by machine: their error text, so each distinct problem logs once. */
  private readonly reportedInvalid = new Map<string, string>();

  constructor(private readonly options: ReconcilerOptions) {}

  /**
   * Brings one machine to its desired state (docs/design.md#reconcile-rules, steps 1–5). Resolves with what it did;
   * rejects with `ReconcileError` when a hook failed, the store could not write, or conflicts kept
   * recurring. Never writes an invalid file and never overwrites a file changed since it was read.
   */
  async reconcile(name: string, log: Logger, request: ReconcileRequestOptions = {}): Promise<ReconcileOutcome> {
    const done: HooksDone = {};
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.reconcileOnce(name, log, request, done);
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        this.options.observer?.storeWrite?.("conflict");
        if (attempt >= MAX_CONFLICT_RESTARTS) {
          throw new ReconcileError(`${name}: config kept changing while it was being recovered: ${error.message}`, name, error);
        }
        log.info({ err: error.message }, "config changed during reconcile; starting over from a fresh read");
      }
    }
  }

  private async reconcileOnce(name: string, log: Logger, request: ReconcileRequestOptions, done: HooksDone): Promise<ReconcileOutcome> {
    // The machine's directory is opened once, for the read of step 1 and the write of step 5.
    let reading = true;
    try {
      return await this.options.store.withMachine(name, async (handle) => {
        // 1. Read and validate.
        const loaded = await handle.load();
        reading = false;
        return this.decide(handle, loaded, log, request, done);
      });
    } catch (error) {
      if (reading) return this.unreadable(name, error, log);
      throw error;
    }
  }

  /**
   * Step 1 failed: the machine is gone (forget it) or invalid (report it once per distinct problem).
   * Other errors are thrown, among them a directory that does not answer (a hung mount): that says
   * nothing about the file, and the reconcile is retried.
   */
  private unreadable(name: string, error: unknown, log: Logger): ReconcileOutcome {
    const { observer } = this.options;
    if (error instanceof StoreIoError && error.code === "ETIMEDOUT") throw error;
    if (error instanceof MachineNotFoundError) {
      this.reportedInvalid.delete(name);
      const view: MachineView = { kind: "gone", name };
      observer?.observed?.(view);
      return { kind: "gone", view };
    }
    if (error instanceof StoreError) {
      const view: MachineView = { kind: "invalid", name, error };
      if (this.reportedInvalid.get(name) !== error.message) {
        this.reportedInvalid.set(name, error.message);
        log.warn({ path: error.path, err: error.message }, "invalid machine config; not touching it until it changes");
      }
      observer?.observed?.(view);
      return { kind: "invalid", view };
    }
    throw error;
  }

  /** Steps 2–5 for the machine read in step 1, through its open directory. */
  private async decide(handle: MachineHandle, loaded: LoadedMachine, log: Logger, request: ReconcileRequestOptions, done: HooksDone): Promise<ReconcileOutcome> {
    const { store, observer } = this.options;
    const { name } = handle;
    if (this.reportedInvalid.delete(name)) log.info({ path: loaded.path }, "machine config is valid again");

    const { machine } = loaded;
    const machineDir = store.machineDir(name);
    const { liveness } = this.options;

    // 2. Not running: nothing to do.
    if (machine.state !== "running") {
      return this.settled(machine, false);
    }

    // 3. Running and alive: nothing to do.
    const verdict = await this.probe(machineDir, log);
    if (verdict.alive) return this.settled(machine, true);

    // 4. Maybe still booting: wait out the grace period, measured from the config's last write.
    // Only pid files need it: with the daemon no VM boots without it, and `none` means none.
    if (liveness.mode === "pidfile" && this.options.startupGraceMs > 0) {
      const age = Date.now() - loaded.mtimeMs;
      if (age < this.options.startupGraceMs) {
        const view = this.observe(machine, false, true);
        // An mtime in the future (a clock stepped back, a file server's clock) waits one grace period at a time.
        const requeueAfterMs = Math.max(1, Math.min(this.options.startupGraceMs, Math.ceil(this.options.startupGraceMs - age)));
        log.debug({ requeue_after_ms: requeueAfterMs }, "running without a live VM, inside the startup grace period");
        return { kind: "pending", requeueAfterMs, view };
      }
    }

    // 5. Recover: networking hooks first, then persist `stopped`.
    const needing = this.observe(machine, false, true);
    if (this.options.dryRun) return { kind: "wouldRecover", reason: verdict.reason, view: needing };
    if (request.deferRecoveryOf === loaded.revision) return { kind: "deferred", view: needing };
    const paced = done.revision !== loaded.revision && !request.unpaced;
    const wait = paced ? (this.options.pacer?.delayFor(name, loaded.revision) ?? 0) : 0;
    if (wait > 0) {
      log.debug({ requeue_after_ms: wait }, "its hooks ran for this content a moment ago; waiting before running them again");
      return { kind: "pending", requeueAfterMs: wait, view: needing };
    }
    const started = performance.now();
    log.debug({ reason: verdict.reason }, "machine is running without a live VM; recovering");
    let ran: string[];
    if (done.revision === loaded.revision && done.hooks) {
      // A write conflict started this reconcile over, but the content is what the hooks just ran for
      // (the file was only touched, or rewritten as it was): they are not run twice.
      ran = done.hooks;
    } else {
      this.options.pacer?.ran(name, loaded.revision);
      try {
        const { hooks, noHooks } = await this.options.hooks.current();
        const signal = this.options.signal ?? new AbortController().signal;
        const hookObserver: HookObserver = { hookFinished: (hook, result, seconds) => observer?.hookFinished?.(hook, result, seconds) };
        ({ ran } = await runHooks(hooks, machine, { signal, machineDir, configPath: loaded.path }, hookObserver));
        done.noHooks = noHooks;
      } catch (error) {
        observer?.recoveryFinished?.("error");
        throw new ReconcileError(`${name}: recovery failed: ${(error as Error).message}`, name, error, loaded.revision);
      }
      done.revision = loaded.revision;
      done.hooks = ran;
    }

    // The hooks took time: a VM started meanwhile must not be declared stopped. Nothing was written,
    // so no recovery is counted.
    if ((await this.probe(machineDir, log)).alive) {
      log.info("a VM came up during recovery; leaving the machine running");
      return this.settled(machine, true);
    }

    let saved: LoadedMachine;
    try {
      // Written on what step 1 read (one read per reconcile); a change since is a conflict.
      saved = await handle.updateState("stopped", { basis: loaded });
    } catch (error) {
      if (error instanceof ConflictError) throw error;
      if (error instanceof MachineNotFoundError) {
        // Its directory went away while the hooks ran (a hook may even have made it anew): start over
        // from a fresh read, which finds the machine gone, or the same content, whose hooks have run.
        throw new ConflictError(loaded.path, "its directory was removed or replaced during the recovery");
      }
      observer?.storeWrite?.("error");
      observer?.recoveryFinished?.("error");
      throw new ReconcileError(`${name}: could not persist state "stopped": ${(error as Error).message}`, name, error, loaded.revision);
    }
    observer?.storeWrite?.("success");
    observer?.recoveryFinished?.("success");
    const durationMs = Math.round(performance.now() - started);
    const noHooks = done.noHooks;
    log.info({ hooks: ran, ...(noHooks === undefined ? {} : { no_hooks: noHooks }), duration_ms: durationMs, reason: verdict.reason }, "machine recovered");
    const view = this.observe(saved.machine, false, false);
    return { kind: "recovered", hooks: ran, ...(noHooks === undefined ? {} : { noHooks }), reason: verdict.reason, durationMs, view };
  }

  /** Probes liveness; a probe that cannot tell is counted, and fails the reconcile (pidfile) or counts as alive (daemon). */
  private async probe(machineDir: string, log: Logger): Promise<LivenessResult> {
    let result: LivenessResult;
    try {
      result = await probeLiveness(machineDir, this.options.liveness);
    } catch (error) {
      if (error instanceof LivenessProbeError) this.options.observer?.livenessProbeError?.(error.code ?? "UNKNOWN");
      throw error;
    }
    if (result.probeError !== undefined) this.options.observer?.livenessProbeError?.(result.probeError);
    if (result.warning) log.warn({ reason: result.reason }, result.warning);
    return result;
  }

  private settled(machine: Machine, alive: boolean): ReconcileOutcome {
    return { kind: "healthy", view: this.observe(machine, alive, false) };
  }

  private observe(machine: Machine, alive: boolean, needsRecovery: boolean): MachineView {
    const view: MachineView = { kind: "machine", name: machine.name, machine, alive, needsRecovery };
    this.options.observer?.observed?.(view);
    return view;
  }
}
