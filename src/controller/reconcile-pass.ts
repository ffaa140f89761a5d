/**
 * One full pass (`arcbox-controller reconcile`): every machine once, no retries, no waiting for
 * grace periods; the totals decide the exit code. With `dryRun`, the same reconciler decides
 * without acting, and the pass reports what it would recover and why.
 */
import PQueue from "p-queue";
import { MachineStore } from "../store/index.js";
import { OverdueCalls } from "../platform/deadline.js";
import { fixedHooks, type HookSupply } from "../host/hooks.js";
import { acquireInstanceLock, type InstanceLock } from "../host/instance-lock.js";
import {
  directoryHookSupply,
  failureFields,
  livenessOptions,
  logHooksNotice,
  logSweepProblem,
  metricsObserver,
  newReconcileId,
  type ControllerOptions,
} from "./controller.js";
import { MachinesDirMissingError, machinesDirState } from "./machines-dir.js";
import { Reconciler, type ReconcileOutcome } from "./reconciler.js";
import { listMachineNames } from "./sources.js";

/** Totals of one `reconcile` pass (`-o json` prints this object). */
export interface PassSummary {
  machines: number;
  recovered: number;
  errors: number;
  invalid: number;
  pending: number;
  duration_ms: number;
  /** The signal that interrupted the pass (it then stopped early: see `skipped`), or null. */
  interrupted: NodeJS.Signals | null;
  /** Machines not reconciled because the pass was interrupted (their hooks stopped, or never started). */
  skipped: number;
  /** Only in a dry run: the machines a real pass would recover now, and why. */
  would_recover?: Array<{ name: string; reason: string }>;
}

export interface PassOptions extends ControllerOptions {
  /** Decide, print the plan, act on nothing: no hook runs, nothing is written, no lock is taken. */
  dryRun?: boolean;
  /** Called after each machine, for progress display. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * One full pass over every machine: each machine is reconciled once, failed hooks are not retried,
 * and machines inside their startup grace count as pending. A real pass takes the single-instance
 * lock like the service and removes leftover temp files first; a dry run does neither.
 *
 * SIGINT or SIGTERM interrupts the pass: no further machine starts, running hooks are stopped (their
 * machines stay `running`), and the summary names the signal and counts the skipped machines.
 *
 * Errors of single machines are counted, not thrown. A dry run fails exactly where a real pass would.
 * Throws `HooksDirectoryError` when the hooks directory cannot be used (a named one missing, any one
 * untrusted), `MachinesDirMissingError`, `LockHeldError` when another controller holds the lock, and
 * `StoreIoError`/`LockError` when the machines directory cannot be used.
 */
export async function reconcileOnce(options: PassOptions): Promise<PassSummary> {
  const { config, logger, metrics } = options;
  const dryRun = options.dryRun ?? false;
  const calls = options.calls ?? new OverdueCalls();
  const started = performance.now();
  if ((await machinesDirState(config.machinesDir)) === "missing") throw new MachinesDirMissingError(config.machinesDir);
  const hooks = await passHooks({ ...options, calls });
  const lock: InstanceLock | undefined = dryRun ? undefined : await acquireInstanceLock(config.machinesDir);
  const abort = new AbortController();
  let interrupted: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    abort.abort();
  };
  process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  try {
    // Each file is read once: nothing reads back what the pass writes.
    const store = new MachineStore({ dir: config.machinesDir, rememberWrites: false, calls });
    if (!dryRun) {
      const swept = await store.sweepTempFiles({ onProblem: (problem) => logSweepProblem(logger, problem) });
      for (const path of swept) logger.info({ path }, "removed leftover temp file");
    }
    const reconciler = new Reconciler({
      store,
      hooks,
      liveness: { ...livenessOptions(config), calls },
      startupGraceMs: config.startupGraceMs,
      signal: abort.signal,
      observer: metricsObserver(metrics),
      dryRun,
    });
    const names = await listMachineNames(config.machinesDir, { calls });
    const summary: PassSummary = { machines: 0, recovered: 0, errors: 0, invalid: 0, pending: 0, duration_ms: 0, interrupted: null, skipped: 0 };
    const plan: Array<{ name: string; reason: string }> = [];
    let done = 0;
    const pool = new PQueue({ concurrency: config.workers });
    await pool.addAll(
      names.map((name) => async () => {
        if (abort.signal.aborted) {
          summary.skipped++;
          return;
        }
        const log = logger.child({ machine: name, reconcile_id: newReconcileId() });
        let outcome: ReconcileOutcome;
        try {
          outcome = await reconciler.reconcile(name, log);
        } catch (error) {
          if (abort.signal.aborted) {
            summary.skipped++;
          } else {
            summary.errors++;
            summary.machines++;
            log.error(failureFields(error), "reconcile failed");
          }
          return;
        } finally {
          options.onProgress?.(++done, names.length);
        }
        if (outcome.kind !== "gone") summary.machines++;
        if (outcome.kind === "recovered") summary.recovered++;
        if (outcome.kind === "invalid") summary.invalid++;
        if (outcome.kind === "pending") summary.pending++;
        if (outcome.kind === "wouldRecover") plan.push({ name, reason: outcome.reason });
      }),
    );
    summary.duration_ms = Math.round(performance.now() - started);
    summary.interrupted = interrupted;
    if (dryRun) summary.would_recover = plan.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return summary;
  } finally {
    process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
    lock?.release();
  }
}

/** The hooks of the pass: the in-process ones, the caller's checked supply, or `hooks_dir` checked now (throws as the check). */
async function passHooks(options: PassOptions): Promise<HookSupply> {
  const given = options.hooks;
  if (Array.isArray(given)) return fixedHooks(given);
  if (given !== undefined) return given;
  const supply = directoryHookSupply(options);
  logHooksNotice(options.logger, await supply.check());
  return supply;
}
