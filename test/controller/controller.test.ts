/**
 * The reconcile loop end to end inside one process: real machines directories, real hook
 * executables, real VM stand-in processes, real file watching.
 */
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Controller } from "../../src/controller/controller.js";
import { LockHeldError } from "../../src/host/instance-lock.js";
import type { ControllerConfig } from "../../src/controller/config.js";
import { ControllerMetrics } from "../../src/metrics/controller-metrics.js";
import { isProcessGone, makeTempDir, removeTempDir, startProcess, stopProcess, waitFor, readPidFileIfPresent } from "../helpers/processes.js";
import { machineToml, memoryLogger, testConfig, writeHook, writeMachine } from "../helpers/machines.js";
import type { ChildProcess } from "node:child_process";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";

let root: string;
let machines: string;
let hooks: string;
let running: Controller[];
let children: ChildProcess[];

beforeEach(async () => {
  root = await makeTempDir("controller");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  await mkdir(machines);
  running = [];
  children = [];
});

afterEach(async () => {
  for (const controller of running) await controller.stop();
  for (const child of children) await stopProcess(child);
  await removeTempDir(root);
});

async function startController(overrides: Partial<ControllerConfig> = {}) {
  const { logger, lines } = memoryLogger();
  const metrics = new ControllerMetrics({ version: "test" });
  const controller = new Controller({ config: testConfig(machines, hooks, overrides), logger, metrics });
  await controller.start();
  running.push(controller);
  return { controller, metrics, lines };
}

const configOf = (name: string) => path.join(machines, name, "config.toml");
const stateOf = async (name: string) => /state = "(\w+)"/.exec(await readFile(configOf(name), "utf8"))?.[1];
const readLog = async (file: string) => (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean);

describe("recovery", () => {
  it("runs each hook once in name order with the specified argv, env and stdin, then persists stopped and nothing else", async () => {
    const original = machineToml("dev", { extra: "# a comment the controller must keep\nfuture_key = 'kept'" });
    await writeMachine(machines, "dev", original);
    const record = path.join(root, "record");
    // Each hook records its name, argv, cwd, exact environment and stdin.
    for (const name of ["20-second", "10-first"]) {
      await writeHook(
        hooks,
        name,
        `{ echo "hook=${name} argv=$0|$1|$2 cwd=$(pwd)"; tr '\\0' '\\n' < /proc/$$/environ | sort | sed 's/^/env /'; printf 'stdin '; cat; echo; } >> ${record}`,
      );
    }
    const { metrics } = await startController();
    await waitFor(async () => (await stateOf("dev")) === "stopped", "dev to be stopped");

    const lines = await readLog(record);
    const hookLines = lines.filter((line) => line.startsWith("hook="));
    expect(hookLines).toEqual([
      `hook=10-first argv=${path.join(hooks, "10-first")}|recover|dev cwd=/`,
      `hook=20-second argv=${path.join(hooks, "20-second")}|recover|dev cwd=/`,
    ]);
    const firstEnv = lines.slice(1, lines.indexOf(lines.find((l) => l.startsWith("stdin "))!)).map((l) => l.slice(4));
    expect(firstEnv).toEqual(
      [
        "ARCBOX_CONFIG=" + configOf("dev"),
        "ARCBOX_HOOK_ACTION=recover",
        "ARCBOX_MACHINE=dev",
        "ARCBOX_MACHINE_DIR=" + path.join(machines, "dev"),
        "ARCBOX_MACHINE_IP=10.0.2.15",
        "ARCBOX_VM_ID=0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      ].sort(),
    );
    const stdin = JSON.parse(lines.find((l) => l.startsWith("stdin "))!.slice(6)) as Record<string, unknown>;
    expect(stdin).toMatchObject({ name: "dev", cpus: 2, memory_mb: 4096, disk_gb: 20, state: "running", ip_address: "10.0.2.15", block_devices: [] });

    // Only the state's bytes changed.
    expect(await readFile(configOf("dev"), "utf8")).toBe(original.replace('state = "running"', 'state = "stopped"'));
    await waitFor(() => metrics.machines().find((m) => m.name === "dev")?.state === "stopped", "metrics to show dev stopped");
  });

  it("leaves a machine with a live VM process alone", async () => {
    await writeMachine(machines, "live", machineToml("live"));
    const vm = await startProcess("sleep", ["300"]);
    children.push(vm);
    await writeFile(path.join(machines, "live", "vm.pid"), `${vm.pid}\n`);
    const marker = path.join(root, "hook-ran");
    await writeHook(hooks, "10-mark", `touch ${marker}`);
    const { controller, metrics } = await startController({ liveness: "pidfile" });
    await controller.idle();
    await waitFor(() => metrics.machines().find((m) => m.name === "live"), "live to be observed");
    expect(await stateOf("live")).toBe("running");
    expect(metrics.machines().find((m) => m.name === "live")).toMatchObject({ state: "running", needsRecovery: false });
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
  });

  it("notices a VM that crashed and left its pid file behind, at the next re-check", async () => {
    await writeMachine(machines, "crash", machineToml("crash"));
    const vm = await startProcess("sleep", ["300"]);
    children.push(vm);
    await writeFile(path.join(machines, "crash", "vm.pid"), `${vm.pid}\n`);
    const { controller, metrics } = await startController({ liveness: "pidfile", recheckIntervalMs: 300 });
    await controller.idle();
    expect(metrics.machines().find((m) => m.name === "crash")).toMatchObject({ state: "running", needsRecovery: false });
    await stopProcess(vm); // no file changes: only the re-check can tell
    await waitFor(async () => (await stateOf("crash")) === "stopped", "the crashed VM's machine to be recovered");
  });

  it("does not count a reused pid: a process that started long after vm.pid was written", async () => {
    await writeMachine(machines, "reused", machineToml("reused"));
    const other = await startProcess("sleep", ["300"]);
    children.push(other);
    const pidFile = path.join(machines, "reused", "vm.pid");
    await writeFile(pidFile, `${other.pid}\n`);
    const past = new Date(Date.now() - 60_000);
    await utimes(pidFile, past, past);
    await startController({ liveness: "pidfile" });
    await waitFor(async () => (await stateOf("reused")) === "stopped", "reused to be recovered");
  });

  it("recovers every running machine with liveness = none, even with a live pid", async () => {
    await writeMachine(machines, "boot", machineToml("boot"));
    const vm = await startProcess("sleep", ["300"]);
    children.push(vm);
    await writeFile(path.join(machines, "boot", "vm.pid"), `${vm.pid}\n`);
    await startController({ liveness: "none" });
    await waitFor(async () => (await stateOf("boot")) === "stopped", "boot to be recovered");
  });

  it("waits out the startup grace for a freshly written running config", async () => {
    await writeMachine(machines, "booting", machineToml("booting"), { fresh: true });
    const { controller, metrics } = await startController({ liveness: "pidfile", startupGraceMs: 3000 });
    await controller.idle();
    // Still inside the grace period right after the first pass: not touched, but flagged.
    expect(await stateOf("booting")).toBe("running");
    await waitFor(() => metrics.machines().find((m) => m.name === "booting")?.needsRecovery, "booting to be flagged");
    await waitFor(async () => (await stateOf("booting")) === "stopped", "booting to be recovered after the grace");
  });

  it("has no startup grace with the daemon's liveness: no VM boots without the daemon", async () => {
    await writeMachine(machines, "fresh", machineToml("fresh"), { fresh: true });
    const { controller } = await startController({ liveness: "daemon", startupGraceMs: 3_600_000 });
    await controller.idle();
    expect(await stateOf("fresh")).toBe("stopped");
  });
});

describe("failures", () => {
  it("leaves the file running while a hook fails and retries with growing delays until it succeeds", async () => {
    await writeMachine(machines, "flaky", machineToml("flaky"));
    const attempts = path.join(root, "attempts");
    // Fails three times, then succeeds; records a timestamp (ms) per attempt.
    await writeHook(
      hooks,
      "10-flaky",
      `date +%s%3N >> ${attempts}\n[ "$(wc -l < ${attempts})" -ge 4 ] || { echo "bridge br0 is busy" >&2; exit 3; }`,
    );
    const { lines } = await startController();
    await waitFor(async () => (await readLog(attempts)).length >= 2, "a retry");
    expect(await stateOf("flaky")).toBe("running");
    await waitFor(async () => (await stateOf("flaky")) === "stopped", "flaky to be recovered", { timeoutMs: 30_000 });

    const times = (await readLog(attempts)).map(Number);
    expect(times).toHaveLength(4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // Backoff 100 ms, 200 ms, 400 ms: timers never fire early, so each gap is at least its delay
    // (less a little for the clock granularity of `date`).
    expect(gaps[0]).toBeGreaterThanOrEqual(90);
    expect(gaps[1]).toBeGreaterThanOrEqual(190);
    expect(gaps[2]).toBeGreaterThanOrEqual(390);
    const failure = lines().find((line) => line.msg === "reconcile failed; will retry");
    expect(failure).toMatchObject({ level: "error", machine: "flaky", hook: "10-flaky", exit_code: 3 });
    // The failure carries the id of the reconcile that failed, like every other line of it.
    expect(failure!.reconcile_id).toMatch(/^[0-9a-f]{8}$/);
    expect(lines().some((line) => line.reconcile_id === failure!.reconcile_id && line.msg !== failure!.msg)).toBe(true);
    expect(String(failure!.stderr)).toContain("bridge br0 is busy");
  });

  it("backs off a failing hook that touches its machine's own files, instead of spinning on its events", async () => {
    const file = await writeMachine(machines, "noisy", machineToml("noisy"));
    const attempts = path.join(root, "attempts");
    // Rewrites the config (same bytes) and the pid file, then fails.
    await writeHook(hooks, "10-noisy", `date +%s%3N >> ${attempts}
cp '${file}' '${file}.new' && mv '${file}.new' '${file}'
echo 1 > vm.pid
exit 1`);
    await startController();
    await waitFor(async () => (await readLog(attempts)).length >= 4, "four attempts", { timeoutMs: 30_000 });
    const times = (await readLog(attempts)).map(Number);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(90);
    expect(gaps[1]).toBeGreaterThanOrEqual(190);
    expect(gaps[2]).toBeGreaterThanOrEqual(390);
  });

  it("forgets a machine deleted while its hook runs, without counting an error", async () => {
    await writeMachine(machines, "doomed", machineToml("doomed"));
    await writeHook(hooks, "10-delete", `rm -rf '${path.join(machines, "doomed")}'`);
    const { controller, metrics, lines } = await startController();
    await controller.idle();
    // The write finds the directory gone: the reconcile starts over, and the fresh read finds no machine.
    await waitFor(() => lines().some((line) => line.msg === "config changed during reconcile; starting over from a fresh read"), "the deletion to be noticed");
    await waitFor(() => !metrics.machines().some((m) => m.name === "doomed"), "doomed to be forgotten");
    expect(lines().filter((line) => line.level === "error")).toEqual([]);
    expect(await metrics.metricsText()).toMatch(/^arcbox_reconcile_errors_total 0$/m);
    expect(metrics.machines().some((m) => m.name === "doomed")).toBe(false);
  });

  it("kills a hanging hook at the timeout together with its children, and keeps the file running", async () => {
    await writeMachine(machines, "hang", machineToml("hang"));
    const childPid = path.join(root, "child.pid");
    await writeHook(hooks, "10-hang", `sleep 300 & echo $! > ${childPid}\nwait`);
    const { lines } = await startController({ hookTimeoutMs: 400 });
    await waitFor(() => lines().find((line) => line.msg === "reconcile failed; will retry" && line.timed_out === true), "the timeout to be reported");
    const pid = await waitFor(() => readPidFileIfPresent(childPid), "the hook's child pid");
    await waitFor(() => isProcessGone(pid), "the hook's child to be killed");
    expect(await stateOf("hang")).toBe("running");
  });

  it("refuses a group-writable hook and does not recover", async () => {
    await writeMachine(machines, "guarded", machineToml("guarded"));
    const marker = path.join(root, "ran");
    await writeHook(hooks, "10-open", `touch ${marker}`, 0o775);
    const { lines } = await startController();
    await waitFor(() => lines().find((line) => line.msg === "reconcile failed; will retry"), "the refusal");
    const failure = lines().find((line) => line.msg === "reconcile failed; will retry")!;
    expect(String(failure.err)).toMatch(/writable by group/);
    expect(await stateOf("guarded")).toBe("running");
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
  });

  it("reports an invalid config once, never writes it, and goes on with the others", async () => {
    const bad = 'name = "bad"\ncpus = 4.0\nmemory_mb = 1\ndisk_gb = 1\nstate = "running"\nvm_id = "x"\n';
    const badPath = await writeMachine(machines, "bad", bad);
    const before = await stat(badPath);
    await writeMachine(machines, "good", machineToml("good"));
    const { controller, metrics, lines } = await startController();
    await waitFor(async () => (await stateOf("good")) === "stopped", "good to be recovered");
    await controller.idle();
    expect(await readFile(badPath, "utf8")).toBe(bad);
    expect((await stat(badPath)).mtimeMs).toBe(before.mtimeMs);
    expect(metrics.machines().find((m) => m.name === "bad")?.state).toBe("invalid");
    const warnings = lines().filter((line) => line.level === "warn" && line.machine === "bad");
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]!.err)).toContain(`${badPath}:2:`);
  });

  it("does not clobber a config edited during recovery: it starts over from a fresh read", async () => {
    await writeMachine(machines, "edited", machineToml("edited", { cpus: 2 }));
    const marker = path.join(root, "edited-once");
    const runs = path.join(root, "runs");
    // The first run edits the config (as a person would), the second does not.
    await writeHook(
      hooks,
      "10-edit",
      `echo run >> ${runs}\nif [ ! -e ${marker} ]; then touch ${marker}; sed 's/^cpus = 2$/cpus = 3/' "$ARCBOX_CONFIG" > "$ARCBOX_CONFIG.new" && mv "$ARCBOX_CONFIG.new" "$ARCBOX_CONFIG"; fi`,
    );
    const { metrics } = await startController();
    await waitFor(async () => (await stateOf("edited")) === "stopped", "edited to be recovered");
    const text = await readFile(configOf("edited"), "utf8");
    expect(text).toContain("cpus = 3");
    expect(await readLog(runs)).toHaveLength(2);
    expect(await metrics.metricsText()).toMatch(/arcbox_store_writes_total\{result="conflict"\} [1-9]/);
  });
  it("does not run the hooks twice when the config was only touched or rewritten unchanged during recovery", async () => {
    await writeMachine(machines, "touched", machineToml("touched"));
    await writeMachine(machines, "copied", machineToml("copied"));
    const runs = path.join(root, "runs");
    // During the hooks the file changes identity but not content: a new mtime, or a byte-identical copy renamed over it.
    await writeHook(
      hooks,
      "10-same",
      `echo "$ARCBOX_MACHINE" >> ${runs}
if [ "$ARCBOX_MACHINE" = touched ]; then touch -d '+1 min' "$ARCBOX_CONFIG"; else cp "$ARCBOX_CONFIG" "$ARCBOX_CONFIG.new" && mv "$ARCBOX_CONFIG.new" "$ARCBOX_CONFIG"; fi`,
    );
    const { controller, metrics, lines } = await startController();
    await waitFor(async () => (await stateOf("touched")) === "stopped" && (await stateOf("copied")) === "stopped", "both to be recovered");
    await controller.idle();
    expect((await readLog(runs)).sort()).toEqual(["copied", "touched"]);
    expect(await metrics.metricsText()).toMatch(/arcbox_store_writes_total\{result="conflict"\} [2-9]/);
    const recovered = lines().filter((line) => line.msg === "machine recovered");
    expect(recovered.map((line) => [line.machine, line.hooks]).sort()).toEqual([
      ["copied", ["10-same"]],
      ["touched", ["10-same"]],
    ]);
  });
});

describe("events", () => {
  it("reconciles a file edited while the service runs", async () => {
    await writeMachine(machines, "idle", machineToml("idle", { state: "stopped" }));
    const { controller, metrics } = await startController();
    await controller.idle();
    expect(metrics.machines().find((m) => m.name === "idle")?.state).toBe("stopped");
    await writeFile(configOf("idle"), machineToml("idle", { state: "running" }));
    // The file says `stopped` a moment before the recovery is counted (the directory fsync is last).
    await waitFor(async () => /arcbox_recoveries_total\{result="success"\} 1/.test(await metrics.metricsText()), "the recovery to be counted");
    expect(await stateOf("idle")).toBe("stopped");
  });

  it("sees edits that closely follow its own write (chokidar alone would drop them)", async () => {
    await writeMachine(machines, "again", machineToml("again", { state: "stopped" }));
    const { controller, metrics } = await startController({ liveness: "none" });
    await controller.idle();
    for (let round = 1; round <= 5; round++) {
      // Set it running the moment the controller has persisted `stopped`.
      await writeFile(configOf("again"), machineToml("again", { state: "running" }));
      await waitFor(async () => (await stateOf("again")) === "stopped", `recovery ${round}`);
    }
    await waitFor(async () => /arcbox_recoveries_total\{result="success"\} 5/.test(await metrics.metricsText()), "five recoveries counted");
  });

  it("picks up a machine created while running, and forgets a deleted one", async () => {
    const { controller, metrics } = await startController();
    await controller.idle();
    await writeMachine(machines, "late", machineToml("late", { state: "created" }));
    await waitFor(() => metrics.machines().find((m) => m.name === "late"), "late to be seen");
    await rm(path.join(machines, "late"), { recursive: true });
    await waitFor(() => !metrics.machines().some((m) => m.name === "late"), "late to be forgotten");
    expect(await metrics.metricsText()).not.toMatch(/machine="late"/);
  });
});

describe("a replaced machines directory", () => {
  it("is watched anew at once: a running machine in the new directory is recovered without waiting for a resync", async () => {
    await writeMachine(machines, "old", machineToml("old", { state: "stopped" }));
    const { controller, metrics } = await startController({ resyncIntervalMs: 3_600_000 });
    await controller.idle();
    await rename(machines, `${machines}.old`);
    await mkdir(machines);
    await writeMachine(machines, "fresh", machineToml("fresh"));
    await waitFor(async () => (await stateOf("fresh")) === "stopped", "the machine in the new directory to be recovered");
    // The old directory's machine is forgotten, with its series.
    await waitFor(() => !metrics.machines().some((m) => m.name === "old"), "old to be forgotten");
    expect(controller.liveness().find((check) => check.name === "watcher")).toMatchObject({ ok: true });
  });

  it("fails the watcher health check while the directory is gone", async () => {
    const { controller } = await startController();
    await rm(machines, { recursive: true });
    await waitFor(() => controller.liveness().find((check) => check.name === "watcher")?.ok === false, "the watcher check to fail");
    expect(controller.readiness().find((check) => check.name === "watcher")?.detail).toMatch(/is gone/);
    await mkdir(machines);
    await waitFor(() => controller.liveness().find((check) => check.name === "watcher")?.ok === true, "the watcher check to pass again");
  });
});

describe("the daemon's death", () => {
  const daemons: StandInDaemon[] = [];
  afterEach(async () => {
    for (const daemon of daemons.splice(0)) await daemon.kill();
  });
  async function daemonUp(): Promise<StandInDaemon> {
    const daemon = await startStandInDaemon(path.join(root, "run", "daemon.lock"));
    daemons.push(daemon);
    return daemon;
  }
  async function fleet(count: number): Promise<string[]> {
    const names = Array.from({ length: count }, (_, i) => `vm${String(i).padStart(3, "0")}`);
    for (const name of names) await writeMachine(machines, name, machineToml(name));
    return names;
  }
  const messages = (lines: () => Record<string, unknown>[]) => lines().map((line) => line.msg);
  const recoveredNames = (lines: () => Record<string, unknown>[]) =>
    lines().filter((line) => line.msg === "machine recovered").map((line) => line.machine);

  /**
   * During a bulk recovery without a watch (logged as `paused`), a machine appears; it is found by the
   * look at every machine once the watch is back, which comes once every machine has been taken up,
   * and edits are then seen at once.
   */
  async function expectLateFoundOnceWatchingAgain(controller: Controller, lines: () => Record<string, unknown>[], names: string[], paused: string) {
    // Well after the listing (it comes first), a machine appears: no watch reports it during the pause.
    await waitFor(() => recoveredNames(lines).length >= 20, "recoveries under way");
    await writeMachine(machines, "late", machineToml("late"));

    await waitFor(async () => (await stateOf("late")) === "stopped", "late to be recovered", { timeoutMs: 30_000 });
    for (const name of names) expect(await stateOf(name)).toBe("stopped");
    const log = lines();
    const watching = log.findIndex((line) => line.msg === "watching config files again; looking at every machine");
    expect(watching).toBeGreaterThan(log.findIndex((line) => line.msg === paused));
    // `late` was found by the look at every machine after the pause.
    expect(log.findIndex((line) => line.msg === "machine recovered" && line.machine === "late")).toBeGreaterThan(watching);
    // The watch comes back once every machine has been taken up: at most `workers` (4) still finishing.
    expect(log.slice(0, watching).filter((line) => line.msg === "machine recovered").length).toBeGreaterThanOrEqual(names.length - 4);
    expect(controller.liveness().find((check) => check.name === "watcher")?.detail).toBe("watching");

    // Watching again: an edit is seen at once.
    await writeMachine(machines, "vm000", machineToml("vm000"));
    await waitFor(() => recoveredNames(lines).filter((name) => name === "vm000").length === 2, "vm000 recovered again");
  }

  /** The daemon came back during a bulk recovery: the watch is on again, and every machine not yet recovered is left `running`. */
  async function expectTheRestLeftRunning(controller: Controller, lines: () => Record<string, unknown>[], names: string[]) {
    await waitFor(() => messages(lines).includes("watching config files again; looking at every machine"), "the watch to start again");
    await controller.idle();
    const recovered = recoveredNames(lines).length;
    expect(recovered).toBeLessThan(names.length);
    let stillRunning = 0;
    for (const name of names) if ((await stateOf(name)) === "running") stillRunning++;
    expect(stillRunning).toBe(names.length - recovered);
    expect(controller.liveness().find((check) => check.name === "watcher")?.detail).toBe("watching");
  }

  it("with most of a large fleet running, pauses the config watch until all are recovered, then looks at every machine again", async () => {
    const names = await fleet(120);
    await writeHook(hooks, "10-slow", "sleep 0.02");
    const daemon = await daemonUp();
    const { controller, lines } = await startController({ liveness: "daemon" });
    await controller.idle();
    expect(recoveredNames(lines)).toEqual([]);

    await daemon.kill();
    await waitFor(() => messages(lines).includes("pausing the config watch while the machines are recovered"), "the pause");
    expect(lines().find((line) => line.msg === "pausing the config watch while the machines are recovered")?.machines).toBe(120);
    expect(controller.liveness().find((check) => check.name === "watcher")).toMatchObject({ ok: true, detail: expect.stringMatching(/paused/) });
    expect(controller.readiness().every((check) => check.ok)).toBe(true);
    await expectLateFoundOnceWatchingAgain(controller, lines, names, "pausing the config watch while the machines are recovered");
  });

  it("started with the daemon down and a large fleet, recovers it before watching, then looks at every machine again", async () => {
    const names = await fleet(120);
    await writeHook(hooks, "10-slow", "sleep 0.02");
    const { controller, lines } = await startController({ liveness: "daemon" });
    const deferred = "the arcbox daemon is down: recovering the machines before watching config files";
    expect(lines().find((line) => line.msg === deferred)?.machines).toBe(120);
    expect(controller.readiness().every((check) => check.ok)).toBe(true);
    expect(controller.liveness().find((check) => check.name === "watcher")?.detail).toMatch(/paused/);
    await expectLateFoundOnceWatchingAgain(controller, lines, names, deferred);
  });

  it("started with the daemon down, starts watching as soon as the daemon is up, and leaves its machines running", async () => {
    const names = await fleet(120);
    await writeHook(hooks, "10-slow", "sleep 0.2");
    const { controller, lines } = await startController({ liveness: "daemon" });
    await waitFor(() => recoveredNames(lines).length >= 4, "the first recoveries");
    await daemonUp();
    await expectTheRestLeftRunning(controller, lines, names);
  });

  it("starts watching once every machine has been taken up, without waiting for a hung hook", async () => {
    await fleet(120);
    await writeHook(hooks, "10-hang", '[ "$2" = vm000 ] && exec sleep 60\nexit 0');
    const { lines } = await startController({ liveness: "daemon", hookTimeoutMs: 60_000, shutdownTimeoutMs: 100 });
    await waitFor(() => messages(lines).includes("watching config files again; looking at every machine"), "the watch to start");
    expect(recoveredNames(lines)).not.toContain("vm000");
    expect(await stateOf("vm000")).toBe("running");
  });

  it("started with the daemon down and a few machines, watches at once", async () => {
    await fleet(5);
    const { controller, lines } = await startController({ liveness: "daemon" });
    expect(controller.liveness().find((check) => check.name === "watcher")?.detail).toBe("watching");
    await waitFor(() => recoveredNames(lines).length === 5, "all five recovered");
    expect(messages(lines)).not.toContain("the arcbox daemon is down: recovering the machines before watching config files");
  });

  it("keeps watching when only a few machines were running", async () => {
    await fleet(5);
    const daemon = await daemonUp();
    const { controller, lines } = await startController({ liveness: "daemon" });
    await controller.idle();
    await daemon.kill();
    await waitFor(() => recoveredNames(lines).length === 5, "all five recovered");
    expect(messages(lines)).not.toContain("pausing the config watch while the machines are recovered");
    expect(controller.liveness().find((check) => check.name === "watcher")?.detail).toBe("watching");
  });

  it("ends the pause when the daemon is back, and leaves its machines running", async () => {
    const names = await fleet(120);
    await writeHook(hooks, "10-slow", "sleep 0.2");
    const first = await daemonUp();
    const { controller, lines } = await startController({ liveness: "daemon" });
    await controller.idle();
    await first.kill();
    await waitFor(() => recoveredNames(lines).length >= 4, "the first recoveries");
    await daemonUp();
    await expectTheRestLeftRunning(controller, lines, names);
  });
});

describe("lifecycle", () => {
  it("refuses a second controller on the same directory, naming the first one's pid", async () => {
    await startController();
    const { logger } = memoryLogger();
    const second = new Controller({ config: testConfig(machines, hooks), logger, metrics: new ControllerMetrics({ version: "test" }) });
    const error = await second.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LockHeldError);
    expect((error as LockHeldError).message).toContain(`pid ${process.pid}`);
  });

  it("starts over a lock file left by a killed controller, and removes its own leftover temp files", async () => {
    await writeMachine(machines, "m", machineToml("m", { state: "stopped" }));
    // A controller killed with SIGKILL leaves its lock file (the kernel dropped its flock).
    const lockFile = path.join(machines, ".arcbox-controller.lock");
    await writeFile(lockFile, "4242\n");
    // A crash mid-write leaves a temp file of ours; a person's editor leaves one that is not ours.
    const leftover = path.join(machines, "m", ".config.toml.arcbox-tmp-4242-0123456789ab");
    const editorSwap = path.join(machines, "m", ".config.toml.swp");
    await writeFile(leftover, "half");
    await writeFile(editorSwap, "not ours");
    const { controller, lines } = await startController();
    await controller.idle();
    await expect(stat(leftover)).rejects.toThrow(/ENOENT/);
    expect(await readFile(editorSwap, "utf8")).toBe("not ours");
    expect(lines().find((line) => line.msg === "removed leftover temp file")).toMatchObject({ path: leftover });
    expect(await readFile(lockFile, "utf8")).toBe(`${process.pid}\n`);
    await controller.stop();
    // Released: emptied, and nothing else of the lock's is left in the directory.
    expect(await readFile(lockFile, "utf8")).toBe("");
    expect((await readdir(machines)).filter((e) => e.startsWith(".arcbox-controller"))).toEqual([".arcbox-controller.lock"]);
  });

  it("stop() lets a running recovery finish before it resolves", async () => {
    await writeMachine(machines, "slow", machineToml("slow"));
    const started = path.join(root, "started");
    await writeHook(hooks, "10-slow", `touch '${started}'; sleep 1`);
    const { controller, lines } = await startController();
    await waitFor(() => stat(started).then(() => true, () => false), "the hook to start");
    expect(await controller.stop()).toBe(true);
    // Resolved only after the hook ended and the state was persisted.
    expect(await stateOf("slow")).toBe("stopped");
    // Drained in time: nothing was stopped, and nothing says so.
    expect(lines().filter((line) => line.level === "warn")).toEqual([]);
  });

  it("stop() stops running hooks when shutdown_timeout expires, and leaves their machines running", async () => {
    await writeMachine(machines, "stuck", machineToml("stuck"));
    const hookPid = path.join(root, "hook.pid");
    await writeHook(hooks, "10-stuck", `echo $$ > '${hookPid}'; sleep 300`);
    // A hook timeout far beyond the test: only the shutdown can stop the hook.
    const { controller } = await startController({ shutdownTimeoutMs: 300, hookTimeoutMs: 600_000 });
    const pid = await waitFor(() => readPidFileIfPresent(hookPid), "the hook to start");
    expect(await controller.stop()).toBe(false);
    expect(await isProcessGone(pid)).toBe(true);
    expect(await stateOf("stuck")).toBe("running");
  });

  it("is ready only after the first listing and not while shutting down", async () => {
    const { controller } = await startController();
    expect(controller.readiness().every((check) => check.ok)).toBe(true);
    await controller.stop();
    expect(controller.readiness().find((check) => check.name === "shutdown")?.ok).toBe(false);
  });
});
