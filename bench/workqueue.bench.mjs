// Work queue overhead against a baseline measured in the same run: bare p-queue running the same
// trivial async tasks with the same concurrency. Run after `npm run build`:
//   node bench/workqueue.bench.mjs
import PQueue from "p-queue";
import { WorkQueue } from "../dist/controller/workqueue.js";

const KEYS = 20_000;
const WORKERS = 4;
const ROUNDS = 5;

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
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const base = await measure(baseline);
const rows = [
  ["p-queue baseline", base],
  ["WorkQueue, distinct keys", await measure(distinctKeys)],
  ["WorkQueue, 5 adds per key", await measure(burstyKeys)],
];
console.log(`work queue: ${KEYS} keys, ${WORKERS} workers, median of ${ROUNDS} rounds`);
for (const [name, ms] of rows) {
  const perKeyUs = (ms * 1000) / KEYS;
  console.log(`  ${name.padEnd(28)} ${ms.toFixed(1).padStart(8)} ms  ${perKeyUs.toFixed(2).padStart(6)} µs/key  ×${(ms / base).toFixed(2)}`);
}
