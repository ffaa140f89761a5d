/**
 * One machine directory the controller cannot read (root-owned, mode 0700, while the controller runs
 * as another user) never stops the others: the start-up sweep, loading, listing, `reconcile` and
 * `run` report that entry and go on. The EACCES is real: the built code runs as user nobody.
 */
import { once } from "node:events";
import { chmod, chown, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { machineToml } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { NOBODY, codeReadableByNobody, isRoot, runNodeAsNobody, spawnNodeAsNobody, writeScript } from "../helpers/unprivileged.js";

const TEMP = ".config.toml.arcbox-tmp-4242-0123456789ab";
const OK = ["ok-1", "ok-2", "ok-3"];

let root: string;
let app: string;
let machines: string;
let config: string;
let round = 0;

beforeAll(async () => {
  root = await makeTempDir("unreadable");
  await chmod(root, 0o755);
  app = await codeReadableByNobody(root);
  config = path.join(root, "controller.toml");
  await writeFile(config, "# defaults\n", { mode: 0o644 });
  console.log(
    isRoot
      ? `running the code as uid ${NOBODY} (nobody) from ${app}; "locked" is root-owned 0700`
      : `not root: running the code as this user, with "locked" at mode 0000 (EACCES for its owner too)`,
  );
});
afterAll(async () => {
  if (!isRoot) await chmod(path.join(machines, "locked"), 0o700).catch(() => undefined);
  await removeTempDir(root);
});

beforeEach(async () => {
  machines = path.join(root, `machines-${++round}`);
  await mkdir(machines, { mode: 0o755 });
  for (const name of [...OK, "locked"]) {
    await mkdir(path.join(machines, name), { mode: 0o755 });
    await writeFile(path.join(machines, name, "config.toml"), machineToml(name, { state: "running" }), { mode: 0o644 });
    await writeFile(path.join(machines, name, TEMP), "half a write", { mode: 0o600 });
    if (isRoot && name !== "locked") {
      for (const file of ["", "config.toml", TEMP]) await chown(path.join(machines, name, file), NOBODY, NOBODY);
    }
  }
  if (isRoot) await chown(machines, NOBODY, NOBODY);
  await chmod(path.join(machines, "locked"), isRoot ? 0o700 : 0o000);
});

async function lockedUntouched(): Promise<void> {
  if (!isRoot) await chmod(path.join(machines, "locked"), 0o700);
  expect((await readdir(path.join(machines, "locked"))).sort()).toEqual([TEMP, "config.toml"].sort());
  expect(await readFile(path.join(machines, "locked", "config.toml"), "utf8")).toBe(machineToml("locked", { state: "running" }));
}

async function othersRecovered(): Promise<void> {
  for (const name of OK) {
    expect(await readdir(path.join(machines, name)), name).toEqual(["config.toml"]);
    expect(await readFile(path.join(machines, name, "config.toml"), "utf8"), name).toBe(machineToml(name, { state: "stopped" }));
  }
}

describe("a machine directory that cannot be read", () => {
  it("the store API: the sweep reports it and cleans the others; loading reports it as invalid", async () => {
    const script = await writeScript(
      root,
      `api-${round}.mjs`,
      `import { MachineStore } from ${JSON.stringify(path.join(app, "dist", "index.js"))};
       const store = new MachineStore({ dir: process.argv[2] });
       const problems = [];
       const removed = await store.sweepTempFiles({ onProblem: (p) => problems.push({ path: p.path, code: p.code, message: p.message }) });
       const all = await store.loadAll();
       const locked = await store.load("locked").then(() => null, (e) => ({ name: e.name, message: e.message }));
       const updated = [];
       for (const name of ${JSON.stringify(OK)}) updated.push((await store.updateState(name, "stopped")).machine.state);
       process.stdout.write(JSON.stringify({ removed, problems, valid: all.machines.map((m) => m.machine.name),
         invalid: all.invalid.map((i) => ({ name: i.name, message: i.error.message })), locked, updated }));`,
    );
    const { code, stdout, stderr } = await runNodeAsNobody([script, machines]);
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout) as {
      removed: string[];
      problems: { path: string; code: string; message: string }[];
      valid: string[];
      invalid: { name: string; message: string }[];
      locked: { name: string; message: string };
      updated: string[];
    };
    const lockedDir = path.join(machines, "locked");
    expect(result.removed).toEqual(OK.map((name) => path.join(machines, name, TEMP)));
    expect(result.problems).toEqual([{ path: lockedDir, code: "EACCES", message: `${lockedDir}: open directory failed: EACCES (permission denied)` }]);
    expect(result.valid).toEqual(OK);
    expect(result.invalid).toEqual([{ name: "locked", message: `${lockedDir}: cannot be read: permission denied (EACCES)` }]);
    expect(result.locked).toEqual({ name: "InvalidConfigError", message: `${lockedDir}: cannot be read: permission denied (EACCES)` });
    expect(result.updated).toEqual(["stopped", "stopped", "stopped"]);
    await othersRecovered();
    await lockedUntouched();
  });

  it("`reconcile` recovers every other machine and counts it as invalid", async () => {
    const args = [path.join(app, "dist", "cli.cjs"), "reconcile", "--config", config, "-d", machines, "--no-hooks", "--liveness", "none", "-o", "json"];
    const { code, stdout, stderr } = await runNodeAsNobody(args);
    expect(code, stderr).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({ machines: 4, recovered: 3, errors: 0, invalid: 1, pending: 0 });
    const log = stderr.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    const lockedDir = path.join(machines, "locked");
    expect(log).toContainEqual(expect.objectContaining({ level: "warn", path: lockedDir, code: "EACCES", msg: "cannot remove leftover temp files here; skipping it" }));
    expect(log).toContainEqual(expect.objectContaining({ level: "warn", machine: "locked", path: lockedDir, msg: "invalid machine config; not touching it until it changes" }));
    await othersRecovered();
    await lockedUntouched();
  });

  it("`get` and `validate` show it as invalid, and the others as they are", async () => {
    const common = ["--config", config, "-d", machines, "--liveness", "none"];
    const lockedDir = path.join(machines, "locked");
    const get = await runNodeAsNobody([path.join(app, "dist", "cli.cjs"), "get", ...common, "-o", "json"]);
    expect(get.code, get.stderr).toBe(0);
    const rows = JSON.parse(get.stdout) as { name: string; status: string; error: string | null }[];
    expect(rows.map((row) => [row.name, row.status])).toEqual([["locked", "Invalid"], ...OK.map((name) => [name, "NeedsRecovery"])]);
    expect(rows[0]!.error).toBe(`${lockedDir}: cannot be read: permission denied (EACCES)`);
    const validate = await runNodeAsNobody([path.join(app, "dist", "cli.cjs"), "validate", ...common]);
    expect(validate.code).toBe(1);
    expect(validate.stdout + validate.stderr).toContain(`${lockedDir}/config.toml: cannot be read: permission denied (EACCES)`);
    await lockedUntouched();
  });

  it("`run` starts, recovers every other machine and reports it", async () => {
    const args = [path.join(app, "dist", "cli.cjs"), "run", "--config", config, "-d", machines, "--no-hooks", "--liveness", "none", "--listen", "127.0.0.1:0"];
    const child = spawnNodeAsNobody(args);
    const exited = once(child, "exit");
    const log: Record<string, unknown>[] = [];
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    createInterface({ input: child.stdout! }).on("line", (line) => log.push(JSON.parse(line) as Record<string, unknown>));
    try {
      await waitFor(() => log.filter((line) => line.msg === "machine recovered").length === OK.length || child.exitCode !== null, "three recoveries");
      await waitFor(() => log.some((line) => line.machine === "locked" && line.msg === "invalid machine config; not touching it until it changes") || child.exitCode !== null, "the report of the locked machine");
      expect(child.exitCode, stderr).toBeNull();
      expect(log).toContainEqual(expect.objectContaining({ level: "warn", path: path.join(machines, "locked"), code: "EACCES" }));
    } finally {
      child.kill("SIGTERM");
      const [code] = await exited;
      expect(code, stderr).toBe(0);
    }
    await othersRecovered();
    await lockedUntouched();
  });
});
