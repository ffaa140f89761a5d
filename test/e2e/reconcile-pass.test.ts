/**
 * `arcbox-controller reconcile` as a process: the dry run against the real pass on a mixed corpus
 * under every liveness mode, and a pass interrupted by a signal.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI, runCli, snapshotTree } from "../helpers/cli-process.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { isProcessGone, makeTempDir, removeTempDir, runToCompletion, startProcess, stopProcess, waitFor } from "../helpers/processes.js";
import type { ChildProcess } from "node:child_process";

let root: string;
let machines: string;
let hooks: string;
let config: string;
let marker: string;
let children: ChildProcess[];
let daemons: StandInDaemon[];

beforeEach(async () => {
  root = await makeTempDir("reconcile-pass");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  marker = path.join(root, "hook-runs");
  config = path.join(root, "controller.toml");
  await writeFile(config, "# defaults\n");
  await writeHook(hooks, "10-record", `echo "$ARCBOX_MACHINE" >> '${marker}'`);
  children = [];
  daemons = [];
});

afterEach(async () => {
  for (const child of children) await stopProcess(child);
  for (const daemon of daemons) await daemon.kill();
  await removeTempDir(root);
});

const hookRuns = async () => (await readFile(marker, "utf8").catch(() => "")).split("\n").filter(Boolean).sort();

/**
 * A mixed corpus: running without a VM, running with a live VM process, running with a dead pid,
 * running and freshly written (inside the pidfile grace), stopped, created, and invalid.
 */
async function corpus(): Promise<void> {
  for (const name of ["orphan-a", "orphan-b"]) await writeMachine(machines, name, machineToml(name));
  await writeMachine(machines, "live", machineToml("live"));
  const vm = await startProcess("sleep", ["300"]);
  children.push(vm);
  await writeFile(path.join(machines, "live", "vm.pid"), `${vm.pid}\n`);
  await writeMachine(machines, "dead-pid", machineToml("dead-pid"));
  await writeFile(path.join(machines, "dead-pid", "vm.pid"), `${await runToCompletion("true", [])}\n`);
  await writeMachine(machines, "booting", machineToml("booting"), { fresh: true });
  await writeMachine(machines, "off", machineToml("off", { state: "stopped" }));
  await writeMachine(machines, "new", machineToml("new", { state: "created" }));
  await writeMachine(machines, "broken", machineToml("broken", { state: "Running" }));
}

function reconcile(liveness: string, extra: string[] = []) {
  return runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "--liveness", liveness, "-o", "json", ...extra]);
}

describe("reconcile --dry-run", () => {
  const everyRunning = ["booting", "dead-pid", "live", "orphan-a", "orphan-b"];
  it.each([
    ["daemon, with the daemon dead", "daemon", false, everyRunning],
    ["daemon, with the daemon alive", "daemon", true, []],
    // A live pid is alive; a fresh file without a live VM is pending (startup grace).
    ["pidfile", "pidfile", false, ["dead-pid", "orphan-a", "orphan-b"]],
    ["none", "none", false, everyRunning],
  ] as const)("plans exactly what the real pass then does (liveness %s), runs no hook and writes nothing", async (_title, liveness, daemonAlive, expected) => {
    await corpus();
    if (daemonAlive) daemons.push(await startStandInDaemon(path.join(root, "run", "daemon.lock")));
    const before = await snapshotTree(root);

    const dry = await reconcile(liveness, ["--dry-run"]);
    const plan = JSON.parse(dry.stdout) as { would_recover: Array<{ name: string; reason: string }>; recovered: number; pending: number; invalid: number };
    // Nothing ran and nothing changed, not even a lock file.
    expect(await hookRuns()).toEqual([]);
    expect(await snapshotTree(root)).toEqual(before);
    expect(plan.recovered).toBe(0);
    expect(plan.would_recover.map((entry) => entry.name)).toEqual(expected);
    for (const entry of plan.would_recover) expect(entry.reason).not.toBe("");
    expect(dry.code).toBe(plan.would_recover.length > 0 ? 1 : 0);

    const real = await reconcile(liveness);
    const done = JSON.parse(real.stdout) as { recovered: number; pending: number; invalid: number };
    const recovered = real.stderr.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === "machine recovered");
    expect(plan.would_recover.map((entry) => entry.name)).toEqual(recovered.map((line) => line.machine as string).sort());
    expect(await hookRuns()).toEqual(plan.would_recover.map((entry) => entry.name));
    // The reasons are the real pass's reasons.
    for (const line of recovered) expect(plan.would_recover.find((entry) => entry.name === line.machine)?.reason).toBe(line.reason);
    expect({ pending: plan.pending, invalid: plan.invalid }).toEqual({ pending: done.pending, invalid: done.invalid });
  });

  it("prints the plan as text, one line per machine with its reason, and exits 0 when nothing would be recovered", async () => {
    await writeMachine(machines, "web", machineToml("web"));
    await writeMachine(machines, "db", machineToml("db", { state: "stopped" }));
    const dry = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "--dry-run"]);
    expect(dry.code).toBe(1);
    expect(dry.stdout).toMatch(/^would recover web: the arcbox daemon is not running \(no lock file .*daemon\.lock\)\ndry run: 2 machines in \d+ms: 1 would be recovered, 0 errors, 0 invalid, 0 pending\n$/);
    await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks]);
    const again = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "--dry-run"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^dry run: 2 machines in \d+ms: 0 would be recovered/);
  });

  it("works while a service holds the lock (it takes none)", async () => {
    await writeMachine(machines, "web", machineToml("web", { state: "stopped" }));
    const { acquireInstanceLock } = await import("../../src/host/instance-lock.js");
    const lock = await acquireInstanceLock(machines);
    try {
      const dry = await runCli(["reconcile", "--config", config, "-d", machines, "--dry-run", "-o", "json"]);
      expect(dry.code).toBe(0);
      expect(JSON.parse(dry.stdout)).toMatchObject({ machines: 1, would_recover: [] });
    } finally {
      lock.release();
    }
  });

  it("is refused for other commands", async () => {
    const result = await runCli(["get", "--config", config, "-d", machines, "--dry-run"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--dry-run is only for reconcile");
  });
});

describe("an interrupted reconcile", () => {
  it("stops its hooks, reports the signal and what it skipped, and exits 128+signal", async () => {
    const names = Array.from({ length: 40 }, (_, i) => `vm${String(i).padStart(2, "0")}`);
    for (const name of names) await writeMachine(machines, name, machineToml(name));
    const pids = path.join(root, "hook-pids");
    await writeHook(hooks, "20-slow", `echo $$ >> '${pids}'; sleep 30`);
    const child = spawn(process.execPath, [CLI, "reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "-o", "json"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = once(child, "exit");
    await waitFor(async () => (await readFile(pids, "utf8").catch(() => "")).trim().split("\n").filter(Boolean).length >= 4, "the first slow hooks to start");
    child.kill("SIGTERM");
    const [code] = (await exited) as [number];
    expect(code).toBe(143);
    const summary = JSON.parse(stdout) as { interrupted: string; skipped: number; recovered: number; errors: number; machines: number };
    expect(summary).toMatchObject({ interrupted: "SIGTERM", recovered: 0, errors: 0 });
    expect(summary.skipped).toBe(names.length);
    // Every hook it started is gone, and every machine is still running (nothing was half-done).
    for (const pid of (await readFile(pids, "utf8")).trim().split("\n").map(Number)) {
      await waitFor(() => isProcessGone(pid), `hook ${pid} to be gone`);
    }
    for (const name of names) expect(await readFile(path.join(machines, name, "config.toml"), "utf8")).toContain('state = "running"');
  });
});

describe("a machines directory that cannot be used", () => {
  it("is a configuration error (exit 2) for every command, and nothing is created", async () => {
    const file = path.join(root, "not-a-directory");
    await writeFile(file, "");
    for (const command of [["reconcile"], ["reconcile", "--dry-run"], ["get"], ["validate"]]) {
      const result = await runCli([...command, "--config", config, "-d", file]);
      expect(result.code, command.join(" ")).toBe(2);
      expect(result.stderr, command.join(" ")).toContain(file);
    }
    const missing = path.join(root, "missing");
    const result = await runCli(["reconcile", "--config", config, "-d", missing]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`machines directory ${missing} does not exist`);
    expect(await readdir(root)).not.toContain("missing");
    await mkdir(missing);
  });
});
