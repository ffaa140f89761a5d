/**
 * What a running controller records for the landing page: recoveries, failures, invalid configs and
 * the arcbox daemon going down and up, with real files, hooks and a stand-in daemon.
 */
import { rm } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultDaemonLock } from "../../src/controller/config.js";
import { Controller } from "../../src/controller/controller.js";
import { ActivityLog, type ActivityEntry } from "../../src/metrics/activity.js";
import { ControllerMetrics } from "../../src/metrics/controller-metrics.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { machineToml, memoryLogger, replaceFile, testConfig, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let machines: string;
let hooks: string;
let controller: Controller | undefined;
let daemon: StandInDaemon | undefined;

beforeEach(async () => {
  root = await makeTempDir("controller-activity");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
});
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await daemon?.kill();
  daemon = undefined;
  await removeTempDir(root);
});

async function start(liveness: "none" | "daemon", showHookOutput = false): Promise<{ activity: ActivityLog; metrics: ControllerMetrics }> {
  const activity = new ActivityLog();
  const metrics = new ControllerMetrics({ version: "test", daemonLiveness: liveness === "daemon" });
  controller = new Controller({ config: testConfig(machines, hooks, { liveness, showHookOutput }), logger: memoryLogger().logger, metrics, activity });
  await controller.start();
  return { activity, metrics };
}

const find = (activity: ActivityLog, predicate: (e: ActivityEntry) => boolean) => activity.recent().find(predicate);

describe("the controller's activity record", () => {
  it("records a recovery with reason, hooks and duration, and a hook failure with hook and exit code, not what it printed", async () => {
    await writeHook(hooks, "10-net", 'cat > /dev/null; [ "$ARCBOX_MACHINE" != db ] || { echo "no bridge br0" >&2; exit 3; }');
    await writeMachine(machines, "web", machineToml("web", { state: "running" }));
    const { activity, metrics } = await start("none");
    const recovered = await waitFor(() => find(activity, (e) => e.kind === "recovered"), "the recovery of web");
    expect(recovered).toMatchObject({ kind: "recovered", machine: "web", reason: "liveness = none: no VM counts as alive", hooks: ["10-net"] });
    expect(recovered.kind === "recovered" && recovered.duration_ms).toBeGreaterThanOrEqual(0);
    expect(metrics.machines()).toEqual([{ name: "web", state: "stopped", needsRecovery: false, alive: false }]);

    await writeMachine(machines, "db", machineToml("db", { state: "running" }));
    const failed = await waitFor(() => find(activity, (e) => e.kind === "failed"), "the failure of db");
    expect(failed).toMatchObject({ kind: "failed", machine: "db", hook: "10-net", exit_code: 3, signal: null, timed_out: false, retry_in_ms: expect.any(Number) });
    expect(failed.kind === "failed" && failed.attempt).toBeGreaterThanOrEqual(1);
    expect(failed.kind === "failed" && failed.stderr).toBeUndefined();
    expect(failed.kind === "failed" && failed.err).toBe("db: recovery failed: network hook 10-net failed for machine db: exit code 3");
    expect(failed.kind === "failed" && failed.reconcile_id).toMatch(/^[0-9a-f]{8}$/);
    // Newest first.
    expect(activity.recent().findIndex((e) => e.kind === "failed")).toBeLessThan(activity.recent().findIndex((e) => e.kind === "recovered"));
  });

  it("with show_hook_output, records what the failing hook printed too", async () => {
    await writeHook(hooks, "10-net", 'echo "no bridge br0" >&2; exit 3');
    await writeMachine(machines, "db", machineToml("db", { state: "running" }));
    const { activity } = await start("none", true);
    const failed = await waitFor(() => find(activity, (e) => e.kind === "failed"), "the failure of db");
    expect(failed.kind === "failed" && failed.stderr).toBe("no bridge br0\n");
    expect(failed.kind === "failed" && failed.err).toBe("db: recovery failed: network hook 10-net failed for machine db: exit code 3: no bridge br0");
  });

  it("records each distinct invalid content of a config once, and again after it was valid", async () => {
    await writeMachine(machines, "bad", 'name = "bad"\nstate = "Running"\n');
    const { activity, metrics } = await start("none");
    const stateOf = (name: string) => metrics.machines().find((m) => m.name === name)?.state;
    await waitFor(() => find(activity, (e) => e.kind === "invalid"), "the invalid config");
    const invalid = () => activity.recent().filter((e) => e.kind === "invalid");
    expect(invalid()[0]).toMatchObject({ machine: "bad", path: path.join(machines, "bad", "config.toml") });

    // The same content again (a touch, a resync): not recorded again.
    await replaceFile(path.join(machines, "bad", "config.toml"), 'name = "bad"\nstate = "Running"\n');
    // Written after it, so seen after it.
    await writeMachine(machines, "marker", machineToml("marker", { state: "stopped" }));
    await waitFor(() => stateOf("marker") === "stopped", "the marker machine");
    await controller!.idle();
    expect(invalid()).toHaveLength(1);

    // Another problem: recorded.
    await replaceFile(path.join(machines, "bad", "config.toml"), 'name = "bad"\ncpus = 4.0\n');
    await waitFor(() => invalid().length === 2, "the second problem");
    // Valid, then the first problem again: recorded anew.
    await writeMachine(machines, "bad", machineToml("bad", { state: "stopped" }));
    await waitFor(() => stateOf("bad") === "stopped", "the valid config");
    await replaceFile(path.join(machines, "bad", "config.toml"), 'name = "bad"\nstate = "Running"\n');
    await waitFor(() => invalid().length === 3, "the first problem again");
    expect(invalid().map((e) => e.kind === "invalid" && e.err.includes("cpus"))).toEqual([false, true, false]);
  });

  it("records the arcbox daemon down at start-up, then up and down again", async () => {
    const { activity, metrics } = await start("daemon");
    const daemonEvents = () => activity.recent().filter((e) => e.kind === "daemon").reverse();
    expect(daemonEvents()).toMatchObject([{ kind: "daemon", up: false }]);
    daemon = await startStandInDaemon(defaultDaemonLock(machines));
    await waitFor(() => daemonEvents().length === 2, "the daemon to be seen up");
    expect(metrics.daemonStatus).toBe(true);
    await daemon.kill();
    await waitFor(() => daemonEvents().length === 3, "the daemon to be seen down");
    expect(daemonEvents().map((e) => e.kind === "daemon" && e.up)).toEqual([false, true, false]);
    expect(daemonEvents()[2]).toMatchObject({ reason: expect.stringContaining("the arcbox daemon is not running") });
    await rm(defaultDaemonLock(machines), { force: true });
  });
});
