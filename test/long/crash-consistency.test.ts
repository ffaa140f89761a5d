/**
 * Crash consistency, the long way (`npm run test:long`): the built CLI's `run` recovers 2,000
 * machines through a slow hook and is SIGKILLed at random moments, at least 200 times, from a seeded
 * random source whose seed is printed (ARCBOX_CRASH_SEED replays a run). After every kill:
 * - every config.toml is byte for byte its old or its new content (both parse: checked once);
 * - no machine is lost;
 * - nothing but config.toml and our own temp files is in a machine directory, and each temp file is
 *   gone once the next start-up has finished.
 * Between kills, the test plays arcbox and sets some recovered machines back to `running`, so that
 * every kill meets work in progress. A final undisturbed run converges every machine.
 *
 * Then racing writes: while the service recovers, another process keeps rewriting machines (by
 * rename, as arcbox does), each write a new generation; no generation is ever overwritten by an
 * older one, and in the end every machine holds its last generation, recovered.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readMachineConfig } from "../../src/store/index.js";
import { CLI } from "../helpers/cli-process.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

const MACHINES = 2_000;
const KILLS = 200;
/** Kills land uniformly between the spawn and this many ms after it (start-up takes about 1 s here). */
const MAX_KILL_DELAY_MS = 2_000;
/** Machines set back to `running` between kills. */
const REDIRTY = 40;
const WORKERS = 8;
const HOOK_SECONDS = "0.05";
const TEMP_FILE = /^\.config\.toml\.arcbox-tmp-\d+-[0-9a-f]{12}$/;

/** mulberry32: a small seeded generator, so a failing run can be replayed from its seed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const seed = Number(process.env.ARCBOX_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const random = seeded(seed);

const nameOf = (i: number) => `vm-${String(i).padStart(4, "0")}`;

/**
 * A config in one of the layouts arcbox-core writes (toml 0.8 declaration order, toml 0.5 sorted),
 * some with comments, literal strings, unknown keys and block devices, persisted as `running`.
 * Returns it with the exact bytes a minimal edit to `stopped` must produce.
 */
function machineTexts(i: number, extra = ""): { running: string; stopped: string } {
  const name = nameOf(i);
  const literal = i % 5 === 0;
  const state = (value: string) => (literal ? `state = '${value}'` : `state = "${value}"`);
  const devices = i % 3 === 0 ? `\n[[block_devices]]\npath = "/var/lib/arcbox/machines/${name}/data.img"\nread_only = false\n` : "";
  const lines =
    i % 2 === 0
      ? [
          `name = "${name}"`,
          `cpus = ${1 + (i % 8)}`,
          `memory_mb = ${1024 * (1 + (i % 16))}`,
          "disk_gb = 20",
          ...(devices ? [] : ["block_devices = []"]),
          'distro = "ubuntu"',
          ...(i % 4 === 0 ? [`ip_address = "10.0.${i >> 8}.${i & 255}"`] : []),
          "STATE",
          'vm_id = "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48"',
          'created_at = "2026-04-27T05:01:09.120004Z"',
        ]
      : [
          `# machine ${name}, written by hand`,
          `cpus = ${1 + (i % 8)}`,
          'created_at = "2026-04-27T05:01:09.120004Z"',
          "disk_gb = 40",
          `future_key = "kept ${i}"`,
          "memory_mb = 2048",
          `name = "${name}"`,
          "STATE",
          'vm_id = "7c1d4a8f-63f5-4597-ae40-cdc37145553a"',
        ];
  const text = `${lines.join("\n")}\n${extra}${devices}`;
  return { running: text.replace("STATE", state("running")), stopped: text.replace("STATE", state("stopped")) };
}

interface Controller {
  child: ChildProcess;
  logs: Record<string, unknown>[];
  exited: Promise<unknown>;
}

function startController(machines: string, hooks: string, config: string): Controller {
  const child = spawn(
    process.execPath,
    [CLI, "run", "--config", config, "-d", machines, "--hooks-dir", hooks, "--liveness", "none", "--listen", "127.0.0.1:0", "--workers", String(WORKERS)],
    { env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "inherit"] },
  );
  const logs: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line cut by SIGKILL.
    }
  });
  return { child, logs, exited: once(child, "exit") };
}

let root: string;
let machines: string;
let hooks: string;
let config: string;

beforeAll(async () => {
  root = await makeTempDir("crash");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  config = path.join(root, "controller.toml");
  await writeFile(config, "# defaults\n");
  await mkdir(hooks);
  await writeFile(path.join(hooks, "10-slow"), `#!/bin/sh\nsleep ${HOOK_SECONDS}\n`);
  await chmod(path.join(hooks, "10-slow"), 0o755);
});
afterAll(() => removeTempDir(root));

describe("SIGKILL at random moments", () => {
  it(`${KILLS} kills of \`run\` recovering ${MACHINES} machines: every file old or new, none lost, strays swept`, async () => {
    console.log(`crash consistency: seed ${seed} (ARCBOX_CRASH_SEED=${seed} replays it)`);
    const texts = Array.from({ length: MACHINES }, (_, i) => machineTexts(i));
    for (const [i, { running, stopped }] of texts.entries()) {
      await mkdir(path.join(machines, nameOf(i)), { recursive: true });
      await writeFile(path.join(machines, nameOf(i), "config.toml"), running);
      if (i < 8) {
        // Both versions are valid configs (the controller's own reader), so "old or new" implies "parses".
        for (const text of [running, stopped]) {
          await writeFile(path.join(root, "check.toml"), text);
          await readMachineConfig(path.join(root, "check.toml"));
        }
      }
    }

    const stats = { kills: 0, afterStartup: 0, midWrite: 0, strays: 0, swept: 0, recoveries: 0, torn: 0, lost: 0, redirtied: 0 };
    /** Temp files seen after a kill, which the next completed start-up must have removed. */
    let pending: string[] = [];
    const started = Date.now();
    for (let round = 0; round < KILLS; round++) {
      const controller = startController(machines, hooks, config);
      const delay = Math.floor(random() * MAX_KILL_DELAY_MS);
      await new Promise((resolve) => setTimeout(resolve, delay));
      controller.child.kill("SIGKILL");
      await controller.exited;
      stats.kills++;
      const startedUp = controller.logs.some((line) => line.msg === "controller started");
      if (startedUp) {
        stats.afterStartup++;
        for (const stray of pending) {
          await expect(readFile(stray), `${stray} survived the start-up of round ${round}`).rejects.toThrow(/ENOENT/);
        }
        stats.swept += pending.length;
        pending = [];
      }
      stats.recoveries += controller.logs.filter((line) => line.msg === "machine recovered").length;

      let strayThisRound = 0;
      const converged: number[] = [];
      for (let i = 0; i < MACHINES; i++) {
        const dir = path.join(machines, nameOf(i));
        const entries = await readdir(dir).catch(() => [] as string[]);
        if (!entries.includes("config.toml")) {
          stats.lost++;
          throw new Error(`round ${round} (seed ${seed}): ${dir}/config.toml is missing`);
        }
        for (const entry of entries) {
          if (entry === "config.toml") continue;
          expect(entry, `round ${round} (seed ${seed}): unexpected file in ${dir}`).toMatch(TEMP_FILE);
          pending.push(path.join(dir, entry));
          strayThisRound++;
        }
        const bytes = await readFile(path.join(dir, "config.toml"), "utf8");
        if (bytes === texts[i]!.stopped) converged.push(i);
        else if (bytes !== texts[i]!.running) {
          stats.torn++;
          throw new Error(`round ${round} (seed ${seed}): ${dir}/config.toml is neither its old nor its new content:\n${bytes}`);
        }
      }
      if (strayThisRound > 0) stats.midWrite++;
      stats.strays += strayThisRound;

      // arcbox starts some machines again (by rename, as it writes), so the next run has work.
      for (let k = 0; k < REDIRTY && converged.length > 0; k++) {
        const i = converged.splice(Math.floor(random() * converged.length), 1)[0]!;
        const file = path.join(machines, nameOf(i), "config.toml");
        await writeFile(`${file}.arcbox-writing`, texts[i]!.running);
        await rename(`${file}.arcbox-writing`, file);
        stats.redirtied++;
      }
    }

    // A final undisturbed run: everything converges, and every stray is swept.
    const last = startController(machines, hooks, config);
    await waitFor(() => last.logs.some((line) => line.msg === "controller started"), "the final start-up", { timeoutMs: 60_000 });
    for (const stray of pending) await expect(readFile(stray), `${stray} survived the final start-up`).rejects.toThrow(/ENOENT/);
    stats.swept += pending.length;
    await waitFor(
      async () => {
        for (let i = 0; i < MACHINES; i++) {
          if ((await readFile(path.join(machines, nameOf(i), "config.toml"), "utf8")) !== texts[i]!.stopped) return false;
        }
        return true;
      },
      "every machine to converge",
      { timeoutMs: 300_000, intervalMs: 500 },
    );
    last.child.kill("SIGTERM");
    const [code] = (await last.exited) as [number | null];
    expect(code).toBe(0);
    for (let i = 0; i < MACHINES; i++) expect(await readdir(path.join(machines, nameOf(i)))).toEqual(["config.toml"]);

    console.log(
      `crash consistency (seed ${seed}, ${Math.round((Date.now() - started) / 1000)} s): ${stats.kills} SIGKILLs ` +
        `(${stats.afterStartup} after start-up had finished), ${stats.midWrite} left a write half-done (${stats.strays} temp files, ` +
        `all ${stats.swept} swept at the next start-up), ${stats.recoveries} recoveries logged before the kills, ` +
        `${stats.redirtied} machines set back to running between kills; torn files ${stats.torn}, lost files ${stats.lost}; ` +
        `final run: all ${MACHINES} converged`,
    );
    expect(stats.kills).toBeGreaterThanOrEqual(200);
    expect(stats.midWrite).toBeGreaterThan(0);
  });
});

describe("racing writes", () => {
  it("another writer rewriting machines while the service recovers them: no write is lost", async () => {
    const race = path.join(root, "race");
    const texts = (i: number, generation: number) => machineTexts(i, `generation = ${generation}\n`);
    for (let i = 0; i < MACHINES; i++) {
      await mkdir(path.join(race, nameOf(i)), { recursive: true });
      await writeFile(path.join(race, nameOf(i), "config.toml"), texts(i, 0).running);
    }
    const controller = startController(race, hooks, config);
    await waitFor(() => controller.logs.some((line) => line.msg === "controller started"), "start-up", { timeoutMs: 60_000 });

    // The other writer: a separate process, so that it runs truly alongside the service. Most of its
    // writes go to a small hot set, so that many land while that machine's recovery is under way.
    const writer = `
      const fs = require("fs"), path = require("path");
      const [dir, count, seconds, seedText] = process.argv.slice(1);
      let a = Number(seedText) >>> 0;
      const random = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32; };
      const generation = new Map();
      let writes = 0, regressions = 0;
      const end = Date.now() + Number(seconds) * 1000;
      (function loop() {
        for (let k = 0; k < 20; k++) {
          const i = random() < 0.8 ? Math.floor(random() * 50) : Math.floor(random() * Number(count));
          const name = "vm-" + String(i).padStart(4, "0");
          const file = path.join(dir, name, "config.toml");
          const current = fs.readFileSync(file, "utf8");
          const seen = Number(/^generation = (\\d+)$/m.exec(current)[1]);
          if (seen < (generation.get(i) ?? 0)) regressions++;
          const next = (generation.get(i) ?? 0) + 1;
          generation.set(i, next);
          const text = current.replace(/^generation = \\d+$/m, "generation = " + next).replace(/^state = (["'])stopped\\1$/m, "state = $1running$1");
          fs.writeFileSync(file + ".arcbox-writing", text);
          fs.renameSync(file + ".arcbox-writing", file);
          writes++;
        }
        if (Date.now() < end) setTimeout(loop, 2);
        else process.stdout.write(JSON.stringify({ writes, regressions, generation: [...generation] }));
      })();`;
    const child = spawn(process.execPath, ["-e", writer, race, String(MACHINES), "20", String(seed)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    await once(child, "exit");
    const result = JSON.parse(out) as { writes: number; regressions: number; generation: [number, number][] };
    const last = new Map(result.generation);

    await waitFor(
      async () => {
        for (let i = 0; i < MACHINES; i++) {
          if (!(await readFile(path.join(race, nameOf(i), "config.toml"), "utf8")).includes("stopped")) return false;
        }
        return true;
      },
      "every machine to be recovered after the writer stopped",
      { timeoutMs: 300_000, intervalMs: 500 },
    );
    let lost = 0;
    for (let i = 0; i < MACHINES; i++) {
      const text = await readFile(path.join(race, nameOf(i), "config.toml"), "utf8");
      if (text !== texts(i, last.get(i) ?? 0).stopped) lost++;
    }
    const address = controller.logs.find((line) => line.msg === "listening")?.address as string;
    const metrics = await (await fetch(`http://${address}/metrics`)).text();
    const conflicts = Number(/^arcbox_store_writes_total\{result="conflict"\} (\d+)/m.exec(metrics)?.[1]);
    const recoveries = Number(/^arcbox_recoveries_total\{result="success"\} (\d+)/m.exec(metrics)?.[1]);
    controller.child.kill("SIGTERM");
    await controller.exited;
    console.log(
      `racing writes (seed ${seed}): ${result.writes} writes by another process to ${last.size} machines over 20 s, ` +
        `${recoveries} recoveries, ${conflicts} conflicts detected and retried; ` +
        `generations gone backwards ${result.regressions}, final files not at their last generation ${lost}`,
    );
    expect(result.writes).toBeGreaterThan(1000);
    expect(conflicts).toBeGreaterThan(0);
    expect(result.regressions).toBe(0);
    expect(lost).toBe(0);
  });
});
