/**
 * `arcbox-controller run` as a process under signals and a full disk.
 */
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI, NO_HOME, startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { isProcessGone, makeTempDir, readPidFileIfPresent, removeTempDir, startProcess, stopProcess, waitFor } from "../helpers/processes.js";
import { mountFullTmpfs } from "../helpers/tmpfs.js";
import { startStandInDaemon } from "../helpers/daemon.js";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";

let root: string;
let machines: string;
let hooks: string;
let config: string;
let services: RunningController[];
let children: ChildProcess[];

beforeEach(async () => {
  root = await makeTempDir("service");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  config = path.join(root, "controller.toml");
  await writeFile(config, "# defaults\n");
  await mkdir(machines);
  await mkdir(hooks);
  services = [];
  children = [];
});

afterEach(async () => {
  for (const service of services) await service.stop();
  for (const child of children) await stopProcess(child);
  await removeTempDir(root);
});

async function service(args: string[] = [], machinesDir = machines): Promise<RunningController> {
  const started = await startControllerProcess(["--config", config, "--machines-dir", machinesDir, "--hooks-dir", hooks, "--listen", "127.0.0.1:0", ...args]);
  services.push(started);
  return started;
}

const stateOf = async (dir: string, name: string) => /state = "(\w+)"/.exec(await readFile(path.join(dir, name, "config.toml"), "utf8"))?.[1];

describe("signals", () => {
  it("SIGHUP looks at every machine again: a VM that died without a file event is noticed at once", async () => {
    await writeMachine(machines, "vm", machineToml("vm"));
    const vm = await startProcess("sleep", ["300"]);
    children.push(vm);
    await writeFile(path.join(machines, "vm", "vm.pid"), `${vm.pid}\n`);
    // No re-check and an hour-long resync: only the SIGHUP can make it look again.
    await writeFile(config, 'liveness = "pidfile"\nrecheck_interval = "0s"\nresync_interval = "1h"\n');
    const controller = await service();
    await waitFor(async () => (await (await fetch(`http://${controller.address}/metrics`)).text()).includes('arcbox_machines{state="running"} 1'), "vm to be observed");
    await stopProcess(vm);
    controller.child.kill("SIGHUP");
    await waitFor(async () => (await stateOf(machines, "vm")) === "stopped", "vm to be recovered after SIGHUP");
    expect(controller.child.exitCode).toBeNull();
    expect(controller.logs.some((line) => line.signal === "SIGHUP")).toBe(true);
  });

  it("SIGHUP retries at once a machine waiting out a failure's backoff, and logs how many machines it queued", async () => {
    await writeMachine(machines, "web", machineToml("web"));
    await writeMachine(machines, "db", machineToml("db", { state: "stopped" }));
    const hook = await writeHook(hooks, "10-net", "echo 'no bridge br0' >&2; exit 1");
    await writeFile(config, 'liveness = "none"\nresync_interval = "1h"\n');
    const controller = await service();
    const failures = () => controller.logs.filter((line) => line.msg === "reconcile failed; will retry");
    // Failures back off 100 ms, 200 ms, 400 ms …: wait for a retry at least 1.6 s away.
    const waiting = await waitFor(() => failures().find((line) => Number(line.retry_in_ms) >= 1600), "a backoff of 1.6 s or more");
    const retryDue = Date.parse(String(waiting.time)) + Number(waiting.retry_in_ms);
    await writeFile(hook, "#!/bin/sh\nexit 0\n");
    const failed = failures().length;
    controller.child.kill("SIGHUP");
    await waitFor(async () => (await stateOf(machines, "web")) === "stopped", "web to be recovered after SIGHUP");
    // The log line follows the write.
    const recovered = await waitFor(() => controller.logs.find((line) => line.msg === "machine recovered"), "the recovery's log line");
    // Retried because of the signal: before its backoff retry was due, and without failing again.
    expect(Date.parse(String(recovered.time))).toBeLessThan(retryDue);
    expect(failures()).toHaveLength(failed);
    const hangup = await waitFor(() => controller.logs.find((line) => line.signal === "SIGHUP"), "the SIGHUP line");
    expect(hangup).toMatchObject({ msg: "looking at every machine now", machines: 2, retried_early: 1 });
  });

  it("a SIGHUP while it is still starting does not kill it", async () => {
    // The config file is a FIFO: start-up waits in it, at a known point before the service's own
    // signal handling exists, until the test has sent its SIGHUP and written the settings.
    const fifo = path.join(root, "controller.fifo");
    execFileSync("mkfifo", [fifo]);
    const child = spawn(process.execPath, [CLI, "run", "--config", fifo, "-d", machines, "--hooks-dir", hooks, "--listen", "127.0.0.1:0"], {
      env: { PATH: process.env.PATH, HOME: NO_HOME },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    const exited = once(child, "exit");
    const writer = await open(fifo, "w"); // returns once the controller has opened it to read
    child.kill("SIGHUP");
    await writer.writeFile('liveness = "none"\n');
    await writer.close();
    await Promise.race([
      waitFor(() => out.includes('"msg":"listening"'), "the listening line"),
      exited.then(([code, signal]) => {
        throw new Error(`exited (${String(code)}, ${String(signal)}) after the SIGHUP`);
      }),
    ]);
  });

  it("a burst of SIGHUPs is one look at every machine", async () => {
    for (let i = 0; i < 200; i++) await writeMachine(machines, `vm${i}`, machineToml(`vm${i}`, { state: "stopped" }));
    // One machine whose recovery takes a while: the look lasts until it is done.
    await writeMachine(machines, "slow", machineToml("slow"));
    await writeHook(hooks, "10-net", '[ "$ARCBOX_MACHINE" != slow ] || sleep 2');
    await writeFile(config, 'liveness = "none"\nresync_interval = "1h"\n');
    const controller = await service();
    await controller.ready();
    await waitFor(async () => (await stateOf(machines, "slow")) === "stopped", "slow's first recovery");
    await writeMachine(machines, "slow", machineToml("slow"));
    const looks = () => controller.logs.filter((line) => line.msg === "looking at every machine now");
    for (let i = 0; i < 100; i++) {
      controller.child.kill("SIGHUP");
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const joined = await waitFor(() => controller.logs.find((line) => line.msg === "further SIGHUPs joined that look"), "the joined signals");
    expect(looks()).toHaveLength(1);
    expect(looks()[0]).toMatchObject({ machines: 201 });
    expect(Number(joined.joined)).toBeGreaterThan(0);
  });

  it("a second SIGTERM stops running hooks, waits for them, and exits 130 without leaving a hook behind", async () => {
    await writeMachine(machines, "vm", machineToml("vm"));
    const hookPid = path.join(root, "hook.pid");
    const childPid = path.join(root, "child.pid");
    await writeHook(hooks, "10-stuck", `sleep 300 & echo $! > '${childPid}'; echo $$ > '${hookPid}'; wait`);
    await writeFile(config, 'shutdown_timeout = "10m"\nhook_timeout = "10m"\n');
    const controller = await service();
    const pid = await waitFor(() => readPidFileIfPresent(hookPid), "the hook to start");
    const grandchild = await waitFor(() => readPidFileIfPresent(childPid), "the hook's child to start");
    controller.child.kill("SIGTERM");
    await waitFor(() => controller.logs.some((line) => line.msg === "shutting down"), "the graceful shutdown to begin");
    // Still waiting for the hook (shutdown_timeout is 10 minutes)…
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(controller.child.exitCode).toBeNull();
    // …until a second signal, more than a second after the first.
    controller.child.kill("SIGTERM");
    expect(await controller.stop()).toBe(130);
    expect(await isProcessGone(pid)).toBe(true);
    expect(await isProcessGone(grandchild)).toBe(true);
    expect(await stateOf(machines, "vm")).toBe("running");
  });
});

describe("a stop ends within shutdown_timeout plus the hooks' 5 s kill grace", () => {
  /** SIGTERM once; how long until the process exited, and its exit code. */
  async function timedStop(controller: RunningController): Promise<{ ms: number; code: number | null }> {
    const started = performance.now();
    const code = await controller.stop();
    return { ms: performance.now() - started, code };
  }

  it("with a hook that ignores SIGTERM: it is killed, the machine stays running, exit 0", async () => {
    await writeMachine(machines, "vm", machineToml("vm"));
    const hookPid = path.join(root, "hook.pid");
    await writeHook(hooks, "10-stuck", `trap '' TERM; echo $$ > '${hookPid}'; while :; do sleep 1; done`);
    await writeFile(config, 'liveness = "none"\nshutdown_timeout = "1s"\nhook_timeout = "10m"\n');
    const controller = await service();
    const pid = await waitFor(() => readPidFileIfPresent(hookPid), "the hook to start");
    const stop = await timedStop(controller);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(1000 + 5000);
    expect(controller.logs.at(-1)).toMatchObject({ msg: "stopped", drained: false });
    expect(await isProcessGone(pid)).toBe(true);
    expect(await stateOf(machines, "vm")).toBe("running");
  });

  it("after the arcbox daemon flapped up and down", async () => {
    for (let i = 0; i < 5; i++) await writeMachine(machines, `vm${i}`, machineToml(`vm${i}`));
    await writeFile(config, 'shutdown_timeout = "2s"\ndaemon_poll_interval = "20ms"\n');
    const controller = await service();
    await controller.ready();
    for (let round = 0; round < 5; round++) {
      const daemon = await startStandInDaemon(path.join(root, "run", "daemon.lock"));
      await waitFor(() => controller.logs.filter((line) => line.msg === "arcbox daemon is up").length > round, `the daemon up, round ${round}`);
      await daemon.kill();
    }
    const stop = await timedStop(controller);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(2000 + 5000);
    expect(controller.logs.at(-1)).toMatchObject({ msg: "stopped" });
  });
});

describe("a full disk", () => {
  it("does not stop the service: failed writes are reported with path and errno, retried, and succeed once space returns", async () => {
    const full = await mountFullTmpfs(root, async (dir) => {
      await writeMachine(path.join(dir, "machines"), "web", machineToml("web"));
    });
    const dir = path.join(full.dir, "machines");
    const controller = await service([], dir);
    try {
      const failure = await waitFor(() => controller.logs.find((line) => line.msg === "reconcile failed; will retry" && line.machine === "web"), "the failed write to be reported");
      expect(String(failure.err)).toContain(path.join(dir, "web", "config.toml"));
      expect(String(failure.err)).toContain("ENOSPC");
      expect(String(failure.err)).not.toMatch(/ENOSPC: ENOSPC/);
      await waitFor(() => controller.logs.filter((line) => line.msg === "reconcile failed; will retry" && line.machine === "web").length >= 2, "a retry");
      expect(await stateOf(dir, "web")).toBe("running");
      expect((await (await fetch(`http://${controller.address}/healthz`)).status)).toBe(200);
      await full.free();
      await waitFor(async () => (await stateOf(dir, "web")) === "stopped", "the recovery once space returned", { timeoutMs: 30_000 });
    } finally {
      expect(await controller.stop()).toBe(0);
      await full.unmount();
    }
  });
});
