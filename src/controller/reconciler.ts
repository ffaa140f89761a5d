/**
 * Reconcile(name): the level-based decision for one machine (DESIGN §2). An event only names a
 * machine; the reconciler reads the disk and decides from what it finds, so running it again is
 * always safe.
 */
import type { Logger } from "pino";
import {
  ConflictError,
  MachineNotFoundError,
  StoreError,
  type LoadedMachine,
  type MachineStore,
} from "../store/index.js";
import type { Machine } from "../store/machine.js";
import { runHooks, type HookObserver, type NetworkHook } from "./hooks.js";
import { probeLiveness, type LivenessMode, type LivenessResult } from "./liveness.js";

/** What the controller observed about one machine; it feeds metrics and the landing page. */
export type MachineView =
  | { kind: "machine"; name: string; machine: Machine; alive: boolean; needsRecovery: boolean }
  | { kind: "invalid"; name: string; error: StoreError }
  | { kind: "gone"; name: string };

/** The outcome of one successful reconcile. Failures are thrown. */
export type ReconcileOutcome =
  | { kind: "healthy"; view: MachineView }
  | { kind: "recovered"; hooks: string[]; view: MachineView }
  | { kind: "pending"; requeueAfterMs: number; view: MachineView }
  | { kind: "invalid"; view: MachineView }
  | { kind: "gone"; view: MachineView };

/** Side channels a reconcile reports to; every member is optional. */
export interface ReconcileObserver extends Partial<HookObserver> {
  /** A machine's observed state changed (or was first seen). */
  observed?(view: MachineView): void;
  recoveryFinished?(result: "success" | "error"): void;
  storeWrite?(result: "success" | "conflict" | "error"): void;
}

export interface ReconcilerOptions {
  store: MachineStore;
  /** Returns the hooks to run for a recovery, in order; called for every recovery so edits to the hooks directory apply at once. */
  hooks: () => Promise<NetworkHook[]>;
  liveness: LivenessMode;
  pidFile: string;
  /** A `running` machine whose config is younger than this and has no live VM is left to boot. */
  startupGraceMs: number;
  /** Aborted at shutdown: running hooks are stopped and the file stays `running`. */
  signal?: AbortSignal;
  observer?: ReconcileObserver;
}

/** Error of a reconcile that could not converge; the queue retries it with backoff. */
export class ReconcileError extends Error {
  override readonly name = "ReconcileError";
  constructor(
    message: string,
    readonly machine: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

/** How often a reconcile starts over after write conflicts before it fails (and backs off). */
const MAX_CONFLICT_RESTARTS = 3;

export class Reconciler {
  /** Invalid files already reported, by machine: their error text, so each distinct problem logs once. */
  private readonly reportedInvalid = new Map<string, string>();

  constructor(private readonly options: ReconcilerOptions) {}

  /**
   * Brings one machine to its desired state (DESIGN §2 steps 1–5). Resolves with what it did;
   * rejects with `ReconcileError` when a hook failed, the store could not write, or conflicts kept
   * recurring. Never writes an invalid file and never overwrites a file changed since it was read.
   */
  async reconcile(name: string, log: Logger): Promise<ReconcileOutcome> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.reconcileOnce(name, log);
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

  private async reconcileOnce(name: string, log: Logger): Promise<ReconcileOutcome> {
    const { store, observer } = this.options;

    // 1. Read and validate.
    let loaded: LoadedMachine;
    try {
      loaded = await store.load(name);
    } catch (error) {
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
    if (this.reportedInvalid.delete(name)) log.info({ path: loaded.path }, "machine config is valid again");

    const { machine } = loaded;
    const machineDir = store.machineDir(name);

    // 2. Not running: nothing to do.
    if (machine.state !== "running") {
      return this.settled(machine, false);
    }

    // 3. Running and alive: nothing to do.
    const liveness = await this.probe(machineDir, log);
    if (liveness.alive) return this.settled(machine, true);

    // 4. Maybe still booting: wait out the grace period, measured from the config's last write.
    if (this.options.liveness === "pidfile" && this.options.startupGraceMs > 0) {
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
    this.observe(machine, false, true);
    const started = performance.now();
    log.debug({ reason: liveness.reason }, "machine is running without a live VM; recovering");
    let ran: string[];
    try {
      const hooks = await this.options.hooks();
      const signal = this.options.signal ?? new AbortController().signal;
      const hookObserver: HookObserver = { hookFinished: (hook, result, seconds) => observer?.hookFinished?.(hook, result, seconds) };
      ({ ran } = await runHooks(hooks, machine, { signal, machineDir, configPath: loaded.path }, hookObserver));
    } catch (error) {
      observer?.recoveryFinished?.("error");
      throw new ReconcileError(`${name}: recovery failed: ${(error as Error).message}`, name, error);
    }

    // The hooks took time: a VM started meanwhile must not be declared stopped.
    if ((await this.probe(machineDir, log)).alive) {
      log.info("a VM came up during recovery; leaving the machine running");
      observer?.recoveryFinished?.("success");
      return this.settled(machine, true);
    }

    let saved: LoadedMachine;
    try {
      saved = await store.updateState(name, "stopped", { ifRevision: loaded.revision });
    } catch (error) {
      if (error instanceof ConflictError) throw error;
      observer?.storeWrite?.("error");
      observer?.recoveryFinished?.("error");
      throw new ReconcileError(`${name}: could not persist state "stopped": ${(error as Error).message}`, name, error);
    }
    observer?.storeWrite?.("success");
    observer?.recoveryFinished?.("success");
    const durationMs = Math.round(performance.now() - started);
    log.info({ hooks: ran, duration_ms: durationMs, reason: liveness.reason }, "machine recovered");
    const view = this.observe(saved.machine, false, false);
    return { kind: "recovered", hooks: ran, view };
  }

  private async probe(machineDir: string, log: Logger): Promise<LivenessResult> {
    const result = await probeLiveness(machineDir, { mode: this.options.liveness, pidFile: this.options.pidFile });
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
