import { copyFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";
import { runTool } from "../helpers/tools.js";
import { allowedSeriesNames, selectedMetricNames } from "./design-metrics.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const prometheusDir = path.join(repoRoot, "manifests/prometheus");

const scrapeSchema = z.object({
  global: z.object({ scrape_interval: z.string(), evaluation_interval: z.string() }),
  rule_files: z.array(z.string()),
  scrape_configs: z.array(
    z.object({
      job_name: z.string(),
      scrape_interval: z.string().optional(),
      metrics_path: z.string().optional(),
      static_configs: z.array(z.object({ targets: z.array(z.string()) })),
    }),
  ),
});

const alertRuleSchema = z.object({
  alert: z.string(),
  expr: z.string(),
  for: z.string().optional(),
  labels: z.object({ severity: z.enum(["critical", "warning"]) }),
  annotations: z.object({ summary: z.string().min(1), description: z.string().min(1), runbook: z.string().min(1) }),
});
const alertsSchema = z.object({ groups: z.array(z.object({ name: z.string(), rules: z.array(alertRuleSchema) })) });

const ruleTestsSchema = z.object({
  rule_files: z.array(z.string()),
  tests: z.array(
    z.object({
      alert_rule_test: z
        .array(z.object({ alertname: z.string(), eval_time: z.string(), exp_alerts: z.array(z.unknown()).optional() }))
        .optional(),
    }),
  ),
});

/** The alerts the operations guide documents; the rules file must define exactly these. */
const EXPECTED_ALERTS = [
  "ArcboxControllerDown",
  "ArcboxRecoveriesFailing",
  "ArcboxReconcileErrorRatioHigh",
  "ArcboxMachinesNeedingRecovery",
  "ArcboxDaemonDownWithRunningMachines",
  "ArcboxLivenessProbeErrors",
  "ArcboxPathNotAnswering",
  "ArcboxInvalidMachineConfigs",
  "ArcboxWorkQueueBacklog",
  "ArcboxWorkQueueStuck",
  "ArcboxResyncStale",
  "ArcboxWatchErrors",
];

async function readYaml<T>(file: string, schema: z.ZodType<T>): Promise<T> {
  return schema.parse(parseYaml(await readFile(file, "utf8")));
}

/** Copies the Prometheus manifests into a fresh temp dir (so relative rule_files resolve there). */
async function copyManifests(): Promise<string> {
  const dir = await makeTempDir("prometheus-manifests");
  for (const name of ["scrape.yml", "alerts.yml", "alerts.test.yml"]) {
    await copyFile(path.join(prometheusDir, name), path.join(dir, name));
  }
  return dir;
}

describe("manifests/prometheus with promtool", () => {
  requireToolOrSkip("promtool", "scrape.yml passes `promtool check config` as a whole prometheus.yml", async (promtool) => {
    const dir = await copyManifests();
    try {
      const run = await runTool(promtool, ["check", "config", "scrape.yml"], { cwd: dir });
      expect(run.code, run.report).toBe(0);
      expect(run.stdout, run.report).toContain("1 rule files found");
    } finally {
      await removeTempDir(dir);
    }
  });

  requireToolOrSkip("promtool", "alerts.yml passes `promtool check rules`", async (promtool) => {
    const run = await runTool(promtool, ["check", "rules", "alerts.yml"], { cwd: prometheusDir });
    expect(run.code, run.report).toBe(0);
    expect(run.stdout, run.report).toContain(`SUCCESS: ${EXPECTED_ALERTS.length} rules found`);
  });

  requireToolOrSkip("promtool", "alerts.test.yml passes `promtool test rules`", async (promtool) => {
    const run = await runTool(promtool, ["test", "rules", "alerts.test.yml"], { cwd: prometheusDir });
    expect(run.code, run.report).toBe(0);
  });

  requireToolOrSkip("promtool", "the rule tests catch a rule that fires too early", async (promtool) => {
    const dir = await copyManifests();
    try {
      const rules = await readFile(path.join(dir, "alerts.yml"), "utf8");
      // ArcboxControllerDown's `for: 5m` is the first `for:` in the file.
      const weakened = rules.replace(/\n {8}for: 5m\n/, "\n        for: 1m\n");
      expect(weakened).not.toBe(rules);
      await writeFile(path.join(dir, "alerts.yml"), weakened);
      const run = await runTool(promtool, ["test", "rules", "alerts.test.yml"], { cwd: dir });
      expect(run.code, run.report).not.toBe(0);
      expect(run.stdout + run.stderr, run.report).toContain("alertname: ArcboxControllerDown");
    } finally {
      await removeTempDir(dir);
    }
  });
});

describe("manifests/prometheus structure", () => {
  it("scrape.yml scrapes the controller's default listen address every 15s and loads alerts.yml", async () => {
    const scrape = await readYaml(path.join(prometheusDir, "scrape.yml"), scrapeSchema);
    const example = parseToml(await readFile(path.join(repoRoot, "manifests/examples/controller.toml"), "utf8"));
    const job = scrape.scrape_configs.find((config) => config.job_name === "arcbox-controller");
    expect(job, "no scrape job named arcbox-controller").toBeDefined();
    expect(job?.scrape_interval).toBe("15s");
    expect(job?.metrics_path ?? "/metrics").toBe("/metrics");
    expect(job?.static_configs.flatMap((config) => config.targets)).toEqual([example.listen]);
    expect(example.listen).toBe("127.0.0.1:9464");
    expect(scrape.rule_files).toEqual(["alerts.yml"]);
  });

  it("defines exactly the documented alerts, each with a severity and operator annotations", async () => {
    const alerts = await readYaml(path.join(prometheusDir, "alerts.yml"), alertsSchema);
    const rules = alerts.groups.flatMap((group) => group.rules);
    expect(rules.map((rule) => rule.alert).sort()).toEqual([...EXPECTED_ALERTS].sort());
    for (const rule of rules) {
      expect(rule.annotations.runbook, `${rule.alert}: the runbook should give numbered steps`).toMatch(/^1\. /);
    }
  });

  it("alert expressions select only metrics of docs/design.md#metrics, prom-client defaults and up", async () => {
    const allowed = await allowedSeriesNames();
    const alerts = await readYaml(path.join(prometheusDir, "alerts.yml"), alertsSchema);
    const used = new Set<string>();
    for (const rule of alerts.groups.flatMap((group) => group.rules)) {
      const names = selectedMetricNames(rule.expr);
      expect(names.length, `${rule.alert} selects no metric`).toBeGreaterThan(0);
      for (const name of names) {
        expect(allowed.has(name), `${rule.alert}: ${name} is not a metric of docs/design.md#metrics`).toBe(true);
        used.add(name);
      }
    }
    expect([...used]).toEqual(expect.arrayContaining(["arcbox_last_resync_timestamp_seconds", "arcbox_daemon_up", "arcbox_liveness_probe_errors_total"]));
  });

  it("alerts.test.yml tests every alert both firing and not firing", async () => {
    const alerts = await readYaml(path.join(prometheusDir, "alerts.yml"), alertsSchema);
    const tests = await readYaml(path.join(prometheusDir, "alerts.test.yml"), ruleTestsSchema);
    expect(tests.rule_files).toEqual(["alerts.yml"]);
    const cases = tests.tests.flatMap((group) => group.alert_rule_test ?? []);
    for (const rule of alerts.groups.flatMap((group) => group.rules)) {
      const own = cases.filter((testCase) => testCase.alertname === rule.alert);
      const firing = own.filter((testCase) => (testCase.exp_alerts ?? []).length > 0);
      const silent = own.filter((testCase) => (testCase.exp_alerts ?? []).length === 0);
      expect(firing.length, `${rule.alert} has no firing test`).toBeGreaterThan(0);
      expect(silent.length, `${rule.alert} has no not-firing test`).toBeGreaterThan(0);
    }
  });
});
