// Work queue overhead against a baseline measured in the same run: bare p-queue (the peer it is built
// on) running the same trivial async tasks with the same concurrency. In process, on the built module.
//   node bench/workqueue.bench.mjs      (after npm run build)
// Knobs: BENCH_WORKQUEUE_KEYS (default 20000), BENCH_WORKQUEUE_ROUNDS (5: the median is reported).
import PQueue from "p-queue";
import { WorkQueue } from "../dist/controller/workqueue.js";
import { count, knob, Report } from "./lib/report.mjs";
import { median } from "./lib/stats.mjs";

const KEYS = knob("BENCH_WORKQUEUE_KEYS", 20_000);
const WORKERS = 4;
const ROUNDS = knob("BENCH_WORKQUEUE_ROUNDS", 5);

const keys = Array.from({ length: KEYS }, (_, i) => `machine-${i}`);
const work = async () => {
  await Promise.resolve();
};

/** Bare p-queue: one task per key, no per-key bookkeeping. */
async function baseline() {
  const pool = new PQueue({ concurrency: WORKERS });
  for (const key of keys) void pool.add(() => work(key));
  await pool.onIdle();
}

/** WorkQueue: each key added once. */
async function distinctKeys() {
  const queue = new WorkQueue({ workers: WORKERS, process: work });
  for (const key of keys) queue.add(key);
  await queue.onIdle();
}

/** WorkQueue: every key added 5 times in a burst (the watcher's pattern); duplicates are absorbed. */
async function burstyKeys() {
  const queue = new WorkQueue({ workers: WORKERS, process: work });
  for (let i = 0; i < 5; i++) for (const key of keys) queue.add(key);
  await queue.onIdle();
}

async function measure(run) {
  await run(); // warm-up
  const times = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  return median(times);
}

const report = new Report("workqueue");
const base = await measure(baseline);
const baselines = [{ name: `bare p-queue, one task per key, ${WORKERS} workers`, value: base }];
report.add({ figure: `WorkQueue, ${count(KEYS)} distinct keys, ${WORKERS} workers`, value: await measure(distinctKeys), unit: "ms", baselines });
report.add({ figure: `WorkQueue, ${count(KEYS)} keys added 5 times each`, value: await measure(burstyKeys), unit: "ms", baselines });
report.print();
