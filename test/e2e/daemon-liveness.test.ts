/**
 * The default liveness on an ArcBox host's layout (`<root>/run/daemon.lock` beside `<root>/machines`),
 * with a real stand-in daemon holding the lock exactly as arcbox-daemon does, and the built CLI.
 */
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli, snapshotTree, startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let machines: string;
let hooks: string;
let config: string;
let marker: string;
let daemons: StandInDaemon[];
let services: RunningController[];

beforeEach(async () => {
  root = await makeTempDir("daemon-liveness");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  marker = path.join(root, "hook-runs");
  config = path.join(root, "controller.toml");
  // Only what a test needs differently from the defaults: the daemon is probed fast.
  await writeFile(config, 'daemon_poll_interval = "100ms"\n');
  await writeHook(hooks, "10-record", `echo "$ARCBOX_MACHINE" >> '${marker}'`);
  daemons = [];
  services = [];
  for (const name of ["web", "db", "ci"]) await writeMachine(machines, name, machineToml(name));
  await writeMachine(machines, "old", machineToml("old", { state: "stopped" }));
});

afterEach(async () => {
  for (const service of services) await service.stop();
  for (const daemon of daemons) await daemon.kill();
  await removeTempDir(root);
});

const lockPath = () => path.join(root, "run", "daemon.lock");
const stateOf = async (name: string) => /state = "(\w+)"/.exec(await readFile(path.join(machines, name, "config.toml"), "utf8"))?.[1];
const hookRuns = async () => (await readFile(marker, "utf8").catch(() => "")).split("\n").filter(Boolean).sort();

async function daemon(): Promise<StandInDaemon> {
  const started = await startStandInDaemon(lockPath());
  daemons.push(started);
  return started;
}

async function service(): Promise<RunningController> {
  const started = await startControllerProcess(["--config", config, "--machines-dir", machines, "--hooks-dir", hooks, "--listen", "127.0.0.1:0"]);
  services.push(started);
  return started;
}

async function metric(service: RunningController, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://${service.address}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

describe("liveness = daemon (the default)", () => {
  it("reconcile touches no file and runs no hook while the daemon lives", async () => {
    const live = await daemon();
    const before = await snapshotTree(machines);
    const result = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "-o", "json"]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ machines: 4, recovered: 0, errors: 0, invalid: 0, pending: 0 });
    // The lock file of the controller itself is the only new entry.
    const after = await snapshotTree(machines);
    after.delete(path.join(machines, ".arcbox-controller.lock"));
    expect(after).toEqual(before);
    expect(await hookRuns()).toEqual([]);
    expect(await live.stillHoldsLock()).toBe(true);
  });

  it("the service leaves live machines alone, recovers them when the daemon is killed with no config event, and leaves a restarted daemon's machines alone", async () => {
    const live = await daemon();
    const controller = await service();
    await waitFor(async () => (await metric(controller, "arcbox_daemon_up")) === 1, "arcbox_daemon_up to be 1");
    await waitFor(async () => (await (await fetch(`http://${controller.address}/readyz`)).status) === 200, "readiness");
    await waitFor(async () => (await (await fetch(`http://${controller.address}/metrics`)).text()).includes('arcbox_machines{state="running"} 3'), "every machine to be observed");
    // Some probes later (every 100 ms), nothing was touched, and the daemon still holds its lock.
    const before = await snapshotTree(machines);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = await snapshotTree(machines);
    after.delete(path.join(machines, ".arcbox-controller.lock"));
    before.delete(path.join(machines, ".arcbox-controller.lock"));
    expect(after).toEqual(before);
    expect(await hookRuns()).toEqual([]);
    expect(await live.stillHoldsLock()).toBe(true);

    // The daemon dies. No file changes; only the daemon source can tell.
    await live.kill();
    await waitFor(async () => (await stateOf("web")) === "stopped" && (await stateOf("db")) === "stopped" && (await stateOf("ci")) === "stopped", "the running machines to be recovered");
    expect(await hookRuns()).toEqual(["ci", "db", "web"]);
    await waitFor(() => controller.logs.filter((line) => line.msg === "machine recovered").length === 3, "three recovery log lines");
    const recovered = controller.logs.filter((line) => line.msg === "machine recovered");
    expect(recovered[0]!.reason).toMatch(/^the arcbox daemon is not running \(nobody holds .*daemon\.lock\)$/);
    expect(controller.logs.some((line) => line.msg === "arcbox daemon is down")).toBe(true);
    expect(await metric(controller, "arcbox_daemon_up")).toBe(0);
    expect(await stateOf("old")).toBe("stopped");

    // A restarted daemon starts machines again: the controller leaves them alone.
    const restarted = await daemon();
    await waitFor(async () => (await metric(controller, "arcbox_daemon_up")) === 1, "arcbox_daemon_up to be 1 again");
    await writeMachine(machines, "web", machineToml("web"));
    await waitFor(() => controller.logs.some((line) => line.msg === "arcbox daemon is up"), "the daemon-up log line");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await stateOf("web")).toBe("running");
    expect(await hookRuns()).toEqual(["ci", "db", "web"]);
    expect(await restarted.stillHoldsLock()).toBe(true);
  });

  it("counts a lock file left behind by a dead daemon as dead", async () => {
    const gone = await daemon();
    await gone.kill();
    expect((await stat(lockPath())).isFile()).toBe(true);
    const result = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "-o", "json"]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ machines: 4, recovered: 3 });
    expect(await hookRuns()).toEqual(["ci", "db", "web"]);
  });

  it("counts a missing run directory as dead, and creates nothing there", async () => {
    const result = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "-o", "json"]);
    expect(JSON.parse(result.stdout)).toMatchObject({ machines: 4, recovered: 3 });
    await expect(stat(path.join(root, "run"))).rejects.toThrow(/ENOENT/);
  });

  it("follows daemon_lock when it is set explicitly", async () => {
    const elsewhere = path.join(root, "data", "run", "daemon.lock");
    await mkdir(path.dirname(elsewhere), { recursive: true });
    const live = await startStandInDaemon(elsewhere);
    daemons.push(live);
    await writeFile(config, `daemon_lock = ${JSON.stringify(elsewhere)}\n`);
    const result = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "-o", "json"]);
    expect(JSON.parse(result.stdout)).toMatchObject({ recovered: 0 });
    expect(await hookRuns()).toEqual([]);
  });
});
