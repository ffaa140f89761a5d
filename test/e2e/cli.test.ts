/**
 * The built CLI (`dist/cli.cjs`, made by `npm run build`, which `npm test` runs first) as a process,
 * on copies of the configs that arcbox-core's Rust code wrote.
 */
import { cp, readFile, readdir, rm, stat, writeFile, mkdir, symlink } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { CLI, runCli, snapshotTree as snapshot, startControllerProcess, type CliResult } from "../helpers/cli-process.js";
import { fixturesDir } from "../helpers/fixtures.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { coreCheckAll, itWithCoreLoader } from "../helpers/arcbox-core.js";

/** Runs the CLI to completion with a clean environment (no config file, no ARCBOX_* variables). */
function arcbox(args: string[]): Promise<CliResult> {
  return runCli(["--config", emptyConfig, ...args]);
}

let root: string;
let emptyConfig: string;

beforeEach(async () => {
  root = await makeTempDir("cli");
  emptyConfig = path.join(root, "controller.toml");
  await writeFile(emptyConfig, "# defaults\n");
});
afterEach(() => removeTempDir(root));

async function copyFixtures(layout: "toml05" | "toml08"): Promise<string> {
  const dir = path.join(root, layout);
  await cp(path.join(fixturesDir, layout), dir, { recursive: true });
  return dir;
}

describe("reconcile", () => {
  it.each([
    ["toml05", "none", ["default", "dev"]],
    ["toml08", "none", ["default"]],
    // No daemon holds <root>/run/daemon.lock: every running machine is stale.
    ["toml05", "daemon", ["default", "dev"]],
    ["toml08", "daemon", ["default"]],
  ] as const)("recovers the running machines of the %s fixtures with --liveness %s, changing nothing but state", async (layout, liveness, runningNames) => {
    const dir = await copyFixtures(layout);
    const before = await snapshot(dir);
    const result = await arcbox(["reconcile", "-d", dir, "--no-hooks", "--liveness", liveness, "-o", "json"]);
    expect(result.code).toBe(0);
    // The log goes to stderr: one `machine recovered` line per running machine, nothing above info.
    const logs = result.stderr.trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logs.filter((line) => line.msg === "machine recovered").map((line) => line.machine).sort()).toEqual([...runningNames]);
    expect(logs.filter((line) => line.level !== "info")).toEqual([]);
    const summary = JSON.parse(result.stdout) as Record<string, number>;
    const names = (await readdir(dir)).filter((entry) => entry !== ".arcbox-controller.lock");
    expect(summary).toMatchObject({ machines: names.length, recovered: runningNames.length, errors: 0, invalid: 0, pending: 0 });
    expect(typeof summary.duration_ms).toBe("number");

    for (const name of names) {
      const file = path.join(dir, name, "config.toml");
      const original = await readFile(path.join(fixturesDir, layout, name, "config.toml"), "utf8");
      const now = await readFile(file, "utf8");
      if ((runningNames as readonly string[]).includes(name)) {
        const quote = layout === "toml05" ? "'" : '"';
        expect(now).toBe(original.replace(`state = ${quote}running${quote}`, `state = ${quote}stopped${quote}`));
      } else {
        expect(before.get(file)).toBe(`${(await stat(file)).mtimeMs}:${Buffer.from(now).toString("base64")}`);
      }
    }
    // A second pass finds nothing to do.
    const again = await arcbox(["reconcile", "-d", dir, "--liveness", liveness]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^reconciled \d+ machines in \d+ms: 0 recovered, 0 errors, 0 invalid, 0 pending\n$/);
  });

  for (const liveness of ["none", "daemon"] as const) {
    itWithCoreLoader(`the fixtures recovered with --liveness ${liveness} load in arcbox-core with every field but state unchanged`, async (loader) => {
      for (const layout of ["toml05", "toml08"] as const) {
        const dir = await copyFixtures(layout);
        const names = (await readdir(dir)).sort();
        const before = await coreCheckAll(loader, dir, names);
        const result = await arcbox(["reconcile", "-d", dir, "--no-hooks", "--liveness", liveness, "-o", "json"]);
        expect(result.code).toBe(0);
        const after = await coreCheckAll(loader, dir, names);
        names.forEach((name, i) => {
          expect(after[i]?.ok, `${layout}/${name}: ${after[i]?.output}`).toBe(true);
          // Only the state changed, from Running to Stopped (arcbox-core's names), where it was running.
          expect(after[i]?.output).toBe(before[i]?.output.replace(" state=Running ", " state=Stopped "));
        });
        await rm(dir, { recursive: true });
      }
    });
  }

  it("exits 1 when a hook fails or a config is invalid, and counts machines inside the grace as pending", async () => {
    const dir = path.join(root, "machines");
    await writeMachine(dir, "fails", machineToml("fails"));
    await writeMachine(dir, "booting", machineToml("booting"), { fresh: true });
    await writeMachine(dir, "bad", 'name = "bad"\n');
    const hooks = path.join(root, "hooks");
    await mkdir(hooks);
    await writeFile(path.join(hooks, "10-fail"), '#!/bin/sh\n[ "$ARCBOX_MACHINE" = fails ] && { echo no route >&2; exit 4; }\nexit 0\n', { mode: 0o755 });
    const result = await arcbox(["reconcile", "-d", dir, "--hooks-dir", hooks, "--liveness", "pidfile", "-o", "json"]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ machines: 3, recovered: 0, errors: 1, invalid: 1, pending: 1 });
  });
});

describe("run", () => {
  it("logs listening with its address, reconciles an edit, and exits 0 on SIGTERM leaving no temp file", async () => {
    const dir = path.join(root, "machines");
    await writeMachine(dir, "web", machineToml("web", { state: "stopped" }));
    const controller = await startControllerProcess(["--config", emptyConfig, "-d", dir, "--no-hooks", "--listen", "127.0.0.1:0"]);
    try {
      expect(controller.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(controller.address).not.toBe("127.0.0.1:0");
      const metrics = await waitFor(async () => {
        const response = await fetch(`http://${controller.address}/metrics`);
        const text = await response.text();
        return /arcbox_machines\{state="stopped"\} 1/.test(text) ? text : null;
      }, "the machine to be counted");
      expect(metrics).toContain("arcbox_controller_build_info");

      // An edit to running with no VM; the file's mtime is set back past the startup grace.
      await writeMachine(dir, "web", machineToml("web", { state: "running" }));
      await waitFor(async () => (await readFile(path.join(dir, "web", "config.toml"), "utf8")).includes('state = "stopped"'), "the edit to be reconciled");
      // The log line follows the rename by the directory fsync: wait for it rather than race it.
      const recovered = await waitFor(() => controller.logs.find((line) => line.msg === "machine recovered"), "the recovery log line");
      expect(recovered).toMatchObject({ machine: "web", level: "info" });
    } finally {
      expect(await controller.stop()).toBe(0);
    }
    expect(controller.stderr()).toBe("");
    expect(controller.logs.at(-1)).toMatchObject({ msg: "stopped" });
    // Nothing is left behind but the (released, emptied) lock file.
    const leftovers = (await readdir(dir, { recursive: true })).filter((entry) => path.basename(entry).startsWith("."));
    expect(leftovers).toEqual([".arcbox-controller.lock"]);
    expect(await readFile(path.join(dir, ".arcbox-controller.lock"), "utf8")).toBe("");
  });

  it("refuses to start while another controller runs on the same directory", async () => {
    const dir = path.join(root, "machines");
    await mkdir(dir);
    const first = await startControllerProcess(["--config", emptyConfig, "-d", dir, "--listen", "127.0.0.1:0"]);
    try {
      await waitFor(() => first.logs.some((line) => line.msg === "controller started"), "the first controller");
      const second = await arcbox(["run", "-d", dir, "--listen", "127.0.0.1:0"]);
      expect(second.code).toBe(75);
      expect(second.stderr).toContain(`another arcbox-controller (pid ${first.child.pid}) is already managing ${dir}`);
    } finally {
      await first.stop();
    }
  });

  it("refuses to start, saying why, when the machines directory is a file", async () => {
    const file = path.join(root, "machines");
    await writeFile(file, "not a directory\n");
    const result = await arcbox(["run", "-d", file, "--liveness", "none", "--listen", "127.0.0.1:0"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`arcbox-controller: machines directory ${file} is not a directory\n`);
    expect(await readFile(file, "utf8")).toBe("not a directory\n");
  });
});

describe("get", () => {
  it("reports every fixture machine with its state, ip and cpus as JSON, and writes nothing", async () => {
    const dir = await copyFixtures("toml05");
    const before = await snapshot(dir);
    const result = await arcbox(["get", "-d", dir, "-o", "json"]);
    expect(result.code).toBe(0);
    const rows = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r.name, r.state, r.ip_address, r.cpus, r.memory_mb, r.status])).toEqual([
      ["build", "stopped", "10.0.2.16", 4, 8192, "Healthy"],
      ["default", "running", null, 4, 8192, "NeedsRecovery"],
      ["dev", "running", "10.0.2.15", 4, 8192, "NeedsRecovery"],
      ["fresh", "created", null, 4, 8192, "Healthy"],
    ]);
    for (const row of rows) {
      expect(row).toMatchObject({ alive: false, error: null, path: path.join(dir, row.name as string, "config.toml") });
    }
    expect(await snapshot(dir)).toEqual(before);
  });

  it("lists invalid entries too, in an aligned table", async () => {
    const dir = await copyFixtures("toml08");
    await writeMachine(dir, "broken", 'name = "broken"\ncpus = -1\n');
    await mkdir(path.join(dir, "bad name"));
    await writeMachine(dir, ".hidden", machineToml(".hidden"));
    await symlink(path.join(dir, "dev"), path.join(dir, "linked"));
    const before = await snapshot(dir);
    const result = await arcbox(["get", "-d", dir]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+ALIVE\s+IP\s+CPUS\s+MEMORY\s+AGE\s+STATUS$/);
    expect(lines).toHaveLength(7);
    // Aligned: every column starts at the same offset on every line.
    const statusColumn = lines[0]!.indexOf("STATUS");
    for (const line of lines.slice(1)) expect(line.slice(statusColumn)).toMatch(/^(Healthy|NeedsRecovery|NoConfig|Invalid: .+)$/);
    const byName = new Map(lines.slice(1).map((line) => [line.split(/\s+/)[0], line]));
    expect(byName.get("dev")).toMatch(/^dev\s+stopped\s+no\s+10\.0\.2\.15\s+2\s+4Gi\s+\S+\s+Healthy$/);
    expect(byName.get("default")).toMatch(/NeedsRecovery$/);
    expect(byName.get("broken")).toMatch(/Invalid: .*cpus/);
    expect(byName.get("linked")).toMatch(/Invalid: .*symbolic link/i);
    // arcbox-core's list() loads a hidden directory holding config.toml: the name rule makes it invalid.
    expect(byName.get(".hidden")).toMatch(/Invalid: .*invalid machine name.*arcbox-controller's own/);
    // a directory without config.toml is no machine: shown, not invalid
    expect(lines.find((line) => line.startsWith("bad name"))).toMatch(/NoConfig$/);
    expect(await snapshot(dir)).toEqual(before);
  });
});

describe("output read by a pipe that closes early (get | head)", () => {
  /** Runs the CLI with its stdout on a pipe that is closed after the first chunk; resolves the exit code and stderr. */
  function readFirstChunk(args: string[]): Promise<{ code: number | null; firstChunk: string; stderr: string }> {
    const child = spawn(process.execPath, [CLI, "--config", emptyConfig, ...args], { env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    return new Promise((resolve, reject) => {
      let firstChunk = "";
      child.stdout.once("data", (chunk: Buffer) => {
        firstChunk = chunk.toString("utf8");
        child.stdout.destroy();
      });
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, firstChunk, stderr }));
    });
  }

  it("ends quietly with the command's own exit code, for get as a table and as JSON, and for validate", async () => {
    // More output than a pipe holds (64 KiB) from each command, so that each meets the closed pipe.
    const dir = path.join(root, "many");
    for (let i = 0; i < 800; i++) {
      const name = `broken-${String(i).padStart(4, "0")}`;
      await writeMachine(dir, name, `name = "${name}"\ncpus = -1\n`);
    }
    for (const [args, code, first] of [
      [["get", "-d", dir, "-o", "json"], 0, /^\[\n  \{/],
      [["get", "-d", dir], 0, /^NAME\s+STATE/],
      [["validate", "-d", dir], 1, /broken-0000.*cpus/],
    ] as const) {
      const result = await readFirstChunk([...args]);
      expect(result.firstChunk).toMatch(first);
      expect(result.stderr).not.toMatch(/EPIPE|Unhandled|at /);
      expect(result.code).toBe(code);
    }
  });
});

describe("get and validate on a machines directory that is not there", () => {
  it("list no machine and say on stderr that the directory does not exist", async () => {
    const missing = path.join(root, "no-such-dir");
    const note = `arcbox-controller: machines directory ${missing} does not exist: no machines\n`;
    const get = await arcbox(["get", "-d", missing, "--no-hooks", "-o", "json"]);
    expect([get.code, get.stdout, get.stderr]).toEqual([0, "[]\n", note]);
    const validate = await arcbox(["validate", "-d", missing]);
    expect([validate.code, validate.stdout, validate.stderr]).toEqual([0, "", `${note}0 configs valid\n`]);
  });

  it("refuse a file in its place with exit 2, naming the path once", async () => {
    const file = path.join(root, "machines");
    await writeFile(file, "");
    const expected = `arcbox-controller: cannot list machines: ${file}: read directory failed: ENOTDIR (not a directory)\n`;
    for (const command of ["get", "validate"]) {
      const result = await arcbox([command, "-d", file]);
      expect([result.code, result.stdout, result.stderr]).toEqual([2, "", expected]);
    }
  });
});

describe("validate", () => {
  it("accepts every fixture machine directory", async () => {
    const targets: string[] = [];
    for (const layout of ["toml05", "toml08"]) {
      for (const name of await readdir(path.join(fixturesDir, layout))) targets.push(path.join(fixturesDir, layout, name));
    }
    const result = await arcbox(["validate", ...targets]);
    expect(result.stdout).toBe("");
    expect(result.code).toBe(0);
  });

  it("prints path:line:col: message for each bad file and exits 1", async () => {
    const dir = path.join(root, "machines");
    const bad = await writeMachine(dir, "bad", 'name = "bad"\ncpus = 4\nmemory_mb = 1\ndisk_gb = 1\nstate = "Running"\nvm_id = "x"\n');
    const broken = await writeMachine(dir, "broken", 'name = "broken"\ncpus = = 4\n');
    const good = await writeMachine(dir, "good", machineToml("good"));
    const before = await snapshot(dir);
    const result = await arcbox(["validate", bad, broken, good]);
    expect(result.code).toBe(1);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:5:\\d+: .*state`));
    expect(lines[1]).toMatch(new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:2:\\d+: `));
    expect(await snapshot(dir)).toEqual(before);
    // Without paths it checks the machines directory.
    const all = await arcbox(["validate", "-d", dir]);
    expect(all.code).toBe(1);
    expect(all.stdout.trimEnd().split("\n")).toHaveLength(2);
  });
});

describe("a machine nested too deeply or holding a long value among others", () => {
  /** toml08 fixtures, a machine nested 2,000 arrays deep, one with a 200,000-character kernel path, both persisted running. */
  async function machinesWithPathologicalOnes(): Promise<{ dir: string; deep: string }> {
    const dir = await copyFixtures("toml08");
    const deep = await writeMachine(dir, "deep", machineToml("deep", { extra: `x = ${"[".repeat(2000)}${"]".repeat(2000)}` }));
    await writeMachine(dir, "long", machineToml("long", { state: "stopped", extra: `kernel = "${"k".repeat(200_000)}"` }));
    return { dir, deep };
  }
  const deepLine = machineToml("deep").split("\n").length;
  const deepRule = /arrays and inline tables are nested more than 100 deep \(a rule of arcbox-controller's own; arcbox-core loads up to/;

  it("get lists every machine, the deep one invalid at its line and column, the long one read", async () => {
    const { dir, deep } = await machinesWithPathologicalOnes();
    const result = await arcbox(["get", "-d", dir, "--liveness", "none", "-o", "json"]);
    expect(result.code, result.stderr).toBe(0);
    const rows = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r.name, r.status])).toEqual([
      ["deep", "Invalid"],
      ["default", "NeedsRecovery"],
      ["dev", "Healthy"],
      ["long", "Healthy"],
    ]);
    expect(rows[0]?.error).toMatch(new RegExp(`^${deep.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:${deepLine}:105: `));
    expect(rows[0]?.error).toMatch(deepRule);
  });

  it("validate reports only the deep one, as path:line:col", async () => {
    const { dir, deep } = await machinesWithPathologicalOnes();
    const result = await arcbox(["validate", "-d", dir]);
    expect([result.code, result.stderr]).toEqual([1, "1 of 4 configs invalid\n"]);
    expect(result.stdout.startsWith(`${deep}:${deepLine}:105: arrays and inline tables are nested more than 100 deep`)).toBe(true);
    expect(result.stdout.trimEnd().split("\n")).toHaveLength(1);
  });

  it("run counts the deep one invalid and the others by state, without a failed reconcile", async () => {
    const { dir } = await machinesWithPathologicalOnes();
    const args = ["--config", emptyConfig, "-d", dir, "--no-hooks", "--liveness", "none", "--listen", "127.0.0.1:0"];
    const controller = await startControllerProcess(args);
    try {
      const metrics = await waitFor(async () => {
        const text = await (await fetch(`http://${controller.address}/metrics`)).text();
        return /arcbox_machines\{state="invalid"\} 1/.test(text) && /arcbox_machines\{state="stopped"\} 3/.test(text) ? text : null;
      }, "every machine to be counted");
      expect(metrics).toMatch(/arcbox_reconcile_errors_total 0/);
      const invalid = controller.logs.find((line) => line.msg === "invalid machine config; not touching it until it changes");
      expect(invalid).toMatchObject({ machine: "deep" });
    } finally {
      expect(await controller.stop()).toBe(0);
    }
  });
});

describe("usage", () => {
  it.each([
    [["frobnicate"], /unknown command "frobnicate"/],
    [["get", "--bogus"], /bogus/],
    [["get", "-o", "yaml"], /invalid output format "yaml"/],
    [["run", "--listen", "nowhere"], /--listen: invalid address "nowhere"/],
    [["run", "--workers", "0"], /--workers: invalid value "0"/],
    [["get", "--liveness", "maybe"], /--liveness: invalid value "maybe"/],
    [[], /missing command/],
  ])("%j exits 2 with one clear message", async (args, message) => {
    const result = await arcbox(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe("");
  });

  it("rejects an unknown key in the config file, naming file, line and key", async () => {
    const config = path.join(root, "bad.toml");
    await writeFile(config, 'workers = 2\nresync = "5m"\n');
    const { code, stderr } = await runCli(["get", "-c", config]);
    expect(code).toBe(2);
    expect(stderr).toContain(`${config}:2:1: unknown key "resync"`);
  });

  it("prints its version and help", async () => {
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect((await arcbox(["--version"])).stdout).toBe(`arcbox-controller ${pkg.version}\n`);
    const help = await arcbox(["--help"]);
    expect(help.code).toBe(0);
    for (const command of ["run", "reconcile", "get", "validate"]) expect(help.stdout).toContain(`arcbox-controller ${command}`);
  });
});
