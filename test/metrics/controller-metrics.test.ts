import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { afterEach, describe, expect, it } from "vitest";
import { ControllerMetrics } from "../../src/metrics/controller-metrics.js";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { parseExposition, samplesOf, valueOf, type Exposition } from "./exposition-parser.js";
import { startTestServer, type TestServer } from "./server-fixture.js";

/** docs/design.md#metrics: every metric, its type, and the label values present from start-up. */
const CONTRACT: Array<{ name: string; type: string; labels?: Record<string, string[]> }> = [
  { name: "arcbox_machines", type: "gauge", labels: { state: ["created", "running", "stopped", "invalid"] } },
  { name: "arcbox_machines_needing_recovery", type: "gauge" },
  { name: "arcbox_machine_state", type: "gauge" },
  { name: "arcbox_recoveries_total", type: "counter", labels: { result: ["success", "error"] } },
  { name: "arcbox_reconcile_total", type: "counter", labels: { result: ["success", "error", "requeue_after"] } },
  { name: "arcbox_reconcile_errors_total", type: "counter" },
  { name: "arcbox_reconcile_duration_seconds", type: "histogram" },
  { name: "arcbox_network_hook_runs_total", type: "counter", labels: { result: ["success", "failure", "timeout"] } },
  { name: "arcbox_network_hook_duration_seconds", type: "histogram" },
  { name: "arcbox_store_writes_total", type: "counter", labels: { result: ["success", "conflict", "error"] } },
  { name: "arcbox_workqueue_depth", type: "gauge" },
  { name: "arcbox_workqueue_adds_total", type: "counter" },
  { name: "arcbox_workqueue_retries_total", type: "counter" },
  { name: "arcbox_workqueue_queue_duration_seconds", type: "histogram" },
  { name: "arcbox_workqueue_work_duration_seconds", type: "histogram" },
  { name: "arcbox_workqueue_unfinished_work_seconds", type: "gauge" },
  { name: "arcbox_workqueue_longest_running_processor_seconds", type: "gauge" },
  {
    name: "arcbox_watch_events_total",
    type: "counter",
    labels: { event: ["add", "change", "unlink", "addDir", "unlinkDir", "error"] },
  },
  { name: "arcbox_last_resync_timestamp_seconds", type: "gauge" },
  { name: "arcbox_controller_build_info", type: "gauge" },
];

/** The sample names a family of `type` produces. */
function sampleNames(name: string, type: string): string[] {
  return type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: { perMachineMetrics?: boolean } = {}): Promise<TestServer> {
  server = await startTestServer(options);
  return server;
}

/** The per-machine series as `machine → state`, asserting each has value 1. */
function machineStates(scrape: Exposition): Record<string, string> {
  const states: Record<string, string> = {};
  for (const sample of samplesOf(scrape, "arcbox_machine_state")) {
    expect(sample.value).toBe(1);
    const machine = sample.labels.machine ?? "";
    expect(states[machine], `one series for ${machine}`).toBeUndefined();
    states[machine] = sample.labels.state ?? "";
  }
  return states;
}

function machineCounts(scrape: Exposition): Record<string, number> {
  return Object.fromEntries(
    ["created", "running", "stopped", "invalid"].map((state) => [state, valueOf(scrape, "arcbox_machines", { state })]),
  );
}

describe("ControllerMetrics over HTTP", () => {
  it("exposes every §7 metric with its type and every listed label value from start-up", async () => {
    const { metrics, scrape } = await start();
    metrics.knownHooks(["bridge-up", "dns"]);
    const exposition = await scrape();

    for (const metric of CONTRACT) {
      expect(exposition.types.get(metric.name), `# TYPE of ${metric.name}`).toBe(metric.type);
      expect(exposition.help.get(metric.name), `# HELP of ${metric.name}`).toMatch(/\S/);
      for (const [label, values] of Object.entries(metric.labels ?? {})) {
        for (const value of values) {
          const found = samplesOf(exposition, metric.name, { [label]: value });
          expect(found.length, `${metric.name}{${label}="${value}"}`).toBeGreaterThan(0);
          for (const sample of found) expect(sample.value).toBe(0);
        }
      }
      if (metric.name !== "arcbox_machine_state" && !metric.labels) {
        const names = sampleNames(metric.name, metric.type);
        expect(exposition.samples.some((s) => names.includes(s.name)), `samples of ${metric.name}`).toBe(true);
      }
    }
    for (const hook of ["bridge-up", "dns"]) {
      expect(valueOf(exposition, "arcbox_network_hook_duration_seconds_count", { hook })).toBe(0);
    }
    expect(valueOf(exposition, "arcbox_controller_build_info", { version: "1.2.3-test" })).toBe(1);
    expect(valueOf(exposition, "arcbox_machines_needing_recovery")).toBe(0);
    expect(samplesOf(exposition, "arcbox_machine_state")).toEqual([]);
    // prom-client's process and Node.js defaults are there too.
    expect(exposition.types.get("process_cpu_seconds_total")).toBe("counter");
    expect(exposition.types.get("nodejs_heap_size_used_bytes")).toBe("gauge");
  });

  it("moves per-state counts and per-machine series through create → recover → invalidate → delete", async () => {
    const { metrics, scrape } = await start();

    metrics.setMachine("web-1", "created", false);
    metrics.setMachine("db.2", "stopped", false);
    let exposition = await scrape();
    expect(machineCounts(exposition)).toEqual({ created: 1, running: 0, stopped: 1, invalid: 0 });
    expect(machineStates(exposition)).toEqual({ "web-1": "created", "db.2": "stopped" });

    metrics.setMachine("web-1", "running", true);
    exposition = await scrape();
    expect(machineCounts(exposition)).toEqual({ created: 0, running: 1, stopped: 1, invalid: 0 });
    expect(valueOf(exposition, "arcbox_machines_needing_recovery")).toBe(1);
    expect(machineStates(exposition)).toEqual({ "web-1": "running", "db.2": "stopped" });

    metrics.setMachine("web-1", "stopped", false);
    metrics.recoveryFinished("success");
    exposition = await scrape();
    expect(machineCounts(exposition)).toEqual({ created: 0, running: 0, stopped: 2, invalid: 0 });
    expect(valueOf(exposition, "arcbox_machines_needing_recovery")).toBe(0);
    expect(valueOf(exposition, "arcbox_recoveries_total", { result: "success" })).toBe(1);
    expect(machineStates(exposition)).toEqual({ "web-1": "stopped", "db.2": "stopped" });

    metrics.setMachine("web-1", "invalid", false);
    exposition = await scrape();
    expect(machineCounts(exposition)).toEqual({ created: 0, running: 0, stopped: 1, invalid: 1 });
    expect(machineStates(exposition)).toEqual({ "web-1": "invalid", "db.2": "stopped" });

    metrics.deleteMachine("web-1");
    metrics.deleteMachine("never-known");
    exposition = await scrape();
    expect(machineCounts(exposition)).toEqual({ created: 0, running: 0, stopped: 1, invalid: 0 });
    expect(machineStates(exposition)).toEqual({ "db.2": "stopped" });
    expect(metrics.machines()).toEqual([{ name: "db.2", state: "stopped", needsRecovery: false, alive: null }]);
  });

  it("counts needing-recovery per machine, not per report, and lists machines sorted by name", async () => {
    const { metrics, scrape } = await start();
    metrics.setMachine("b", "running", true);
    metrics.setMachine("b", "running", true);
    metrics.setMachine("a", "running", true);
    expect(valueOf(await scrape(), "arcbox_machines_needing_recovery")).toBe(2);
    metrics.setMachine("b", "running", false);
    expect(valueOf(await scrape(), "arcbox_machines_needing_recovery")).toBe(1);
    metrics.deleteMachine("a");
    expect(valueOf(await scrape(), "arcbox_machines_needing_recovery")).toBe(0);
    metrics.setMachine("c_1", "created", false);
    metrics.setMachine("a-0", "stopped", false);
    expect(metrics.machines().map((m) => m.name)).toEqual(["a-0", "b", "c_1"]);
  });

  it("hides arcbox_machine_state entirely when perMachineMetrics is false, keeping the counts", async () => {
    const { metrics, scrape, scrapeText } = await start({ perMachineMetrics: false });
    metrics.setMachine("web-1", "running", true);
    expect(await scrapeText()).not.toContain("arcbox_machine_state");
    const exposition = await scrape();
    expect(valueOf(exposition, "arcbox_machines", { state: "running" })).toBe(1);
    expect(valueOf(exposition, "arcbox_machines_needing_recovery")).toBe(1);
    expect(metrics.machines()).toHaveLength(1);
  });

  it("escapes odd machine names in the pre-rendered series so they parse back unchanged", async () => {
    const { metrics, scrape } = await start();
    const odd = ['quote"d', "back\\slash", "new\nline", 'all\\"\n\\n', "plain.name_with-dashes"];
    for (const name of odd) metrics.setMachine(name, "created", false);
    const states = machineStates(await scrape());
    expect(Object.keys(states).sort()).toEqual([...odd].sort());
  });

  it("rejects a state outside the four, naming the machine", () => {
    const metrics = new ControllerMetrics({ version: "x" });
    expect(() => metrics.setMachine("web-1", "starting" as never, false)).toThrow(/machine "web-1": unknown state "starting"/);
    expect(metrics.machines()).toEqual([]);
  });

  it("counts reconciles, errors, recoveries, hooks, store writes, watch events and the resync time", async () => {
    const { metrics, scrape } = await start();
    metrics.knownHooks(["bridge-up"]);
    metrics.reconcileFinished("success", 0.002);
    metrics.reconcileFinished("error", 0.5);
    metrics.reconcileFinished("error", 0.7);
    metrics.reconcileFinished("requeue_after", 0.001);
    metrics.recoveryFinished("error");
    metrics.hookFinished("bridge-up", "success", 0.3);
    metrics.hookFinished("bridge-up", "timeout", 30);
    metrics.hookFinished("late-hook", "failure", 1.5);
    metrics.storeWrite("success");
    metrics.storeWrite("conflict");
    metrics.watchEvent("change");
    metrics.watchEvent("change");
    metrics.watchEvent("raw");
    metrics.resyncCompleted(new Date(1_700_000_000_500));

    const e = await scrape();
    expect(valueOf(e, "arcbox_reconcile_total", { result: "success" })).toBe(1);
    expect(valueOf(e, "arcbox_reconcile_total", { result: "error" })).toBe(2);
    expect(valueOf(e, "arcbox_reconcile_total", { result: "requeue_after" })).toBe(1);
    expect(valueOf(e, "arcbox_reconcile_errors_total")).toBe(2);
    expect(valueOf(e, "arcbox_reconcile_duration_seconds_count")).toBe(4);
    expect(valueOf(e, "arcbox_reconcile_duration_seconds_sum")).toBeCloseTo(1.203, 9);
    expect(valueOf(e, "arcbox_reconcile_duration_seconds_bucket", { le: "0.001" })).toBe(1);
    expect(valueOf(e, "arcbox_reconcile_duration_seconds_bucket", { le: "0.5" })).toBe(3);
    expect(valueOf(e, "arcbox_reconcile_duration_seconds_bucket", { le: "60" })).toBe(4);
    expect(valueOf(e, "arcbox_recoveries_total", { result: "error" })).toBe(1);
    expect(valueOf(e, "arcbox_recoveries_total", { result: "success" })).toBe(0);
    expect(valueOf(e, "arcbox_network_hook_runs_total", { hook: "bridge-up", result: "success" })).toBe(1);
    expect(valueOf(e, "arcbox_network_hook_runs_total", { hook: "bridge-up", result: "timeout" })).toBe(1);
    expect(valueOf(e, "arcbox_network_hook_runs_total", { hook: "bridge-up", result: "failure" })).toBe(0);
    expect(valueOf(e, "arcbox_network_hook_runs_total", { hook: "late-hook", result: "failure" })).toBe(1);
    expect(valueOf(e, "arcbox_network_hook_duration_seconds_count", { hook: "bridge-up" })).toBe(2);
    expect(valueOf(e, "arcbox_network_hook_duration_seconds_bucket", { hook: "bridge-up", le: "30" })).toBe(2);
    expect(valueOf(e, "arcbox_network_hook_duration_seconds_bucket", { hook: "bridge-up", le: "10" })).toBe(1);
    expect(valueOf(e, "arcbox_store_writes_total", { result: "success" })).toBe(1);
    expect(valueOf(e, "arcbox_store_writes_total", { result: "conflict" })).toBe(1);
    expect(valueOf(e, "arcbox_store_writes_total", { result: "error" })).toBe(0);
    expect(valueOf(e, "arcbox_watch_events_total", { event: "change" })).toBe(2);
    expect(valueOf(e, "arcbox_watch_events_total", { event: "raw" })).toBe(1);
    expect(valueOf(e, "arcbox_watch_events_total", { event: "add" })).toBe(0);
    expect(valueOf(e, "arcbox_last_resync_timestamp_seconds")).toBe(1_700_000_000.5);
  });

  it("reports the work queue's adds, depth, retries and durations", async () => {
    const { metrics, scrape } = await start();
    metrics.workqueue.added("a");
    metrics.workqueue.added("a");
    metrics.workqueue.added("b");
    metrics.workqueue.depth(2);
    metrics.workqueue.queued(0.004);
    metrics.workqueue.worked(200);
    metrics.workqueue.retried("a");
    const e = await scrape();
    expect(valueOf(e, "arcbox_workqueue_adds_total")).toBe(3);
    expect(valueOf(e, "arcbox_workqueue_depth")).toBe(2);
    expect(valueOf(e, "arcbox_workqueue_retries_total")).toBe(1);
    expect(valueOf(e, "arcbox_workqueue_queue_duration_seconds_bucket", { le: "0.005" })).toBe(1);
    expect(valueOf(e, "arcbox_workqueue_work_duration_seconds_bucket", { le: "120" })).toBe(0);
    expect(valueOf(e, "arcbox_workqueue_work_duration_seconds_bucket", { le: "300" })).toBe(1);
  });

  it("computes unfinished work and the longest-running processor from the in-flight source at scrape time", async () => {
    const { metrics, scrape } = await start();
    let e = await scrape();
    expect(valueOf(e, "arcbox_workqueue_unfinished_work_seconds")).toBe(0);
    expect(valueOf(e, "arcbox_workqueue_longest_running_processor_seconds")).toBe(0);

    const inFlight: Array<{ startedAt: number }> = [];
    metrics.trackInFlight(() => inFlight);
    const now = performance.now();
    inFlight.push({ startedAt: now - 4_000 }, { startedAt: now - 1_000 });
    e = await scrape();
    const unfinished = valueOf(e, "arcbox_workqueue_unfinished_work_seconds");
    const longest = valueOf(e, "arcbox_workqueue_longest_running_processor_seconds");
    // Ages only grow, so lower bounds hold however slow the machine is.
    expect(longest).toBeGreaterThanOrEqual(4);
    expect(unfinished).toBeGreaterThanOrEqual(5);
    // One reading per scrape: the sum is the longest plus the other, younger one.
    expect(unfinished - longest).toBeCloseTo(longest - 3, 6);

    inFlight.length = 0;
    e = await scrape();
    expect(valueOf(e, "arcbox_workqueue_unfinished_work_seconds")).toBe(0);
    expect(valueOf(e, "arcbox_workqueue_longest_running_processor_seconds")).toBe(0);
  });

  it("serves prom-client's content type and each metric family once, as one contiguous group", async () => {
    const { metrics, url } = await start();
    metrics.setMachine("m", "stopped", false);
    const response = await fetch(url("/metrics"));
    expect(response.headers.get("content-type")).toBe(metrics.contentType);
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text.endsWith("\n")).toBe(true);
    // Every family appears once, as one contiguous group.
    const families = [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]);
    expect(new Set(families).size).toBe(families.length);
    expect(() => parseExposition(text)).not.toThrow();
  });
});

describe("promtool check metrics", () => {
  requireToolOrSkip(
    "promtool",
    "finds nothing to say about any metric of the exposition",
    async (promtool) => {
      const { metrics, scrapeText } = await start();
      metrics.knownHooks(["bridge-up"]);
      metrics.setMachine("web-1", "running", true);
      metrics.setMachine('odd"name\\', "invalid", false);
      metrics.hookFinished("bridge-up", "success", 0.1);
      metrics.reconcileFinished("success", 0.01);
      metrics.trackInFlight(() => [{ startedAt: performance.now() - 10 }]);
      const text = await scrapeText();

      const child = spawn(promtool, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      const exit = new Promise<number | null>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", resolve);
      });
      child.stdin.end(text);
      const code = await exit;

      // prom-client's gauges named `nodejs_active_*_total`, which promtool reports, are not exported.
      expect(output).toBe("");
      expect(code).toBe(0);
    },
  );
});
