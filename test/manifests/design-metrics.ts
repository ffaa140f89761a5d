/**
 * The metric names of DESIGN §7, which dashboards and alert rules may name, and a way to find the
 * metric names used in a PromQL expression.
 */
import { Registry } from "prom-client";
import { registerNodeMetrics } from "../../src/metrics/node-metrics.js";

/** Every `arcbox_` metric of DESIGN §7 with its type. */
export const DESIGN_METRICS: ReadonlyMap<string, "gauge" | "counter" | "histogram"> = new Map([
  ["arcbox_machines", "gauge"],
  ["arcbox_machines_needing_recovery", "gauge"],
  ["arcbox_machine_state", "gauge"],
  ["arcbox_recoveries_total", "counter"],
  ["arcbox_reconcile_total", "counter"],
  ["arcbox_reconcile_errors_total", "counter"],
  ["arcbox_reconcile_duration_seconds", "histogram"],
  ["arcbox_network_hook_runs_total", "counter"],
  ["arcbox_network_hook_duration_seconds", "histogram"],
  ["arcbox_store_writes_total", "counter"],
  ["arcbox_workqueue_depth", "gauge"],
  ["arcbox_workqueue_adds_total", "counter"],
  ["arcbox_workqueue_retries_total", "counter"],
  ["arcbox_workqueue_queue_duration_seconds", "histogram"],
  ["arcbox_workqueue_work_duration_seconds", "histogram"],
  ["arcbox_workqueue_unfinished_work_seconds", "gauge"],
  ["arcbox_workqueue_longest_running_processor_seconds", "gauge"],
  ["arcbox_watch_events_total", "counter"],
  ["arcbox_last_resync_timestamp_seconds", "gauge"],
  ["arcbox_controller_build_info", "gauge"],
  ["arcbox_daemon_up", "gauge"],
  ["arcbox_liveness_probe_errors_total", "counter"],
]);

/** Names of the series a metric exposes: a histogram's `_bucket`, `_sum` and `_count`, else itself. */
function seriesNames(name: string, type: string): string[] {
  return type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

/**
 * Every series name a query may select: the §7 metrics, the process and Node.js metrics the
 * controller exports beside them (not every prom-client default: see node-metrics.ts), and
 * Prometheus' own `up`.
 */
export async function allowedSeriesNames(): Promise<Set<string>> {
  const allowed = new Set<string>(["up"]);
  for (const [name, type] of DESIGN_METRICS) for (const series of seriesNames(name, type)) allowed.add(series);
  const defaults = new Registry();
  registerNodeMetrics(defaults, { eventLoopSampleMs: 100 });
  for (const metric of await defaults.getMetricsAsJSON()) {
    for (const series of seriesNames(metric.name, String(metric.type))) allowed.add(series);
  }
  return allowed;
}

/**
 * The metric names an expression selects: identifiers followed by a `{` label matcher, plus every
 * `arcbox_` identifier (the dashboards' and rules' selectors always carry matchers, so a bare
 * non-arcbox identifier is a function, keyword or label name).
 */
export function selectedMetricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const names = new Set<string>();
  for (const match of withoutStrings.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*\{/g)) names.add(match[1] as string);
  for (const match of withoutStrings.matchAll(/\barcbox_[A-Za-z0-9_:]*/g)) names.add(match[0]);
  return [...names].sort();
}
