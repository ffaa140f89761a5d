// An edit storm against the service, through the built CLI: `arcbox-controller run` (liveness `none`,
// no hooks) watches MACHINES stopped machines; RATE edits a second for SECONDS seconds each set
// `state = "running"` and a new `cpus` in the next machine (round robin, so one machine's edits are
// MACHINES/RATE seconds apart), written as arcbox writes (temp file renamed over config.toml). Every
// edit must be recovered: its latency runs from the edit to the service's next "machine recovered"
// line for that machine. /metrics is scraped every second for arcbox_workqueue_depth and the
// service's own process_resident_memory_bytes and nodejs_heap_size_used_bytes: before the storm,
// during it, and after every edit was recovered and SETTLE more seconds passed. At the end every
// edited config must say `stopped` with the cpus of its last edit (none overwritten).
// Baselines in the same run: the edits actually made per second (one second of edits: the depth
// target), a bare fs.watch event plus one bare durable write (latency), and chokidar alone watching
// the same tree (memory).
//   node bench/storm.bench.mjs      (after npm run build)
// Knobs: BENCH_STORM_MACHINES (default 10000), BENCH_STORM_RATE (500), BENCH_STORM_SECONDS (60),
// BENCH_STORM_DRAIN_SECONDS (180: how long to wait for the last recoveries), BENCH_STORM_SETTLE_SECONDS
// (10), BENCH_DIR.
import { join } from "node:path";
import { startChokidarAlone } from "./lib/chokidar-alone.mjs";
import { measureBareEdit } from "./lib/bare-edit.mjs";
import { arcboxWrite } from "./lib/durable.mjs";
import { benchRoot, machineToml, readStates, writeMachines } from "./lib/machines.mjs";
import { count, knob, Report } from "./lib/report.mjs";
import { requireBuiltCli, startService, waitSettled, writeControllerConfig } from "./lib/service.mjs";
import { percentile, sleep } from "./lib/stats.mjs";

const MACHINES = knob("BENCH_STORM_MACHINES", 10_000);
const RATE = knob("BENCH_STORM_RATE", 500);
const SECONDS = knob("BENCH_STORM_SECONDS", 60);
const DRAIN_SECONDS = knob("BENCH_STORM_DRAIN_SECONDS", 180);
// A minute: V8 gives memory back to the system once allocation has been quiet for a while (its memory reducer).
const SETTLE_SECONDS = knob("BENCH_STORM_SETTLE_SECONDS", 60);
const BASELINE_ROUNDS = 20;
const MB = 1024 * 1024;

requireBuiltCli();
const report = new Report("storm");
const root = benchRoot("storm");
const where = `${count(MACHINES)} machines`;
try {
  const machines = join(root.path, "machines");
  const names = writeMachines(machines, MACHINES, "stopped");
  console.log(`${where} in ${root.path} (${root.fsType}); ${RATE} edits/s for ${SECONDS} s`);

  // Baselines before the service starts: a bare edit, and chokidar alone's memory on this tree.
  const probe = join(machines, names[0], "config.toml");
  const bare = await measureBareEdit(probe, (state, round) => machineToml(names[0], state, { cpus: 2 + round }), BASELINE_ROUNDS);
  const chokidar = await startChokidarAlone(machines);
  await sleep(1000);
  const chokidarMemory = await chokidar.memory();
  await chokidar.stop();

  const service = await startService(
    writeControllerConfig(join(root.path, "controller.toml"), { machines_dir: machines, hooks_dir: "", liveness: "none", listen: "127.0.0.1:0" }),
  );
  const samples = [];
  const pending = new Map();
  const latencies = [];
  const lastCpus = new Map();
  let edits = 0;
  let stormSeconds = 0;
  try {
    await waitSettled(service, MACHINES);
    await sleep(2000);

    // Scrapes: one a second (skipped while the last one is still running).
    let scraping = false;
    let phase = "before";
    const scrape = async () => {
      if (scraping) return;
      scraping = true;
      try {
        const metrics = await service.metrics();
        samples.push({
          phase,
          depth: metrics.sum("arcbox_workqueue_depth"),
          rss: metrics.sum("process_resident_memory_bytes") / MB,
          heap: metrics.sum("nodejs_heap_size_used_bytes") / MB,
        });
      } finally {
        scraping = false;
      }
    };
    await scrape();
    const scraper = setInterval(() => void scrape().catch((error) => console.error(`scrape failed: ${error.message}`)), 1000);

    service.onLog((entry) => {
      if (entry.msg !== "machine recovered") return;
      const waiting = pending.get(entry.machine);
      if (!waiting) return;
      while (waiting.length > 0 && waiting[0] < entry.at) latencies.push(entry.at - waiting.shift());
      if (waiting.length === 0) pending.delete(entry.machine);
    });

    // The storm: edits paced against the clock, so a late timer catches up.
    phase = "during";
    const total = Math.round(RATE * SECONDS);
    const started = performance.now();
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * RATE));
        for (; edits < due; edits++) {
          const name = names[edits % MACHINES];
          const cpus = 2 + (Math.floor(edits / MACHINES) % 60);
          arcboxWrite(join(machines, name, "config.toml"), machineToml(name, "running", { cpus }));
          const at = performance.now();
          if (!pending.has(name)) pending.set(name, []);
          pending.get(name).push(at);
          lastCpus.set(name, cpus);
        }
        if (edits === total) {
          clearInterval(tick);
          resolve();
        }
      }, 2);
    });
    stormSeconds = (performance.now() - started) / 1000;
    // One reading at the storm's end, however short the storm.
    while (scraping) await sleep(10);
    await scrape();

    phase = "draining";
    const drainDeadline = performance.now() + DRAIN_SECONDS * 1000;
    while (pending.size > 0 && performance.now() < drainDeadline) await sleep(100);
    const drainMs = performance.now() - started - stormSeconds * 1000;
    console.log(`storm: ${count(edits)} edits in ${stormSeconds.toFixed(1)} s; ${pending.size === 0 ? "all recovered" : `${pending.size} machines still waiting`} ${(drainMs / 1000).toFixed(1)} s after the last edit`);
    phase = "after";
    await sleep(SETTLE_SECONDS * 1000);
    clearInterval(scraper);
    while (scraping) await sleep(10);
    await scrape();
  } finally {
    await service.stop();
  }

  // Every edited config: stopped, with the cpus of its last edit.
  const { configs } = readStates(machines);
  let notStopped = 0;
  let overwritten = 0;
  for (const [name, cpus] of lastCpus) {
    const config = configs.get(name);
    if (config?.state !== "stopped") notStopped++;
    else if (config.cpus !== cpus) overwritten++;
  }
  const unrecovered = [...pending.values()].reduce((sum, waiting) => sum + waiting.length, 0);

  const of = (phase) => samples.filter((sample) => sample.phase === phase);
  const max = (list, key) => Math.max(...list.map((sample) => sample[key]));
  const before = of("before")[0];
  const after = of("after").at(-1);
  const during = [...of("during"), ...of("draining")];
  const editsPerSecond = edits / stormSeconds;
  const maxDepth = max(during, "depth");
  console.log(`depth by second: ${of("during").map((sample) => sample.depth).join(" ")}`);

  report.add({
    figure: `queue depth, max while ${Math.round(RATE)} edits/s for ${SECONDS} s (${where})`,
    value: maxDepth,
    unit: "",
    baselines: [{ name: "edits made in one second", value: Math.round(editsPerSecond) }],
    target: "≤ 1 s of edits",
    max: editsPerSecond,
  });
  for (const [q, name] of [
    [0.5, "p50"],
    [0.99, "p99"],
  ]) {
    const value = percentile(latencies, q);
    report.add({
      figure: `edit → recovered under the storm, ${name}${unrecovered > 0 ? ` (${unrecovered} never recovered)` : ""}`,
      value,
      unit: "ms",
      baselines: [{ name: `bare fs.watch event + bare durable write, ${name} each`, value: percentile(bare.events, q) + percentile(bare.writes, q) }],
      ...(name === "p99" ? { target: "≤ 1 s", met: unrecovered === 0 && value <= 1000 } : {}),
    });
  }
  report.add({
    figure: "edits recovered, none overwritten",
    value: edits - unrecovered - overwritten - notStopped,
    unit: "",
    baselines: [{ name: "edits made", value: edits }],
    target: "all",
    met: unrecovered === 0 && overwritten === 0 && notStopped === 0,
  });
  for (const [key, label, peer] of [
    ["rss", "RSS (process_resident_memory_bytes)", chokidarMemory.rss / MB],
    ["heap", "heap used (nodejs_heap_size_used_bytes)", chokidarMemory.heapUsed / MB],
  ]) {
    const value = (sample) => (sample && Number.isFinite(sample[key]) ? sample[key] : null);
    const note = "not exported";
    const peerBaseline = { name: `chokidar alone on the same tree, ${key === "rss" ? "RSS" : "heap used"}`, value: peer };
    report.add({ figure: `service ${label}, before the storm`, value: value(before), note, unit: "MB", baselines: [peerBaseline] });
    report.add({ figure: `service ${label}, max during the storm`, value: during.length ? max(during, key) : null, note, unit: "MB", baselines: [peerBaseline] });
    const afterValue = value(after);
    report.add({
      figure: `service ${label}, ${SETTLE_SECONDS} s after the last recovery`,
      value: afterValue,
      note,
      unit: "MB",
      baselines: [peerBaseline, { name: "the service before the storm (flat: same level)", value: value(before) }],
      ...(key === "rss" ? { target: "flat: ≤ 1.1× before", met: afterValue !== null && value(before) !== null ? afterValue <= 1.1 * value(before) : null } : {}),
    });
  }
} finally {
  root.remove();
}
report.print();
