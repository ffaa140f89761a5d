/**
 * `arcbox-controller reconcile`: one full pass over every machine, then exit (DESIGN §5).
 * Exit 0 when every machine converged, 1 when a reconcile failed or a config is invalid,
 * 2 on a usage or configuration error (including another controller holding the lock).
 */
import type { ControllerConfig } from "../controller/config.js";
import { reconcileOnce, type PassSummary } from "../controller/reconcile-pass.js";
import { LockHeldError } from "../host/instance-lock.js";
import { createLogger } from "../log.js";
import { ControllerMetrics } from "../metrics/controller-metrics.js";
import { VERSION } from "../version.js";
import { machinesDirTrusted } from "./trust-check.js";

/** Passes shorter than this show no progress line. */
const PROGRESS_AFTER_MS = 1000;

export async function runReconcile(config: ControllerConfig, output: "text" | "json"): Promise<number> {
  // stdout carries the summary (a script parses it); the log goes to stderr.
  const logger = createLogger(config.logLevel, 2);
  const metrics = new ControllerMetrics({ perMachineMetrics: false, version: VERSION, daemonLiveness: config.liveness === "daemon" });
  if (!(await machinesDirTrusted(config, logger))) return 2;
  const progress = process.stderr.isTTY ? progressLine() : undefined;
  let summary: PassSummary;
  try {
    summary = await reconcileOnce({ config, logger, metrics, onProgress: progress?.update });
  } catch (error) {
    progress?.clear();
    if (error instanceof LockHeldError) {
      process.stderr.write(`arcbox-controller: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`arcbox-controller: reconcile failed: ${(error as Error).message}\n`);
    return 1;
  }
  progress?.clear();
  process.stdout.write(output === "json" ? `${JSON.stringify(summary)}\n` : `${formatSummary(summary)}\n`);
  return summary.errors > 0 || summary.invalid > 0 ? 1 : 0;
}

/** `reconciled 6 machines in 42ms: 2 recovered, 0 errors, 1 invalid, 0 pending` */
export function formatSummary(s: PassSummary): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  return `reconciled ${plural(s.machines, "machine")} in ${s.duration_ms}ms: ${s.recovered} recovered, ${plural(s.errors, "error")}, ${s.invalid} invalid, ${s.pending} pending`;
}

/** A single self-rewriting line on the terminal, shown once a pass takes longer than a second. */
function progressLine(): { update: (done: number, total: number) => void; clear: () => void } {
  const started = Date.now();
  let shown = false;
  let last = 0;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - started < PROGRESS_AFTER_MS || (now - last < 100 && done < total)) return;
      last = now;
      shown = true;
      process.stderr.write(`\rreconciling: ${done}/${total} machines`);
    },
    clear() {
      if (shown) process.stderr.write("\r\x1b[K");
    },
  };
}
