import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { stringify as stringifyYaml } from "yaml";
import { z } from "zod";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";
import { runTool } from "../helpers/tools.js";
import { allowedSeriesNames, DOCUMENTED_METRICS, selectedMetricNames } from "./design-metrics.js";

const dashboardPath = fileURLToPath(new URL("../../manifests/grafana/arcbox-controller.json", import.meta.url));

const datasourceRef = z.object({ type: z.literal("prometheus"), uid: z.literal("${datasource}") });
const valueMapping = z.object({ type: z.literal("value"), options: z.record(z.string(), z.object({ text: z.string(), color: z.string().optional() })) });
const panelSchema = z.object({
  id: z.number(),
  type: z.string(),
  title: z.string().min(1),
  description: z.string().optional(),
  datasource: datasourceRef.optional(),
  gridPos: z.object({ h: z.number(), w: z.number(), x: z.number(), y: z.number() }),
  fieldConfig: z.object({ defaults: z.object({ mappings: z.array(valueMapping).optional() }).loose() }).loose().optional(),
  targets: z
    .array(z.object({ refId: z.string(), expr: z.string().min(1), datasource: datasourceRef }))
    .optional(),
});
const dashboardSchema = z.object({
  uid: z.string().min(1),
  title: z.string().min(1),
  schemaVersion: z.number(),
  panels: z.array(panelSchema),
  templating: z.object({
    list: z.array(z.object({ name: z.string(), type: z.string(), query: z.unknown().optional() })),
  }),
});
type Dashboard = z.infer<typeof dashboardSchema>;

async function loadDashboard(): Promise<Dashboard> {
  return dashboardSchema.parse(JSON.parse(await readFile(dashboardPath, "utf8")));
}

/** Every query of the dashboard, named after its panel. */
function queries(dashboard: Dashboard): Array<{ where: string; expr: string }> {
  return dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `panel ${panel.id} "${panel.title}" ${target.refId}`, expr: target.expr })),
  );
}

/** Replaces Grafana's variables with values Prometheus accepts, as Grafana does before querying. */
function substituteVariables(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__interval", "1m")
    .replaceAll("$__range", "1h")
    .replaceAll('"$instance"', '".*"');
}

describe("manifests/grafana/arcbox-controller.json", () => {
  it("is a dashboard whose panels all query the ${datasource} variable", async () => {
    const dashboard = await loadDashboard();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const variables = new Map(dashboard.templating.list.map((variable) => [variable.name, variable]));
    expect(variables.get("datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(variables.get("instance")).toMatchObject({ type: "query" });
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size, "panel ids must be unique").toBe(ids.length);
    for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
      expect(panel.datasource, `panel "${panel.title}" has no datasource`).toBeDefined();
      expect(panel.targets?.length ?? 0, `panel "${panel.title}" has no query`).toBeGreaterThan(0);
    }
  });

  it("queries only metrics of docs/design.md#metrics (and prom-client defaults), filtered by $instance", async () => {
    const allowed = await allowedSeriesNames();
    for (const { where, expr } of queries(await loadDashboard())) {
      const names = selectedMetricNames(expr);
      expect(names.length, `${where} selects no metric`).toBeGreaterThan(0);
      for (const name of names) expect(allowed.has(name), `${where}: ${name} is not in docs/design.md#metrics`).toBe(true);
      const selectors = expr.match(/\{[^}]*\}/g) ?? [];
      for (const selector of selectors) expect(selector, `${where} ignores $instance`).toContain('instance=~"$instance"');
    }
  });

  it("shows every arcbox_ metric of docs/design.md#metrics somewhere", async () => {
    const used = new Set(queries(await loadDashboard()).flatMap(({ expr }) => selectedMetricNames(expr)));
    const missing = [...DOCUMENTED_METRICS]
      .filter(([name, type]) => !used.has(type === "histogram" ? `${name}_bucket` : name))
      .map(([name]) => name);
    expect(missing).toEqual([]);
  });

  it("lays every panel out on the 24-column grid without overlaps", async () => {
    const panels = (await loadDashboard()).panels;
    const cells = new Map<string, string>();
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos;
      expect(x + w, `panel "${panel.title}" is wider than the grid`).toBeLessThanOrEqual(24);
      for (let row = y; row < y + h; row += 1) {
        for (let column = x; column < x + w; column += 1) {
          const other = cells.get(`${row}:${column}`);
          expect(other, `panel "${panel.title}" overlaps "${other}"`).toBeUndefined();
          cells.set(`${row}:${column}`, panel.title);
        }
      }
    }
    // Panels are listed in reading order, as Grafana saves them.
    const order = panels.map((panel) => panel.gridPos.y * 24 + panel.gridPos.x);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it("shows the arcbox daemon as up or down, what its being down leaves running, and failed probes", async () => {
    const dashboard = await loadDashboard();
    const selecting = (name: string) =>
      dashboard.panels.filter((panel) => (panel.targets ?? []).some((target) => selectedMetricNames(target.expr).includes(name)));
    const daemonPanel = selecting("arcbox_daemon_up").find((panel) => panel.type === "state-timeline");
    expect(daemonPanel, "no state timeline of arcbox_daemon_up").toBeDefined();
    const mapped = Object.fromEntries(
      (daemonPanel?.fieldConfig?.defaults.mappings ?? []).flatMap((mapping) => Object.entries(mapping.options).map(([value, { text }]) => [value, text])),
    );
    expect(mapped).toEqual({ 0: "down", 1: "up" });
    // What ArcboxDaemonDownWithRunningMachines looks at: running machines while the daemon is down.
    const leftRunning = queries(dashboard).filter(
      ({ expr }) => expr.includes('state="running"') && /arcbox_daemon_up\{[^}]*\} == 0/.test(expr) && selectedMetricNames(expr).includes("arcbox_machines"),
    );
    expect(leftRunning.map(({ where }) => where), "no panel shows the running machines while the daemon is down").toHaveLength(1);
    expect(selecting("arcbox_liveness_probe_errors_total").map((panel) => panel.type)).toEqual(["timeseries"]);
  });

  it("computes latency quantiles from _bucket rates grouped by le", async () => {
    const histograms = queries(await loadDashboard()).filter(({ expr }) => expr.includes("histogram_quantile"));
    expect(histograms.length).toBeGreaterThanOrEqual(6);
    for (const { where, expr } of histograms) {
      expect(expr, where).toMatch(/histogram_quantile\(0\.\d+, sum by \((?:\w+, )*le\) \(rate\(arcbox_\w+_bucket\{/);
    }
  });

  requireToolOrSkip("promtool", "every query parses as PromQL (`promtool check rules`)", async (promtool) => {
    const rules = queries(await loadDashboard()).map(({ expr }, index) => ({
      record: `arcbox_dashboard:query_${index}`,
      expr: substituteVariables(expr),
    }));
    const dir = await makeTempDir("grafana-queries");
    try {
      await writeFile(path.join(dir, "queries.yml"), stringifyYaml({ groups: [{ name: "dashboard", rules }] }));
      const run = await runTool(promtool, ["check", "rules", "queries.yml"], { cwd: dir });
      expect(run.code, run.report).toBe(0);
      expect(run.stdout, run.report).toContain(`SUCCESS: ${rules.length} rules found`);
    } finally {
      await removeTempDir(dir);
    }
  });
});
