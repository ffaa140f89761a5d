/**
 * A path on a mount that never answers (docs/design.md#hung-mounts), through the built CLI, with a
 * real FUSE mount whose daemon never reads a request: a machine directory, the daemon's lock or the
 * hooks directory there fails on its own, with a clear error and `arcbox_unresponsive_paths`, while
 * the service goes on serving, recovering the other machines and stopping on SIGTERM.
 *
 * Mounting needs root and /dev/fuse. Where that is missing these tests are reported as skipped,
 * saying why, except under CI=true or ARCBOX_REQUIRE_FUSE=1 (set by .ci/run), where they fail.
 */
import { mkdir, readFile, symlink } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect } from "vitest";
import { runCli, startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { hungFuseUnavailable, mountHungFuse, type HungMount } from "../helpers/hung-mount.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { itWithPrerequisite } from "../helpers/tools.js";

if (process.env.CI === "true") process.env.ARCBOX_REQUIRE_FUSE = "1";

/** Long enough for a call to pass its 10 s deadline, a retry and a stop. */
const TEST_TIMEOUT_MS = 90_000;

let unavailable: string | undefined;
let scratch: string;
beforeAll(async () => {
  scratch = await makeTempDir("hung-probe");
  unavailable = await hungFuseUnavailable(path.join(scratch, "probe"));
});
afterAll(() => removeTempDir(scratch));

let root: string;
let data: string;
let machines: string;
let mounts: HungMount[];
let controller: RunningController | undefined;
beforeEach(async () => {
  root = await makeTempDir("hung-mounts");
  data = path.join(root, "data");
  machines = path.join(data, "machines");
  await mkdir(path.join(data, "hooks", "network.d"), { recursive: true });
  mounts = [];
});
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  for (const mount of mounts) await mount.unmount();
  await removeTempDir(root);
});

const fuse = { find: () => (unavailable === undefined ? true : undefined), get missing() {
  return `no FUSE mount that never answers can be made here (${unavailable})`;
}, requireEnv: "ARCBOX_REQUIRE_FUSE" };

async function hang(dir: string): Promise<HungMount> {
  const mount = await mountHungFuse(dir);
  mounts.push(mount);
  return mount;
}

const stateOf = async (name: string) => /state = "(\w+)"/.exec(await readFile(path.join(machines, name, "config.toml"), "utf8"))?.[1];

async function metrics(): Promise<string> {
  return (await fetch(`http://${controller!.address}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
}

async function metric(series: string): Promise<number> {
  return Number(new RegExp(`^${series.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(await metrics())?.[1]);
}

/** /healthz answers (within 30 s: a service whose loop is blocked never would). */
async function healthz(): Promise<number> {
  return (await fetch(`http://${controller!.address}/healthz`, { signal: AbortSignal.timeout(30_000) })).status;
}

function start(args: string[]): Promise<RunningController> {
  return startControllerProcess(["--data-dir", data, "--listen", "127.0.0.1:0", ...args]).then((started) => (controller = started));
}

const logged = (message: string | RegExp, fields: Record<string, unknown> = {}) => () =>
  controller!.logs.find(
    (line) =>
      (typeof message === "string" ? line.msg === message : message.test(String(line.msg))) &&
      Object.entries(fields).every(([key, value]) => (value instanceof RegExp ? value.test(String(line[key])) : line[key] === value)),
  );

describe("a machine directory on a mount that never answers", () => {
  itWithPrerequisite(
    "there at start: the service listens, recovers the others, reports the path and stops on SIGTERM",
    fuse,
    async () => {
      for (const name of ["web", "db"]) await writeMachine(machines, name, machineToml(name));
      await hang(path.join(machines, "stuck"));
      await start(["--liveness", "none"]);
      expect(await healthz()).toBe(200);
      await waitFor(async () => (await stateOf("web")) === "stopped" && (await stateOf("db")) === "stopped", "web and db to be recovered", { timeoutMs: 60_000 });
      expect(await healthz()).toBe(200);
      await waitFor(async () => (await metric('arcbox_unresponsive_paths{kind="machine"}')) === 1, "the stuck directory to be reported", { timeoutMs: 60_000 });
      const failure = await waitFor(logged(/^reconcile failed/, { machine: "stuck" }), "the stuck machine's reconcile to fail", { timeoutMs: 60_000 });
      expect(String(failure.err)).toMatch(/ETIMEDOUT .*hung mount/);
      expect(String(failure.err)).toContain(path.join(machines, "stuck"));
      expect(await metric('arcbox_unresponsive_paths{kind="daemon_lock"}')).toBe(0);
      expect(await controller!.stop()).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  itWithPrerequisite(
    "hanging while the service runs: other machines' edits are still recovered, and it is watched again once it answers",
    fuse,
    async () => {
      for (const name of ["web", "db"]) await writeMachine(machines, name, machineToml(name, { state: "stopped" }));
      await start(["--liveness", "none"]);
      await controller!.ready();
      // A new machine directory that hangs as soon as it appears.
      const mount = await hang(path.join(machines, "late"));
      await waitFor(async () => (await metric('arcbox_unresponsive_paths{kind="machine"}')) === 1, "the late directory to be reported", { timeoutMs: 60_000 });
      await writeMachine(machines, "web", machineToml("web"));
      await waitFor(async () => (await stateOf("web")) === "stopped", "web's edit to be recovered", { timeoutMs: 30_000 });
      expect(await healthz()).toBe(200);
      // Its daemon gone, the mount fails at once (ENOTCONN): it answers again.
      await mount.abort();
      await waitFor(async () => (await metric('arcbox_unresponsive_paths{kind="machine"}')) === 0, "the directory to answer again", { timeoutMs: 30_000 });
      await waitFor(logged("the path answers again", { path: path.join(machines, "late") }), "the log to say so");
      await writeMachine(machines, "db", machineToml("db"));
      await waitFor(async () => (await stateOf("db")) === "stopped", "db's edit to be recovered", { timeoutMs: 30_000 });
      expect(await controller!.stop()).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  itWithPrerequisite(
    "get and reconcile list the others and end, naming the path that does not answer",
    fuse,
    async () => {
      await writeMachine(machines, "web", machineToml("web"));
      await hang(path.join(machines, "stuck"));
      const get = await runCli(["get", "--data-dir", data, "--liveness", "none", "-o", "json"]);
      const listed = JSON.parse(get.stdout) as Array<{ name: string; status: string; error?: string }>;
      expect(listed.map((machine) => machine.name)).toEqual(["stuck", "web"]);
      expect(listed.find((machine) => machine.name === "web")?.status).toBe("NeedsRecovery");
      expect(JSON.stringify(listed.find((machine) => machine.name === "stuck"))).toMatch(/ETIMEDOUT/);
      const pass = await runCli(["reconcile", "--data-dir", data, "--liveness", "none", "--no-hooks", "-o", "json"]);
      expect(pass.code).toBe(1);
      expect(JSON.parse(pass.stdout)).toMatchObject({ machines: 2, recovered: 1, errors: 1 });
      expect(pass.stderr).toContain(path.join(machines, "stuck"));
      expect(await stateOf("web")).toBe("stopped");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("the daemon's lock on a mount that never answers", () => {
  itWithPrerequisite(
    "counts the daemon as running, reports the lock path, and the service goes on",
    fuse,
    async () => {
      await writeMachine(machines, "web", machineToml("web"));
      await hang(path.join(data, "run"));
      await start([]);
      expect(await healthz()).toBe(200);
      await waitFor(async () => (await metric('arcbox_unresponsive_paths{kind="daemon_lock"}')) === 1, "the lock to be reported", { timeoutMs: 60_000 });
      const warning = await waitFor(logged(/^cannot probe the arcbox daemon's lock/), "the probe's warning", { timeoutMs: 60_000 });
      expect(warning.code).toBe("ETIMEDOUT");
      expect(await metric("arcbox_daemon_up")).toBe(1);
      expect(await metric("arcbox_liveness_probe_errors_total")).toBeGreaterThan(0);
      expect(await stateOf("web")).toBe("running");
      expect(await healthz()).toBe(200);
      expect(await controller!.stop()).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  itWithPrerequisite(
    "never follows a lock that is a symlink, not even into the hung mount",
    fuse,
    async () => {
      await writeMachine(machines, "web", machineToml("web"));
      await hang(path.join(root, "elsewhere"));
      await mkdir(path.join(data, "run"));
      await symlink(path.join(root, "elsewhere", "daemon.lock"), path.join(data, "run", "daemon.lock"));
      const plan = await runCli(["reconcile", "--dry-run", "--data-dir", data, "-o", "json"]);
      expect(plan.code).toBe(0);
      expect(JSON.parse(plan.stdout)).toMatchObject({ would_recover: [] });
      expect(plan.stderr).toContain("is a symlink, not a regular file");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("the hooks directory on a mount that never answers", () => {
  itWithPrerequisite(
    "fails each recovery with a clear error, reports the path, and the service goes on",
    fuse,
    async () => {
      await writeMachine(machines, "web", machineToml("web"));
      const hooks = path.join(root, "hooks");
      await hang(hooks);
      await start(["--liveness", "none", "--hooks-dir", hooks]);
      await waitFor(logged(/^hooks directory .* does not answer/), "the start-up warning", { timeoutMs: 60_000 });
      expect(await healthz()).toBe(200);
      const failure = await waitFor(logged(/^reconcile failed/, { machine: "web" }), "web's recovery to fail", { timeoutMs: 60_000 });
      expect(String(failure.err)).toContain(`hooks directory ${hooks} does not answer`);
      expect(await metric('arcbox_unresponsive_paths{kind="hooks"}')).toBe(1);
      expect(await stateOf("web")).toBe("running");
      expect(await controller!.stop()).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});
