// Edit → recovered, one edit at a time, through the built CLI: among MACHINES stopped machines, one
// machine's config is rewritten with `state = "running"` as arcbox writes it (temp file renamed over
// it), and timed until the service (`run`, liveness `none`, no hooks) logs "machine recovered" for it,
// which it does once `stopped` is durable (fsync, rename, directory fsync). Baseline, in the same run
// and on the same file: a bare fs.watch event for the same edit, plus one bare durable write.
//   node bench/latency.bench.mjs      (after npm run build)
// Knobs: BENCH_LATENCY_MACHINES (default 10000), BENCH_LATENCY_ROUNDS (100), BENCH_DIR.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { measureBareEdit } from "./lib/bare-edit.mjs";
import { arcboxWrite } from "./lib/durable.mjs";
import { benchRoot, machineToml, readStates, writeMachines } from "./lib/machines.mjs";
import { count, knob, Report } from "./lib/report.mjs";
import { requireBuiltCli, startService, waitSettled, writeControllerConfig } from "./lib/service.mjs";
import { percentile, sleep } from "./lib/stats.mjs";

const MACHINES = knob("BENCH_LATENCY_MACHINES", 10_000);
const ROUNDS = knob("BENCH_LATENCY_ROUNDS", 100);
const TARGET = "target";

requireBuiltCli();
const report = new Report("latency");
const root = benchRoot("latency");
try {
  const machines = join(root.path, "machines");
  writeMachines(machines, MACHINES, "stopped");
  const targetDir = join(machines, TARGET);
  mkdirSync(targetDir);
  const config = join(targetDir, "config.toml");
  const text = (state, round) => machineToml(TARGET, state, { cpus: 1 + (round % 8) });
  arcboxWrite(config, text("stopped", 0));
  console.log(`${count(MACHINES + 1)} machines in ${root.path} (${root.fsType}), ${ROUNDS} rounds`);

  // Baselines: the edit seen by a bare fs.watch, and one bare durable write of the same file.
  const { events, writes } = await measureBareEdit(config, text, ROUNDS);

  // The service.
  const serviceConfig = writeControllerConfig(join(root.path, "controller.toml"), {
    machines_dir: machines,
    hooks_dir: "",
    liveness: "none",
    listen: "127.0.0.1:0",
  });
  const service = await startService(serviceConfig);
  const latencies = [];
  try {
    await waitSettled(service, MACHINES + 1);
    for (let round = 0; round < ROUNDS; round++) {
      const started = performance.now();
      arcboxWrite(config, text("running", round));
      const line = await service.waitForLog((entry) => entry.msg === "machine recovered" && entry.machine === TARGET, `the recovery of round ${round}`, 60_000);
      latencies.push(line.at - started);
      // Let the reconcile that the service's own write triggers pass, so rounds do not overlap.
      await sleep(50);
    }
  } finally {
    await service.stop();
  }
  const state = readStates(machines).configs.get(TARGET)?.state;
  if (state !== "stopped") throw new Error(`after the last round the target says ${state}`);

  for (const [q, name, limit] of [
    [0.5, "p50", 5],
    [0.99, "p99", 25],
  ]) {
    const event = percentile(events, q);
    const write = percentile(writes, q);
    const value = percentile(latencies, q);
    report.add({
      figure: `edit → recovered, one at a time, ${name} (${count(MACHINES + 1)} machines)`,
      value,
      unit: "ms",
      baselines: [
        { name: `bare fs.watch event + bare durable write, ${name} each`, value: event + write },
        { name: `bare fs.watch event alone, ${name}`, value: event },
        { name: `bare durable write alone, ${name}`, value: write },
      ],
      target: `≤ ${limit} ms`,
      max: limit,
    });
  }
} finally {
  root.remove();
}
report.print();
