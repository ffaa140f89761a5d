// Idle cost of the service at MACHINES machines, through the built CLI: `arcbox-controller run`
// (liveness `none`, every machine stopped and reconciled, nothing scraped or edited during the
// window) over SECONDS seconds: CPU time (utime + stime of every thread, /proc/<pid>/stat) as a share
// of one core, and wake-ups (voluntary context switches, /proc/<pid>/task/*/status) per second, of
// the main thread and of all threads. Baseline in the same window: chokidar alone watching the same
// tree (the peer), run beside the service.
//   node bench/idle.bench.mjs      (after npm run build; Linux: needs /proc)
// The window opens BENCH_IDLE_SETTLE_SECONDS after both are up: V8's memory reducer collects the
// garbage of start-up (the initial listing, 10,000 parses) in a major GC some 30 s after allocation
// stops (about 0.5 s of CPU at 10,000 machines, for either process), and that is start-up's cost,
// not idle's.
// Knobs: BENCH_IDLE_MACHINES (default 10000), BENCH_IDLE_SECONDS (30), BENCH_IDLE_SETTLE_SECONDS (45),
// BENCH_DIR.
import { join } from "node:path";
import { startChokidarAlone } from "./lib/chokidar-alone.mjs";
import { benchRoot, writeMachines } from "./lib/machines.mjs";
import { contextSwitches, cpuMs, HAS_PROC } from "./lib/proc.mjs";
import { count, knob, Report } from "./lib/report.mjs";
import { requireBuiltCli, startService, waitSettled, writeControllerConfig } from "./lib/service.mjs";
import { sleep } from "./lib/stats.mjs";

const MACHINES = knob("BENCH_IDLE_MACHINES", 10_000);
const SECONDS = knob("BENCH_IDLE_SECONDS", 30);
const SETTLE_SECONDS = knob("BENCH_IDLE_SETTLE_SECONDS", 45);

requireBuiltCli();
const report = new Report("idle");
if (!HAS_PROC) {
  console.log("idle: no /proc on this system; CPU time and wake-ups cannot be read");
  report.add({ figure: `idle CPU, ${count(MACHINES)} machines`, value: null, note: "no /proc", unit: "%" });
  report.print();
  process.exit(0);
}

/** A reading of `pid`'s CPU time and context switches now. */
const reading = (pid) => ({ at: performance.now(), cpu: cpuMs(pid), switches: contextSwitches(pid) });

/** CPU share of one core (%) and wake-ups per second between two readings. */
function rates(start, end) {
  const seconds = (end.at - start.at) / 1000;
  return {
    cpu: ((end.cpu - start.cpu) / (end.at - start.at)) * 100,
    mainWakeups: (end.switches.main.voluntary - start.switches.main.voluntary) / seconds,
    allWakeups: (end.switches.all.voluntary - start.switches.all.voluntary) / seconds,
    threads: end.switches.all.threads,
  };
}

const root = benchRoot("idle");
try {
  const machines = join(root.path, "machines");
  writeMachines(machines, MACHINES, "stopped");
  const service = await startService(
    writeControllerConfig(join(root.path, "controller.toml"), { machines_dir: machines, hooks_dir: "", liveness: "none", listen: "127.0.0.1:0" }),
  );
  let chokidar;
  let measured;
  try {
    await waitSettled(service, MACHINES);
    chokidar = await startChokidarAlone(machines);
    // Let both finish what start-up left (timers, GC) before the window opens.
    await sleep(SETTLE_SECONDS * 1000);
    const before = { service: reading(service.pid), chokidar: reading(chokidar.pid) };
    await sleep(SECONDS * 1000);
    const after = { service: reading(service.pid), chokidar: reading(chokidar.pid) };
    measured = { service: rates(before.service, after.service), chokidar: rates(before.chokidar, after.chokidar) };
  } finally {
    await chokidar?.stop();
    await service.stop();
  }
  const { service: s, chokidar: c } = measured;
  console.log(`${count(MACHINES)} machines, ${SECONDS} s window opened ${SETTLE_SECONDS} s after start-up: service ${s.threads} threads, chokidar alone ${c.threads} threads`);
  report.add({
    figure: `idle CPU over ${SECONDS} s, ${count(MACHINES)} machines (share of one core)`,
    value: s.cpu,
    unit: "%",
    baselines: [{ name: "chokidar alone watching the same tree", value: c.cpu }],
    target: "≤ 0.3 %",
    max: 0.3,
  });
  report.add({
    figure: "idle wake-ups, main thread (voluntary context switches)",
    value: s.mainWakeups,
    unit: "/s",
    baselines: [{ name: "chokidar alone, main thread", value: c.mainWakeups }],
  });
  report.add({
    figure: "idle wake-ups, all threads",
    value: s.allWakeups,
    unit: "/s",
    baselines: [{ name: "chokidar alone, all threads", value: c.allWakeups }],
  });
} finally {
  root.remove();
}
report.print();
