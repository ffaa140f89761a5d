/**
 * How hook runs are paced and counted (docs/design.md#reconcile-rules, docs/design.md#hooks), through
 * the built CLI: a hook that rebuilds its machine's directory runs once; one that keeps putting the
 * old content back is backed off; time the controller was stopped is no hook's run time; a recovery
 * counts as a success only when `stopped` was written.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, readPidFileIfPresent, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let machines: string;
let hooks: string;
let runs: string;
let controller: RunningController | undefined;
let daemon: StandInDaemon | undefined;

beforeEach(async () => {
  root = await makeTempDir("hook-runs");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  runs = path.join(root, "runs");
});
afterEach(async () => {
  if (controller?.child.signalCode === null && controller.child.exitCode === null) controller.child.kill("SIGCONT");
  await controller?.stop();
  controller = undefined;
  await daemon?.kill();
  daemon = undefined;
  await removeTempDir(root);
});

const stateOf = async () => /state = "(\w+)"/.exec(await readFile(path.join(machines, "web", "config.toml"), "utf8").catch(() => ""))?.[1];
const hookRuns = async () => (await readFile(runs, "utf8").catch(() => "")).split("\n").filter(Boolean).length;
const metric = async (name: string) => {
  const text = await (await fetch(`http://${controller!.address}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1]);
};

async function start(args: string[] = ["--liveness", "none"]): Promise<RunningController> {
  controller = await startControllerProcess(["-d", machines, "--hooks-dir", hooks, "--listen", "127.0.0.1:0", ...args]);
  return controller;
}

describe("a hook that rebuilds its machine's directory", () => {
  it.each([
    ["removes it and makes it anew", 'rm -rf "$ARCBOX_MACHINE_DIR"; mkdir "$ARCBOX_MACHINE_DIR"'],
    ["moves it away and makes a copy", 'mv "$ARCBOX_MACHINE_DIR" "$ARCBOX_MACHINE_DIR.old"; mkdir "$ARCBOX_MACHINE_DIR"'],
  ])("runs once, and the machine is recovered in the new directory, when it %s", async (_label, rebuild) => {
    await writeMachine(machines, "web", machineToml("web"));
    await writeHook(hooks, "10-net", `echo run >> '${runs}'; c=$(cat "$ARCBOX_CONFIG"); ${rebuild}; printf '%s\\n' "$c" > "$ARCBOX_CONFIG"`);
    await start();
    await waitFor(async () => (await stateOf()) === "stopped", "web to be recovered in its new directory");
    await waitFor(async () => (await metric('arcbox_recoveries_total{result="success"}')) === 1, "the recovery to be counted");
    expect(await hookRuns()).toBe(1);
  });
});

describe("a hook that puts the old content back after each recovery", () => {
  it("is backed off: each run for the same content waits twice as long as the one before", async () => {
    await writeMachine(machines, "web", machineToml("web"));
    const restore = 'sleep 0.05; printf "%s\\n" "$c" > "$ARCBOX_CONFIG.new"; mv "$ARCBOX_CONFIG.new" "$ARCBOX_CONFIG"';
    await writeHook(hooks, "10-net", `echo run >> '${runs}'; c=$(cat "$ARCBOX_CONFIG"); (${restore}) >/dev/null 2>&1 &`);
    await start(["--liveness", "none", "--log-level", "debug"]);
    const paced = "its hooks ran for this content a moment ago; waiting before running them again";
    await waitFor(() => controller!.logs.filter((line) => line.msg === paced).length >= 5, "five paced waits", { timeoutMs: 80_000 });
    // The wait before each run after the first: about double the one before (the run itself and the
    // restore take some of it).
    const firstWaitAfterRun = new Map<number, number>();
    let run = 0;
    for (const line of controller!.logs) {
      if (line.msg === "machine recovered") run++;
      if (line.msg === paced && !firstWaitAfterRun.has(run)) firstWaitAfterRun.set(run, Number(line.requeue_after_ms));
    }
    const series = [...firstWaitAfterRun.values()].slice(1, 5);
    for (let i = 1; i < series.length; i++) expect(series[i]!, JSON.stringify(series)).toBeGreaterThan(series[i - 1]! * 1.5);
  }, 90_000);
});

describe("time the controller could not run", () => {
  it("is not a hook's run time: a hook that ended while the controller was stopped did not time out", async () => {
    await writeMachine(machines, "web", machineToml("web"));
    const pidFile = path.join(root, "hook.pid");
    await writeHook(hooks, "10-net", `echo $$ > '${pidFile}'; echo run >> '${runs}'; sleep 1`);
    const config = path.join(root, "controller.toml");
    await writeFile(config, 'hook_timeout = "2s"\n');
    await start(["--liveness", "none", "--config", config]);
    const hookPid = await waitFor(() => readPidFileIfPresent(pidFile), "the hook to start");
    controller!.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    // The hook ends (a zombie nobody reaps while the controller is stopped), and then its timeout
    // passes on the clock.
    await waitFor(async () => /\) Z /.test(await readFile(`/proc/${hookPid}/stat`, "utf8").catch(() => ") Z ")), "the hook to end");
    await waitFor(() => Date.now() - stoppedAt > 3000, "the hook's timeout to pass on the clock", { timeoutMs: 10_000 });
    controller!.child.kill("SIGCONT");
    await waitFor(async () => (await stateOf()) === "stopped", "web to be recovered");
    expect(controller!.logs.filter((line) => line.msg === "reconcile failed; will retry")).toEqual([]);
    expect(await hookRuns()).toBe(1);
  });
});

describe("arcbox_recoveries_total", () => {
  it("counts no success when the daemon came back during the hooks and nothing was written", async () => {
    await writeMachine(machines, "web", machineToml("web"));
    const started = path.join(root, "hook-started");
    const goOn = path.join(root, "go-on");
    // The hook waits until the test has brought the arcbox daemon back.
    await writeHook(hooks, "10-net", `touch '${started}'; while [ ! -e '${goOn}' ]; do sleep 0.02; done`);
    await start(["--liveness", "daemon"]);
    await waitFor(async () => (await readFile(started).catch(() => undefined)) !== undefined, "the hook to start");
    daemon = await startStandInDaemon(path.join(root, "run", "daemon.lock"));
    await writeFile(goOn, "");
    await waitFor(() => controller!.logs.some((line) => line.msg === "a VM came up during recovery; leaving the machine running"), "the recovery to be given up");
    expect(await stateOf()).toBe("running");
    expect(await metric('arcbox_recoveries_total{result="success"}')).toBe(0);
    expect(await metric('arcbox_network_hook_runs_total{hook="10-net",result="success"}')).toBe(1);
  });
});
