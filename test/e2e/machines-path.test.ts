/**
 * The machines directory as a path, through the built CLI (docs/design.md#instance-lock,
 * docs/design.md#shutdown): missing at start it is waited for, unhealthy meanwhile; replaced while
 * the service runs, its lock follows the path, so a second controller is refused; and a stop
 * ends within its bound whatever happened to the directory before.
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli, startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { startStandInDaemon, type StandInDaemon } from "../helpers/daemon.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

/** shutdown_timeout of these runs; a stop must end within it plus the hooks' 5 s kill grace. */
const SHUTDOWN_TIMEOUT_MS = 2000;
const STOP_BOUND_MS = SHUTDOWN_TIMEOUT_MS + 5000;

let root: string;
let machines: string;
let config: string;
let daemon: StandInDaemon | undefined;
let services: RunningController[];

beforeEach(async () => {
  root = await makeTempDir("machines-path");
  machines = path.join(root, "machines");
  config = path.join(root, "controller.toml");
  await writeFile(config, `shutdown_timeout = "${SHUTDOWN_TIMEOUT_MS}ms"\n`);
  services = [];
});
afterEach(async () => {
  for (const service of services) await service.stop();
  await daemon?.kill();
  daemon = undefined;
  await removeTempDir(root);
});

async function service(args: string[] = []): Promise<RunningController> {
  const started = await startControllerProcess(["--config", config, "-d", machines, "--no-hooks", "--listen", "127.0.0.1:0", ...args]);
  services.push(started);
  return started;
}

const health = async (controller: RunningController, endpoint: string) => {
  const response = await fetch(`http://${controller.address}/${endpoint}?verbose`);
  return { status: response.status, body: await response.text() };
};
const stateOf = async (name: string) => /state = "(\w+)"/.exec(await readFile(path.join(machines, name, "config.toml"), "utf8").catch(() => ""))?.[1];

/** SIGTERM, then how long the process took to exit and its exit code. */
async function timedStop(controller: RunningController): Promise<{ ms: number; code: number | null }> {
  const started = performance.now();
  const code = await controller.stop();
  return { ms: performance.now() - started, code };
}

describe("a machines directory missing at start", () => {
  it("is waited for: a warning, a failing watcher check, and a machine created once it exists is recovered", async () => {
    const controller = await service(["--liveness", "none"]);
    const warning = await waitFor(() => controller.logs.find((line) => line.level === "warn"), "the start-up warning");
    expect(warning).toMatchObject({ machines_dir: machines, msg: "the machines directory does not exist; waiting for it to appear" });
    for (const endpoint of ["healthz", "readyz"]) {
      const { status, body } = await health(controller, endpoint);
      expect(status, endpoint).toBe(503);
      expect(body, endpoint).toContain(`machines directory ${machines} does not exist`);
    }

    await mkdir(machines);
    await writeMachine(machines, "web", machineToml("web"));
    await waitFor(async () => (await stateOf("web")) === "stopped", "web to be recovered");
    expect((await health(controller, "healthz")).status).toBe(200);
    // The lock was taken once the directory appeared.
    expect(await readFile(path.join(machines, ".arcbox-controller.lock"), "utf8")).toBe(`${controller.child.pid}\n`);
    expect(await timedStop(controller)).toMatchObject({ code: 0 });
  });

  it("makes reconcile and reconcile --dry-run agree: exit 2, naming it, creating nothing", async () => {
    for (const extra of [[], ["--dry-run"]]) {
      const result = await runCli(["reconcile", "--config", config, "-d", machines, "--no-hooks", ...extra]);
      expect(result.code, extra.join(" ")).toBe(2);
      expect(result.stderr, extra.join(" ")).toContain(`arcbox-controller: machines directory ${machines} does not exist\n`);
    }
    await expect(readFile(machines)).rejects.toMatchObject({ code: "ENOENT" });
  });
});

type Liveness = "daemon up" | "daemon down" | "pidfile" | "none";

describe("a machines directory replaced while the service runs", () => {
  const cases: Array<[number, Liveness]> = [];
  for (const size of [0, 25, 1000]) for (const liveness of ["daemon up", "daemon down", "pidfile", "none"] as const) cases.push([size, liveness]);

  it.each(cases)("%i machines, liveness %s: a second controller is refused naming the first, which then stops in time", async (size, liveness) => {
    const names = Array.from({ length: size }, (_, i) => `vm${String(i).padStart(4, "0")}`);
    for (const name of names) await writeMachine(machines, name, machineToml(name));
    await mkdir(machines, { recursive: true });
    if (liveness === "daemon up") daemon = await startStandInDaemon(path.join(root, "run", "daemon.lock"));
    const mode = liveness.startsWith("daemon") ? "daemon" : liveness;
    const first = await service(["--liveness", mode]);
    await first.ready();
    // Those with no live VM are recovered first, as on a real host.
    if (liveness !== "daemon up" && size > 0) {
      await waitFor(async () => (await stateOf(names.at(-1)!)) === "stopped" && (await stateOf(names[0]!)) === "stopped", "the machines to be recovered", { timeoutMs: 60_000 });
    }

    await rename(machines, `${machines}.old`);
    await mkdir(machines);
    // The lock follows the path: the first controller takes it in the new directory.
    const lockFile = path.join(machines, ".arcbox-controller.lock");
    await waitFor(async () => (await readFile(lockFile, "utf8").catch(() => "")) === `${first.child.pid}\n`, "the lock in the new directory");

    const second = await runCli(["run", "--config", config, "-d", machines, "--no-hooks", "--liveness", mode, "--listen", "127.0.0.1:0"]);
    expect(second.code).toBe(75);
    expect(second.stderr).toContain(`another arcbox-controller (pid ${first.child.pid}) is already managing ${machines}`);

    const stop = await timedStop(first);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(STOP_BOUND_MS);
    expect(first.logs.at(-1)).toMatchObject({ msg: "stopped" });
  });

  it("stops in time when the directory was removed, recreated and removed again", async () => {
    await writeMachine(machines, "web", machineToml("web"));
    const first = await service(["--liveness", "none"]);
    await first.ready();
    // Moved away before removal: the controller may be writing its lock file into it meanwhile.
    const remove = async () => {
      await rename(machines, `${machines}.gone`);
      await rm(`${machines}.gone`, { recursive: true });
    };
    for (let round = 0; round < 3; round++) {
      await remove();
      await waitFor(async () => (await health(first, "healthz")).status === 503, "the watcher check to fail");
      await mkdir(machines);
      await waitFor(async () => (await health(first, "healthz")).status === 200, "the watcher check to pass");
    }
    await remove();
    const stop = await timedStop(first);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(STOP_BOUND_MS);
  });
});
