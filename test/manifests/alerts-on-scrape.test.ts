/**
 * The daemon alerts evaluated on what a real controller exports: the built CLI runs with daemon
 * liveness, its /metrics scrape becomes promtool's input series (as Prometheus would store it
 * under the scrape job's labels), and `promtool test rules` evaluates the alert expressions of
 * alerts.yml on them. The rule tests in alerts.test.yml check the timing; this checks that the
 * expressions select the series, labels and values the controller really has.
 */
import { copyFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { z } from "zod";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { runTool } from "../helpers/tools.js";
import { parseExposition, valueOf, type Exposition } from "../metrics/exposition-parser.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const alertsPath = path.join(repoRoot, "manifests/prometheus/alerts.yml");
const JOB = "arcbox-controller";

const alertsSchema = z.object({ groups: z.array(z.object({ rules: z.array(z.object({ alert: z.string(), expr: z.string() })) })) });

async function alertExpr(name: string): Promise<string> {
  const rules = alertsSchema.parse(parseYaml(await readFile(alertsPath, "utf8"))).groups.flatMap((group) => group.rules);
  const rule = rules.find((candidate) => candidate.alert === name);
  if (rule === undefined) throw new Error(`alerts.yml has no alert ${name}`);
  return rule.expr;
}

async function scrape(controller: RunningController): Promise<Exposition> {
  return parseExposition(await (await fetch(`http://${controller.address}/metrics`)).text());
}

/** PromQL label matchers for `labels`, sorted by name as promtool prints them. */
function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return `{${pairs.map(([name, value]) => `${name}=${JSON.stringify(value)}`).join(", ")}}`;
}

/** Every arcbox_ sample of the scrape as a promtool input series, constant for 15 minutes. */
function inputSeries(exposition: Exposition, instance: string): Array<{ series: string; values: string }> {
  return exposition.samples
    .filter((sample) => sample.name.startsWith("arcbox_"))
    .map((sample) => ({
      series: `${sample.name}${labelText({ ...sample.labels, job: JOB, instance })}`,
      values: `${sample.value}x15`,
    }));
}

interface ExpectedResult {
  expr: string;
  samples: Array<{ labels: Record<string, string>; value: number }>;
}

/** Runs promtool on the scraped series: each expression, at minute 10, must give exactly `samples`. */
async function expectResults(promtool: string, exposition: Exposition, instance: string, expected: ExpectedResult[]): Promise<void> {
  const dir = await makeTempDir("alerts-on-scrape");
  try {
    await copyFile(alertsPath, path.join(dir, "alerts.yml"));
    const tests = {
      rule_files: ["alerts.yml"],
      evaluation_interval: "1m",
      tests: [
        {
          interval: "1m",
          input_series: inputSeries(exposition, instance),
          promql_expr_test: expected.map(({ expr, samples }) => ({
            expr,
            eval_time: "10m",
            exp_samples: samples.map(({ labels, value }) => ({ labels: labelText(labels), value })),
          })),
        },
      ],
    };
    await writeFile(path.join(dir, "scrape.test.yml"), stringifyYaml(tests));
    const run = await runTool(promtool, ["test", "rules", "scrape.test.yml"], { cwd: dir });
    expect(run.code, run.report).toBe(0);
  } finally {
    await removeTempDir(dir);
  }
}

describe("daemon alerts on a real controller's scrape", () => {
  /**
   * A controller on `<dir>/arcbox` with one machine persisted as running and a hook that fails,
   * so the machine cannot be recovered; `daemon` holds `<dir>/arcbox/run/daemon.lock` when wanted.
   */
  async function setUp(withDaemon: boolean): Promise<{ dir: string; controller: RunningController; daemon?: StandInDaemon }> {
    const dir = await makeTempDir("alerts-on-scrape-host");
    const machinesDir = path.join(dir, "arcbox/machines");
    await writeMachine(machinesDir, "web", machineToml("web"));
    await writeHook(path.join(dir, "hooks"), "10-bridge", "echo 'cannot attach tap' >&2; exit 1");
    await writeFile(path.join(dir, "controller.toml"), "");
    const daemon = withDaemon ? await startStandInDaemon(path.join(dir, "arcbox/run/daemon.lock")) : undefined;
    const controller = await startControllerProcess([
      "-c", path.join(dir, "controller.toml"),
      "-d", machinesDir,
      "--hooks-dir", path.join(dir, "hooks"),
      "--listen", "127.0.0.1:0",
    ]);
    return { dir, controller, ...(daemon === undefined ? {} : { daemon }) };
  }

  requireToolOrSkip("promtool", "daemon down and a recovery failing: ArcboxDaemonDownWithRunningMachines matches, ArcboxMachinesNeedingRecovery stays out of it", async (promtool) => {
    const { dir, controller } = await setUp(false);
    try {
      const exposition = await waitFor(async () => {
        const scraped = await scrape(controller);
        return valueOf(scraped, "arcbox_recoveries_total", { result: "error" }) >= 1 ? scraped : undefined;
      }, "a failed recovery");
      expect(valueOf(exposition, "arcbox_daemon_up")).toBe(0);
      const instance = controller.address;
      await expectResults(promtool, exposition, instance, [
        { expr: await alertExpr("ArcboxDaemonDownWithRunningMachines"), samples: [{ labels: { job: JOB, instance }, value: 1 }] },
        // The machine does need recovery; the alert leaves that to the daemon alert.
        { expr: "arcbox_machines_needing_recovery > 0", samples: [{ labels: { __name__: "arcbox_machines_needing_recovery", job: JOB, instance }, value: 1 }] },
        { expr: await alertExpr("ArcboxMachinesNeedingRecovery"), samples: [] },
      ]);
    } finally {
      await controller.stop();
      await removeTempDir(dir);
    }
  });

  requireToolOrSkip("promtool", "daemon up: neither alert matches the running machine", async (promtool) => {
    const { dir, controller, daemon } = await setUp(true);
    try {
      const exposition = await waitFor(async () => {
        const scraped = await scrape(controller);
        const settled = valueOf(scraped, "arcbox_daemon_up") === 1 && valueOf(scraped, "arcbox_reconcile_total", { result: "success" }) >= 1;
        return settled ? scraped : undefined;
      }, "the running machine reconciled with the daemon up");
      expect(valueOf(exposition, "arcbox_machines", { state: "running" })).toBe(1);
      const instance = controller.address;
      await expectResults(promtool, exposition, instance, [
        { expr: await alertExpr("ArcboxDaemonDownWithRunningMachines"), samples: [] },
        { expr: await alertExpr("ArcboxMachinesNeedingRecovery"), samples: [] },
        { expr: await alertExpr("ArcboxLivenessProbeErrors"), samples: [] },
      ]);
      expect(await daemon?.stillHoldsLock()).toBe(true);
    } finally {
      await controller.stop();
      await daemon?.kill();
      await removeTempDir(dir);
    }
  });
});
