// One full `reconcile` pass over many machines against a baseline measured in the same run:
// reading and validating every config (MachineStore.loadAll), the floor of any pass.
//   npm run build && node bench/reconcile-pass.bench.mjs
// A tenth of the machines are `running` with no VM and are recovered (no hooks); the rest are
// stopped. Each round works on a fresh copy.
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { reconcileOnce } from "../dist/controller/reconcile-pass.js";
import { defaultConfig } from "../dist/controller/config.js";
import { ControllerMetrics } from "../dist/metrics/controller-metrics.js";
import { MachineStore } from "../dist/store/index.js";
import { machineToml, percentile } from "./lib.mjs";

const MACHINES = Number(process.env.MACHINES ?? 10_000);
const ROUNDS = 3;

const root = await mkdtemp(join(tmpdir(), "arcbox-bench-pass-"));
try {
  const template = join(root, "template");
  for (let i = 0; i < MACHINES; i++) {
    const name = `m${String(i).padStart(5, "0")}`;
    await mkdir(join(template, name), { recursive: true });
    await writeFile(join(template, name, "config.toml"), machineToml(name, i % 10 === 0 ? "running" : "stopped"));
  }
  const loadAll = [];
  const pass = [];
  let summary;
  for (let round = 0; round < ROUNDS; round++) {
    const dir = join(root, `round-${round}`);
    await cp(template, dir, { recursive: true });
    let start = performance.now();
    const { machines } = await new MachineStore({ dir }).loadAll();
    loadAll.push(performance.now() - start);
    if (machines.length !== MACHINES) throw new Error(`loadAll read ${machines.length} machines`);

    const config = { ...defaultConfig(), machinesDir: dir, hooksDir: join(root, "no-hooks"), liveness: "none" };
    start = performance.now();
    summary = await reconcileOnce({ config, logger: pino({ level: "silent" }), metrics: new ControllerMetrics({ version: "bench" }) });
    pass.push(performance.now() - start);
    await rm(dir, { recursive: true, force: true });
  }
  const median = (xs) => percentile(xs, 0.5);
  console.log(`machines: ${MACHINES} (${MACHINES / 10} recovered per pass), median of ${ROUNDS} rounds, node ${process.version}`);
  console.log(`  baseline: MachineStore.loadAll (read + validate)  ${median(loadAll).toFixed(0)} ms`);
  console.log(`  reconcile pass (read, probe, recover, persist)     ${median(pass).toFixed(0)} ms   ×${(median(pass) / median(loadAll)).toFixed(2)}`);
  console.log(`  last pass: ${JSON.stringify(summary)}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
