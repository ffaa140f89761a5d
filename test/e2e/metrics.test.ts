/**
 * Metrics of a running controller (the built CLI), scraped over real HTTP, following the files on
 * disk through create, recover, invalidate and delete.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let machines: string;
let hooks: string;
let controller: RunningController | undefined;

beforeEach(async () => {
  root = await makeTempDir("metrics-e2e");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  await writeHook(hooks, "10-net", "cat > /dev/null");
  await mkdir(machines);
  const config = path.join(root, "controller.toml");
  await writeFile(config, `machines_dir = "${machines}"\nhooks_dir = "${hooks}"\nlisten = "127.0.0.1:0"\nresync_interval = "1h"\n`);
  controller = await startControllerProcess(["--config", config]);
  await controller.ready();
});
afterEach(async () => {
  expect(await controller?.stop()).toBe(0);
  await removeTempDir(root);
});

async function scrape(): Promise<Map<string, number>> {
  const response = await fetch(`http://${controller!.address}/metrics`);
  expect(response.status).toBe(200);
  const series = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    series.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return series;
}

/** The per-state gauge as an object. */
async function machineCounts(): Promise<Record<string, number | undefined>> {
  const series = await scrape();
  return Object.fromEntries(["created", "running", "stopped", "invalid"].map((state) => [state, series.get(`arcbox_machines{state="${state}"}`)]));
}

const waitForCounts = (expected: Record<string, number>, what: string) =>
  waitFor(async () => JSON.stringify(await machineCounts()) === JSON.stringify(expected), what);

describe("a running controller's /metrics", () => {
  it("has every metric and label value of docs/design.md#metrics from start-up", async () => {
    const series = await scrape();
    const expected = [
      ...["created", "running", "stopped", "invalid"].map((state) => `arcbox_machines{state="${state}"}`),
      "arcbox_machines_needing_recovery",
      ...["success", "error"].map((result) => `arcbox_recoveries_total{result="${result}"}`),
      ...["success", "error", "requeue_after"].map((result) => `arcbox_reconcile_total{result="${result}"}`),
      "arcbox_reconcile_errors_total",
      "arcbox_reconcile_duration_seconds_count",
      ...["success", "failure", "timeout"].map((result) => `arcbox_network_hook_runs_total{hook="10-net",result="${result}"}`),
      'arcbox_network_hook_duration_seconds_count{hook="10-net"}',
      ...["success", "conflict", "error"].map((result) => `arcbox_store_writes_total{result="${result}"}`),
      "arcbox_workqueue_depth",
      "arcbox_workqueue_adds_total",
      "arcbox_workqueue_retries_total",
      "arcbox_workqueue_queue_duration_seconds_count",
      "arcbox_workqueue_work_duration_seconds_count",
      "arcbox_workqueue_unfinished_work_seconds",
      "arcbox_workqueue_longest_running_processor_seconds",
      ...["add", "change", "unlink", "addDir", "unlinkDir"].map((event) => `arcbox_watch_events_total{event="${event}"}`),
      "arcbox_last_resync_timestamp_seconds",
      "process_cpu_seconds_total",
      "nodejs_heap_size_total_bytes",
    ];
    for (const name of expected) expect(series.has(name), name).toBe(true);
    expect([...series.keys()].find((key) => key.startsWith("arcbox_controller_build_info{"))).toMatch(/^arcbox_controller_build_info\{version="\d+\.\d+\.\d+"\}$/);
    expect(series.get("arcbox_last_resync_timestamp_seconds")).toBeGreaterThan(0);
  });

  it("follows the files through create, recover, invalidate and delete", async () => {
    await waitForCounts({ created: 0, running: 0, stopped: 0, invalid: 0 }, "an empty directory");

    await writeMachine(machines, "a", machineToml("a", { state: "created" }));
    await waitForCounts({ created: 1, running: 0, stopped: 0, invalid: 0 }, "a created");
    expect((await scrape()).get('arcbox_machine_state{machine="a",state="created"}')).toBe(1);

    // Running with no VM: recovered through the hook, then counted as stopped.
    await writeMachine(machines, "b", machineToml("b", { state: "running" }));
    await waitForCounts({ created: 1, running: 0, stopped: 1, invalid: 0 }, "b recovered");
    const afterRecovery = await scrape();
    expect(afterRecovery.get('arcbox_recoveries_total{result="success"}')).toBe(1);
    expect(afterRecovery.get('arcbox_network_hook_runs_total{hook="10-net",result="success"}')).toBe(1);
    expect(afterRecovery.get('arcbox_network_hook_duration_seconds_count{hook="10-net"}')).toBe(1);
    expect(afterRecovery.get('arcbox_store_writes_total{result="success"}')).toBe(1);
    expect(afterRecovery.get('arcbox_machine_state{machine="b",state="stopped"}')).toBe(1);
    expect(afterRecovery.has('arcbox_machine_state{machine="b",state="running"}')).toBe(false);

    await writeFile(path.join(machines, "a", "config.toml"), 'name = "a"\nstate = "Created"\n');
    await waitForCounts({ created: 0, running: 0, stopped: 1, invalid: 1 }, "a invalid");
    expect((await scrape()).get('arcbox_machine_state{machine="a",state="invalid"}')).toBe(1);

    await rm(path.join(machines, "a"), { recursive: true });
    await waitForCounts({ created: 0, running: 0, stopped: 1, invalid: 0 }, "a deleted");
    const final = await scrape();
    expect([...final.keys()].filter((key) => key.includes('machine="a"'))).toEqual([]);
    expect(final.get("arcbox_reconcile_errors_total")).toBe(0);
  });

  it("counts a failing hook and the machine needing recovery until the hook is fixed", async () => {
    await writeHook(hooks, "20-broken", "echo no bridge >&2; exit 1");
    await writeMachine(machines, "c", machineToml("c", { state: "running" }));
    await waitFor(async () => (await scrape()).get('arcbox_network_hook_runs_total{hook="20-broken",result="failure"}')! >= 2, "failing runs");
    const failing = await scrape();
    expect(failing.get("arcbox_machines_needing_recovery")).toBe(1);
    expect(failing.get('arcbox_recoveries_total{result="error"}')).toBeGreaterThanOrEqual(2);
    expect(failing.get("arcbox_workqueue_retries_total")).toBeGreaterThanOrEqual(1);
    expect(failing.get("arcbox_reconcile_errors_total")).toBeGreaterThanOrEqual(2);

    await writeHook(hooks, "20-broken", "exit 0");
    await waitFor(async () => (await scrape()).get("arcbox_machines_needing_recovery") === 0, "the recovery to succeed");
    expect((await scrape()).get('arcbox_recoveries_total{result="success"}')).toBe(1);
  });
});
