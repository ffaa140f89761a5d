/**
 * The metric names of docs/design.md#metrics, which dashboards and alert rules may name (read from
 * its table, the contract), and a way to find the metric names used in a PromQL expression.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { registerNodeMetrics } from "../../src/metrics/node-metrics.js";

type MetricType = "gauge" | "counter" | "histogram";

/** The rows `| `name` | type | …` of the metrics table in docs/design.md, in order. */
export function documentedMetrics(markdown: string): Map<string, MetricType> {
  const section = markdown.split('<a id="metrics"></a>')[1]?.split('<a id="endpoints"></a>')[0] ?? "";
  const metrics = new Map<string, MetricType>();
  for (const match of section.matchAll(/^\| `(arcbox_[a-z0-9_]+)` \| (gauge|counter|histogram)\b/gm)) metrics.set(match[1]!, match[2] as MetricType);
  return metrics;
}

/** Every `arcbox_` metric of docs/design.md#metrics with its type. */
export const DOCUMENTED_METRICS: ReadonlyMap<string, MetricType> = documentedMetrics(
  readFileSync(fileURLToPath(new URL("../../docs/design.md", import.meta.url)), "utf8"),
);

/** Names of the series a metric exposes: a histogram's `_bucket`, `_sum` and `_count`, else itself. */
function seriesNames(name: string, type: string): string[] {
  return type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

/**
 * Every series name a query may select: the documented metrics, the process and Node.js metrics the
 * controller exports beside them (not every prom-client default: see node-metrics.ts), and
 * Prometheus' own `up`.
 */
export async function allowedSeriesNames(): Promise<Set<string>> {
  const allowed = new Set<string>(["up"]);
  for (const [name, type] of DOCUMENTED_METRICS) for (const series of seriesNames(name, type)) allowed.add(series);
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
