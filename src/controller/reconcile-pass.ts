/**
 * One full reconcile pass (`arcbox-controller reconcile`): every machine once, no retries, no
 * waiting for grace periods; the totals decide the exit code.
 */
import PQueue from "p-queue";
import { MachineStore } from "../store/index.js";
import { failureFields, hookSource, livenessOptions, logSweepProblem, metricsObserver, newReconcileId, type ControllerOptions } from "./controller.js";
import { acquireInstanceLock } from "../host/instance-lock.js";
import { Reconciler, type ReconcileOutcome } from "./reconciler.js";
import { listMachineNames } from "./sources.js";

/** Totals of one `reconcile` pass. */
export interface PassSummary {
  machines: number;
  recovered: number;
  errors: number;
  invalid: number;
  pending: number;
  duration_ms: number;
}

export interface PassOptions extends ControllerOptions {
  /** Called after each machine, for progress display. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * One full pass over every machine (`arcbox-controller reconcile`): each machine is reconciled once,
 * failed hooks are not retried, and machines inside their startup grace count as pending.
 * Takes the single-instance lock like the service. Errors are counted, not thrown, except for the
 * lock and an unreadable machines directory.
 */
export async function reconcileOnce(options: PassOptions): Promise<PassSummary> {
  const { config, logger, metrics } = options;
  const started = performance.now();
  const lock = await acquireInstanceLock(config.machinesDir);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  try {
    const store = new MachineStore({ dir: config.machinesDir });
    const swept = await store.sweepTempFiles({ onProblem: (problem) => logSweepProblem(logger, problem) });
    for (const path of swept) logger.info({ path }, "removed leftover temp file");
    const reconciler = new Reconciler({
      store,
      hooks: hookSource(options),
      liveness: livenessOptions(config),
      startupGraceMs: config.startupGraceMs,
      signal: abort.signal,
      observer: metricsObserver(metrics),
    });
    const names = await listMachineNames(config.machinesDir);
    const summary: PassSummary = { machines: 0, recovered: 0, errors: 0, invalid: 0, pending: 0, duration_ms: 0 };
    let done = 0;
    const pool = new PQueue({ concurrency: config.workers });
    await pool.addAll(
      names.map((name) => async () => {
        const log = logger.child({ machine: name, reconcile_id: newReconcileId() });
        let outcome: ReconcileOutcome | null = null;
        try {
          outcome = abort.signal.aborted ? null : await reconciler.reconcile(name, log);
        } catch (error) {
          summary.errors++;
          summary.machines++;
          log.error(failureFields(error), "reconcile failed");
        }
        if (outcome) {
          if (outcome.kind !== "gone") summary.machines++;
          if (outcome.kind === "recovered") summary.recovered++;
          if (outcome.kind === "invalid") summary.invalid++;
          if (outcome.kind === "pending") summary.pending++;
        }
        options.onProgress?.(++done, names.length);
      }),
    );
    summary.duration_ms = Math.round(performance.now() - started);
    return summary;
  } finally {
    process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
    lock.release();
  }
}
