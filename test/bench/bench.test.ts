/**
 * A smoke run of every benchmark at tiny sizes (a few machines, a second of storm), so the bench code
 * cannot rot: each bench runs as `npm run bench` runs it (its own Node process, the built CLI), exits 0,
 * prints its table and reports every figure with a number and a baseline measured beside it.
 * Timings are never asserted: they belong to the full run (docs/BENCHMARKS.md).
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

const BENCH = fileURLToPath(new URL("../../bench/", import.meta.url));

/** Every knob at a tiny size. */
const TINY: Record<string, string> = {
  BENCH_RECOVERY_SIZES: "6",
  BENCH_RAW_CONCURRENCY: "4,8",
  BENCH_ROUNDS: "1",
  BENCH_WIDE_WORKERS: "8",
  BENCH_LATENCY_MACHINES: "5",
  BENCH_LATENCY_ROUNDS: "3",
  BENCH_STORM_MACHINES: "6",
  BENCH_STORM_RATE: "12",
  BENCH_STORM_SECONDS: "1",
  BENCH_STORM_SETTLE_SECONDS: "1",
  BENCH_SCRAPE_MACHINES: "5",
  BENCH_SCRAPES: "3",
  BENCH_IDLE_MACHINES: "5",
  BENCH_IDLE_SECONDS: "1",
  BENCH_IDLE_SETTLE_SECONDS: "1",
  BENCH_WORKQUEUE_KEYS: "50",
  BENCH_WORKQUEUE_ROUNDS: "1",
};

interface Baseline {
  name: string;
  value: number | null;
  note?: string;
}
interface Figure {
  bench: string;
  figure: string;
  value: number | null;
  unit: string;
  baselines: Baseline[];
}
interface BenchRun {
  code: number | null;
  stdout: string;
  stderr: string;
  figures: Figure[];
  /** Everything it said, for assertion messages. */
  report: string;
}

let scratch: string;
beforeEach(async () => {
  scratch = await makeTempDir("bench-smoke");
});
afterEach(async () => {
  await removeTempDir(scratch);
});

/** Runs `node bench/SCRIPT ARGS` with the tiny knobs (and `env`) to completion. */
async function runBench(script: string, args: string[] = [], env: Record<string, string> = {}): Promise<BenchRun> {
  const results = path.join(scratch, `${script}.jsonl`);
  const child = spawn(process.execPath, [path.join(BENCH, script), ...args], {
    env: { ...process.env, ...TINY, BENCH_DIR: scratch, BENCH_RESULTS: results, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (exitCode) => resolve(exitCode));
  });
  const text = await readFile(results, "utf8").catch(() => "");
  const figures = text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Figure);
  return { code, stdout, stderr, figures, report: `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}` };
}

/**
 * The run succeeded and reported exactly figures matching `expected` (in order), each with a number,
 * printed in its table, with at least one baseline measured beside it. A baseline that could not be
 * measured must say why, and the reason is shown here too.
 */
function expectFigures(run: BenchRun, bench: string, expected: RegExp[]): void {
  expect(run.code, run.report).toBe(0);
  expect(run.stdout, run.report).toMatch(/^\| bench +\| figure +\| value +\| baseline \(same run\) +\| baseline value/m);
  expect(run.figures.map((figure) => figure.figure)).toHaveLength(expected.length);
  run.figures.forEach((figure, i) => {
    expect(figure.bench).toBe(bench);
    expect(figure.figure).toMatch(expected[i]!);
    expect(Number.isFinite(figure.value), `${figure.figure}: ${String(figure.value)}`).toBe(true);
    expect(run.stdout).toContain(figure.figure);
    expect(figure.baselines.some((baseline) => typeof baseline.value === "number" && Number.isFinite(baseline.value)), figure.figure).toBe(true);
    for (const baseline of figure.baselines) {
      if (baseline.value === null) {
        expect(baseline.note, `${figure.figure}: ${baseline.name} has no value and no reason`).toBeTruthy();
        console.warn(`bench smoke: ${bench}: baseline "${baseline.name}" not measured: ${baseline.note}`);
      } else {
        expect(Number.isFinite(baseline.value), `${figure.figure}: ${baseline.name}`).toBe(true);
      }
    }
  });
}

// Generous: the first run on a machine may build arcbox-core's loader (about two minutes).
const SLOW = 600_000;

describe("benchmarks at tiny sizes", () => {
  it(
    "recovery: the reconcile pass against the raw durable loop and the Rust loop, the daemon's death, and a start with the daemon down",
    async () => {
      const run = await runBench("recovery.bench.mjs");
      expectFigures(run, "recovery", [
        /^reconcile --liveness none, 6 running, no hooks \(workers = 4, the default\)$/,
        /^reconcile --liveness none, 6 running, no hooks, workers = 8$/,
        /^raw durable loop with the write protocol's checks, bare \(analysis: their least cost\), 6 running, (4|8) in flight$/,
        /^daemon death → detected/,
        /^daemon death: detected → all 6 stopped/,
        /^start-up with the daemon down: spawn → all 6 stopped/,
      ]);
      const [pass, wide] = run.figures;
      expect(pass!.baselines.map((baseline) => baseline.name)).toEqual([
        expect.stringMatching(/^raw durable loop \(best: (4|8) in flight\)$/),
        expect.stringMatching(/^arcbox-core Rust loop/),
        "raw durable loop at the same concurrency (4 in flight)",
      ]);
      expect(wide!.baselines.map((baseline) => baseline.name)[0]).toBe("raw durable loop at the same concurrency (8 in flight)");
      expect(run.stdout).toMatch(/raw durable loop by concurrency: 4: \d+ ms, 8: \d+ ms/);
      expect(run.figures[2]!.baselines.map((baseline) => baseline.name)).toEqual([expect.stringMatching(/^raw durable loop, runs in between \((4|8) in flight\)$/)]);
    },
    SLOW,
  );

  it(
    "storm: depth, latency, every edit recovered, memory before, during and after",
    async () => {
      const run = await runBench("storm.bench.mjs");
      expectFigures(run, "storm", [
        /^queue depth, max while 12 edits\/s for 1 s/,
        /^edit → recovered under the storm, p50/,
        /^edit → recovered under the storm, p99/,
        /^edits recovered, none overwritten$/,
        /RSS.*before the storm/,
        /RSS.*max during the storm/,
        /RSS.*after the last recovery/,
        /heap used.*before the storm/,
        /heap used.*max during the storm/,
        /heap used.*after the last recovery/,
      ]);
      const recovered = run.figures[3]!;
      expect(recovered.value).toBe(12);
      expect(recovered.baselines[0]!.value).toBe(12);
    },
    SLOW,
  );

  it(
    "latency: edit → recovered one at a time against a bare event and a bare durable write",
    async () => {
      expectFigures(await runBench("latency.bench.mjs"), "latency", [/^edit → recovered, one at a time, p50/, /^edit → recovered, one at a time, p99/]);
    },
    SLOW,
  );

  it(
    "scrape: time to first byte with and without per-machine series against the family alone",
    async () => {
      expectFigures(await runBench("scrape.bench.mjs"), "scrape", [
        /p50, 5 machines, per-machine series on$/,
        /p50, 5 machines, per-machine series off$/,
        /p99, 5 machines, per-machine series on$/,
        /p99, 5 machines, per-machine series off$/,
      ]);
    },
    SLOW,
  );

  it(
    "idle: CPU and wake-ups against chokidar alone",
    async () => {
      expectFigures(await runBench("idle.bench.mjs"), "idle", [/^idle CPU over 1 s, 5 machines/, /^idle wake-ups, main thread/, /^idle wake-ups, all threads/]);
    },
    SLOW,
  );

  it(
    "workqueue: WorkQueue against bare p-queue",
    async () => {
      expectFigures(await runBench("workqueue.bench.mjs"), "workqueue", [/^WorkQueue, 50 distinct keys/, /^WorkQueue, 50 keys added 5 times each/]);
    },
    SLOW,
  );

  it(
    "run.mjs runs the selected benches and prints the table of the whole run",
    async () => {
      const run = await runBench("run.mjs", ["workqueue"]);
      expect(run.code, run.report).toBe(0);
      expect(run.stdout).toContain("=== workqueue.bench.mjs ===");
      expect(run.stdout).toMatch(/## All figures \(1 of 1 benchmarks completed/);
      const table = run.stdout.slice(run.stdout.indexOf("## All figures"));
      expect(table).toMatch(/^\| workqueue +\| WorkQueue, 50 distinct keys/m);
    },
    SLOW,
  );

  it("a knob that is not a number stops a bench with a message naming it", async () => {
    const run = await runBench("storm.bench.mjs", [], { BENCH_STORM_RATE: "fast" });
    expect(run.code, run.report).toBe(2);
    expect(run.stderr).toContain("BENCH_STORM_RATE=fast: expected a positive number");
    expect(run.figures).toEqual([]);
  });
});
