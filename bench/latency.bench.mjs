// Event-to-reconcile latency of the running controller against a baseline measured in the same run:
// the time the kernel and Node take to deliver a bare fs.watch event for the same kind of write.
//   npm run build && node bench/latency.bench.mjs
// Figures: write of `state = "running"` → file watched → queued → reconciled → `stopped` persisted
// (fsync'd). The controller runs with liveness = none and no hooks, among MACHINES other machines.
import { watch } from "node:fs";
import { mkdtemp, mkdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { Controller } from "../dist/controller/controller.js";
import { defaultConfig } from "../dist/controller/config.js";
import { ControllerMetrics } from "../dist/metrics/controller-metrics.js";
import { machineToml, percentile } from "./lib.mjs";

const MACHINES = Number(process.env.MACHINES ?? 1000);
const ROUNDS = Number(process.env.ROUNDS ?? 40);

function summary(label, times) {
  const at = (q) => percentile(times, q).toFixed(2);
  return { label, median_ms: at(0.5), p95_ms: at(0.95), max_ms: at(1) };
}

const root = await mkdtemp(join(tmpdir(), "arcbox-bench-latency-"));
try {
  const machines = join(root, "machines");
  for (let i = 0; i < MACHINES; i++) {
    const name = `m${String(i).padStart(4, "0")}`;
    await mkdir(join(machines, name), { recursive: true });
    await writeFile(join(machines, name, "config.toml"), machineToml(name, "stopped"));
  }
  const target = join(machines, "target");
  await mkdir(target);
  await writeFile(join(target, "config.toml"), machineToml("target", "stopped"));

  // Baseline: a bare fs.watch on a machine directory, same write.
  const baseline = [];
  {
    let resolveEvent;
    const watcher = watch(target, () => resolveEvent?.());
    for (let i = 0; i < ROUNDS; i++) {
      const seen = new Promise((resolve) => (resolveEvent = resolve));
      const start = performance.now();
      await writeFile(join(target, "config.toml"), machineToml("target", i % 2 ? "running" : "stopped"));
      await seen;
      baseline.push(performance.now() - start);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    watcher.close();
  }

  // The controller.
  const metrics = new ControllerMetrics({ version: "bench" });
  let onRecovered;
  const recoveryFinished = metrics.recoveryFinished.bind(metrics);
  metrics.recoveryFinished = (result) => {
    recoveryFinished(result);
    onRecovered?.(result);
  };
  const config = { ...defaultConfig(), machinesDir: machines, hooksDir: join(root, "no-hooks"), liveness: "none", startupGraceMs: 0 };
  const controller = new Controller({ config, logger: pino({ level: "silent" }), metrics });
  const startupBegan = performance.now();
  await controller.start();
  await controller.idle();
  const startupMs = performance.now() - startupBegan;

  const latencies = [];
  for (let i = 0; i < ROUNDS; i++) {
    const recovered = new Promise((resolve) => (onRecovered = resolve));
    const start = performance.now();
    await writeFile(join(target, "config.toml"), machineToml("target", "running"));
    const result = await recovered;
    if (result !== "success") throw new Error(`recovery failed in round ${i}`);
    latencies.push(performance.now() - start);
    await controller.idle();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await controller.stop();

  console.log(`machines: ${MACHINES + 1}, rounds: ${ROUNDS}, node ${process.version}`);
  console.log(`start-up (lock, watch, list, first reconcile of every machine): ${startupMs.toFixed(0)} ms`);
  console.table([summary("baseline: bare fs.watch event", baseline), summary("controller: write → recovered and persisted", latencies)]);
} finally {
  await rm(root, { recursive: true, force: true });
}
