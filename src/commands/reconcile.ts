/**
 * `arcbox-controller reconcile`: one full pass over every machine, then exit (docs/design.md#cli).
 * Exit 0 when every machine converged, 1 when a reconcile failed or a config is invalid,
 * 2 on a usage or configuration error (a machines or hooks directory that is missing or unusable),
 * 75 when another controller holds the lock, 128+n when interrupted by signal n (130 SIGINT, 143 SIGTERM).
 * `--dry-run`: exit 0 when nothing would be recovered, 1 otherwise.
 */
import { constants } from "node:os";
import type { ControllerConfig } from "../controller/config.js";
import { reconcileOnce, type PassSummary } from "../controller/reconcile-pass.js";
import { createLogger } from "../log.js";
import { ControllerMetrics } from "../metrics/controller-metrics.js";
import { escapeText } from "../platform/escape-text.js";
import { VERSION } from "../version.js";
import { LockHeldError } from "../host/instance-lock.js";
import { EXIT_CONFIG_ERROR, EXIT_LOCK_HELD } from "./exit-codes.js";
import { messageLine } from "./message-line.js";
import { OverdueCalls } from "../platform/deadline.js";
import { machinesDirTrusted } from "./trust-check.js";

/** Passes shorter than this show no progress line. */
const PROGRESS_AFTER_MS = 1000;

export async function runReconcile(config: ControllerConfig, output: "text" | "json", dryRun = false): Promise<number> {
  // stdout carries the summary (a script parses it); the log goes to stderr.
  const logger = createLogger({ level: config.logLevel, format: config.logFormat, fd: 2 });
  const metrics = new ControllerMetrics({ perMachineMetrics: false, version: VERSION, daemonLiveness: config.liveness === "daemon" });
  // Deadlines of the calls on paths others control, shared by every step (docs/design.md#hung-mounts).
  const calls = new OverdueCalls();
  if (!(await machinesDirTrusted(config, logger, calls))) return EXIT_CONFIG_ERROR;
  const progress = process.stderr.isTTY ? progressLine() : undefined;
  let summary: PassSummary;
  try {
    summary = await reconcileOnce({ config, logger, metrics, dryRun, calls, onProgress: progress?.update });
  } catch (error) {
    // Nothing was reconciled: the lock is held by another controller, or a directory is unusable.
    progress?.clear();
    process.stderr.write(messageLine((error as Error).message));
    return error instanceof LockHeldError ? EXIT_LOCK_HELD : EXIT_CONFIG_ERROR;
  }
  progress?.clear();
  process.stdout.write(output === "json" ? `${JSON.stringify(summary)}\n` : formatReport(summary));
  if (summary.interrupted !== null) return 128 + constants.signals[summary.interrupted];
  if (dryRun) return (summary.would_recover?.length ?? 0) > 0 ? 1 : 0;
  return summary.errors > 0 || summary.invalid > 0 ? 1 : 0;
}

/** The text output: a dry run's plan (one line per machine it would recover), then the summary line. */
export function formatReport(s: PassSummary): string {
  const line = (entry: { name: string; reason: string }) => `would recover ${escapeText(entry.name)}: ${escapeText(entry.reason)}\n`;
  const plan = (s.would_recover ?? []).map(line).join("");
  return `${plan}${formatSummary(s)}\n`;
}

/**
 * `reconciled 6 machines in 42ms: 2 recovered, 0 errors, 1 invalid, 0 pending`; a dry run says
 * `dry run: 6 machines in 5ms: 2 would be recovered, …`; an interrupted pass ends with what it skipped.
 */
export function formatSummary(s: PassSummary): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const head = s.would_recover
    ? `dry run: ${plural(s.machines, "machine")} in ${s.duration_ms}ms: ${s.would_recover.length} would be recovered`
    : `reconciled ${plural(s.machines, "machine")} in ${s.duration_ms}ms: ${s.recovered} recovered`;
  const tail = s.interrupted === null ? "" : `; interrupted by ${s.interrupted}, ${s.skipped} not reconciled`;
  return `${head}, ${plural(s.errors, "error")}, ${s.invalid} invalid, ${s.pending} pending${tail}`;
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
