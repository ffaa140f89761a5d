/**
 * A hooks directory that is wrong never passes for "no hooks" (docs/design.md#hooks-directory),
 * through the built CLI: a named one that is missing or untrusted stops `run` and `reconcile` before
 * they touch anything; the default one missing lets recoveries go on and says so everywhere; no hooks
 * by choice is announced; a directory that vanishes while the service runs fails each recovery.
 */
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli, snapshotTree, startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let machines: string;
let config: string;
let marker: string;
let services: RunningController[];

beforeEach(async () => {
  root = await makeTempDir("hooks-directory");
  machines = path.join(root, "machines");
  config = path.join(root, "controller.toml");
  marker = path.join(root, "hook-ran");
  await writeFile(config, "# defaults\n");
  await writeMachine(machines, "web", machineToml("web"));
  services = [];
});
afterEach(async () => {
  for (const service of services) await service.stop();
  await removeTempDir(root);
});

const stateOf = async () => /state = "(\w+)"/.exec(await readFile(path.join(machines, "web", "config.toml"), "utf8"))?.[1];
const base = (command: string) => [command, "--config", config, "-d", machines, "--liveness", "none"];

async function service(args: string[], env: Record<string, string> = {}): Promise<RunningController> {
  const started = await startControllerProcess([...base("run").slice(1), "--listen", "127.0.0.1:0", ...args], { env });
  services.push(started);
  return started;
}

describe("a hooks directory someone named", () => {
  const mistyped = () => path.join(root, "hook", "network.d");
  const namings = (): Array<[string, string[], Record<string, string>, string]> => [
    ["the option --hooks-dir", ["--hooks-dir", mistyped()], {}, "option --hooks-dir"],
    ["the environment", [], { ARCBOX_HOOKS_DIR: mistyped() }, "environment variable ARCBOX_HOOKS_DIR"],
    ["the config file", ["--config", path.join(root, "named.toml")], {}, `${path.join(root, "named.toml")}:1:1`],
  ];

  it("that does not exist stops run, reconcile and reconcile --dry-run with exit 2, naming it, and changes no file", async () => {
    await writeFile(path.join(root, "named.toml"), `hooks_dir = "${mistyped()}"\n`);
    const before = await snapshotTree(root);
    for (const [how, args, env, source] of namings()) {
      for (const command of [["run", "--listen", "127.0.0.1:0"], ["reconcile"], ["reconcile", "--dry-run"]]) {
        const result = await runCli([...base(command[0]!), ...command.slice(1), ...args], env);
        const what = `${command.join(" ")} with ${how}`;
        expect(result.code, what).toBe(2);
        expect(result.stderr, what).toContain(`hooks directory ${mistyped()} does not exist (named by ${source})`);
        expect(result.stderr, what).toContain("--no-hooks");
      }
    }
    expect(await snapshotTree(root)).toEqual(before);
    expect(await stateOf()).toBe("running");
  });

  it("that is a file, or that others can write, is refused the same way", async () => {
    const file = path.join(root, "hooks-file");
    await writeFile(file, "");
    const open = path.join(root, "open-hooks");
    await writeHook(open, "10-net", "exit 0");
    await chmod(open, 0o777);
    const before = await snapshotTree(root);
    for (const [dir, problem] of [
      [file, "is not a directory"],
      [open, `is not trusted: ${open} is writable by group and others (mode 0777)`],
    ] as const) {
      for (const command of [["run", "--listen", "127.0.0.1:0"], ["reconcile"]]) {
        const result = await runCli([...base(command[0]!), ...command.slice(1), "--hooks-dir", dir]);
        expect(result.code, `${command[0]} ${dir}`).toBe(2);
        expect(result.stderr, `${command[0]} ${dir}`).toContain(`hooks directory ${dir} ${problem}`);
      }
    }
    expect(await snapshotTree(root)).toEqual(before);
  });
});

describe("the default hooks directory missing (a new host)", () => {
  it("lets reconcile recover, with a start-up warning naming the directory and 'no hooks' on each recovery", async () => {
    const dataDir = path.join(root, "arcbox");
    const expected = path.join(dataDir, "hooks", "network.d");
    const result = await runCli(["reconcile", "--data-dir", dataDir, "-d", machines, "--liveness", "none"]);
    expect(result.code).toBe(0);
    const lines = result.stderr.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    const warnings = lines.filter((line) => line.level === "warn");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ hooks_dir: expected });
    expect(String(warnings[0]!.msg)).toContain(`the default ${expected} does not exist`);
    expect(lines.find((line) => line.msg === "machine recovered")).toMatchObject({ hooks: [], no_hooks: `the default hooks directory ${expected} does not exist` });
    expect(await stateOf()).toBe("stopped");
  });

  it("shows it in get, on the landing page and in the activity of the service, whose hooks run once the directory appears", async () => {
    const dataDir = path.join(root, "arcbox");
    const hooksDir = path.join(dataDir, "hooks", "network.d");
    await mkdir(dataDir);
    const get = await runCli(["get", "--data-dir", dataDir, "-d", machines]);
    expect(get.code).toBe(0);
    expect(get.stderr).toContain(`no hooks directory: the default ${hooksDir} does not exist, so a recovery would run no network hook`);

    const controller = await service(["--data-dir", dataDir]);
    await controller.ready();
    expect(controller.logs.filter((line) => line.level === "warn").map((line) => line.hooks_dir)).toEqual([hooksDir]);
    await waitFor(async () => (await stateOf()) === "stopped", "web to be recovered without hooks");
    const page = await (await fetch(`http://${controller.address}/`)).text();
    expect(page).toContain(`<p class="notice">Network hooks: none: the default hooks directory ${hooksDir} does not exist; recoveries run no hook</p>`);
    // The activity is recorded after the write.
    const recovered = await waitFor(async () => {
      const activity = (await (await fetch(`http://${controller.address}/activity`)).json()) as { events: Array<Record<string, unknown>> };
      return activity.events.find((event) => event.kind === "recovered");
    }, "the recovery in /activity");
    expect(recovered).toMatchObject({ machine: "web", hooks: [], no_hooks: `the default hooks directory ${hooksDir} does not exist` });

    // The directory appears: the next recovery runs its hook, and the page no longer warns.
    await writeHook(hooksDir, "10-net", `echo "$ARCBOX_MACHINE" >> '${marker}'`);
    await writeMachine(machines, "db", machineToml("db"));
    await waitFor(async () => (await readFile(marker, "utf8").catch(() => "")) === "db\n", "db's hook to run");
    expect(await (await fetch(`http://${controller.address}/`)).text()).not.toContain('class="notice"');
  });
});

describe("no hooks by choice", () => {
  it("--no-hooks: recoveries happen, announced once at start and on each recovery", async () => {
    const result = await runCli([...base("reconcile"), "--no-hooks"]);
    expect(result.code).toBe(0);
    const lines = result.stderr.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.filter((line) => line.level !== "info")).toEqual([]);
    expect(lines[0]).toMatchObject({ level: "info", msg: "running without network hooks (option --no-hooks)" });
    expect(lines.find((line) => line.msg === "machine recovered")).toMatchObject({ hooks: [], no_hooks: "hooks are off (option --no-hooks)" });
    expect(await stateOf()).toBe("stopped");
  });

  it('hooks_dir = "" in the config file does the same, and --hooks-dir with --no-hooks is a usage error', async () => {
    await writeFile(config, 'hooks_dir = ""\n');
    const controller = await service([]);
    await waitFor(async () => (await stateOf()) === "stopped", "web to be recovered");
    expect(controller.logs.find((line) => line.msg === "running without network hooks (" + config + ":1:1)")).toBeDefined();
    const both = await runCli([...base("reconcile"), "--no-hooks", "--hooks-dir", root]);
    expect([both.code, both.stderr]).toEqual([2, "arcbox-controller: options --no-hooks and --hooks-dir exclude each other\n"]);
  });
});

describe("the hooks directory lost while the service runs", () => {
  it("fails each recovery and keeps the machine running; recovers once the directory is back", async () => {
    const hooks = path.join(root, "hooks");
    await writeHook(hooks, "10-net", `echo "$ARCBOX_MACHINE" >> '${marker}'`);
    await writeMachine(machines, "web", machineToml("web", { state: "stopped" }));
    const controller = await service(["--hooks-dir", hooks]);
    await controller.ready();

    await rename(hooks, `${hooks}.away`);
    await writeMachine(machines, "web", machineToml("web"));
    const failed = await waitFor(() => controller.logs.find((line) => line.msg === "reconcile failed; will retry"), "the recovery to fail");
    expect(String(failed.err)).toContain(`hooks directory ${hooks} does not exist`);
    const metrics = await (await fetch(`http://${controller.address}/metrics`)).text();
    expect(metrics).toMatch(/^arcbox_recoveries_total\{result="error"\} [1-9]/m);
    expect(metrics).toMatch(/^arcbox_machines_needing_recovery 1$/m);
    expect(await stateOf()).toBe("running");
    expect(controller.logs.some((line) => line.msg === "machine recovered")).toBe(false);

    await rename(`${hooks}.away`, hooks);
    await waitFor(async () => (await stateOf()) === "stopped", "web to be recovered once the hooks are back");
    expect(await readFile(marker, "utf8")).toBe("web\n");
  });
});
