// Scrape cost of the per-machine series against a baseline measured in the same run: a plain
// prom-client Gauge holding the same 10,000 {machine,state} series. Run after `npm run build`:
//   node bench/scrape.bench.mjs
import { performance } from "node:perf_hooks";
import { Gauge, Registry } from "prom-client";
import { ControllerMetrics } from "../dist/metrics/controller-metrics.js";
import { percentile } from "./lib.mjs";

const MACHINES = 10_000;
const WARM_UP = 10;
const SCRAPES = 50;
const STATES = ["created", "running", "stopped", "invalid"];

const names = Array.from({ length: MACHINES }, (_, i) => `machine-${String(i).padStart(5, "0")}`);
const stateOf = (i) => STATES[i % STATES.length];

/** Median and 95th percentile (nearest rank) of `SCRAPES` timed runs after `WARM_UP` untimed ones. */
async function measure(scrape, between = () => {}) {
  for (let i = 0; i < WARM_UP; i++) {
    between(i);
    await scrape();
  }
  const times = [];
  for (let i = 0; i < SCRAPES; i++) {
    between(i);
    const start = performance.now();
    await scrape();
    times.push(performance.now() - start);
  }
  return { median: percentile(times, 0.5), p95: percentile(times, 0.95) };
}

function countSeries(text) {
  return text.split("\n").filter((line) => line.startsWith("arcbox_machine_state{")).length;
}

// (a) Baseline: prom-client formats every label set at every scrape.
const naiveRegistry = new Registry();
const naiveGauge = new Gauge({
  name: "arcbox_machine_state",
  help: "Current state of each machine.",
  labelNames: ["machine", "state"],
  registers: [naiveRegistry],
});
names.forEach((machine, i) => naiveGauge.set({ machine, state: stateOf(i) }, 1));

// (b) ControllerMetrics: pre-rendered per-machine lines, plus every other metric and the defaults.
const metrics = new ControllerMetrics({ version: "bench" });
names.forEach((machine, i) => metrics.setMachine(machine, stateOf(i), false));

// (c) ControllerMetrics without machines: the floor set by prom-client's own metrics.
const empty = new ControllerMetrics({ version: "bench" });

for (const [label, text] of [
  ["naive", await naiveRegistry.metrics()],
  ["ControllerMetrics", await metrics.metricsText()],
]) {
  if (countSeries(text) !== MACHINES) throw new Error(`${label}: expected ${MACHINES} series, got ${countSeries(text)}`);
}

const naive = await measure(() => naiveRegistry.metrics());
const unchanged = await measure(() => metrics.metricsText());
// One machine changes between scrapes, so the per-machine block is joined again every time.
let flip = 0;
const changing = await measure(
  () => metrics.metricsText(),
  () => metrics.setMachine(names[0], (flip++ & 1) === 0 ? "running" : "stopped", false),
);
const floor = await measure(() => empty.metricsText());

// setMachine: 10,000 state changes, against the same changes made on the plain Gauge.
function timeOnce(run) {
  const start = performance.now();
  run();
  return performance.now() - start;
}
const nextState = (i) => STATES[(i + 1) % STATES.length];
const setMachineMs = timeOnce(() => names.forEach((machine, i) => metrics.setMachine(machine, nextState(i), i % 2 === 0)));
const naiveSetMs = timeOnce(() =>
  names.forEach((machine, i) => {
    naiveGauge.remove({ machine, state: stateOf(i) });
    naiveGauge.set({ machine, state: nextState(i) }, 1);
  }),
);
const afterChangeText = await metrics.metricsText();
if (countSeries(afterChangeText) !== MACHINES) throw new Error("series lost after state changes");

const ms = (value) => value.toFixed(2).padStart(8);
const rows = [
  ["(a) naive prom-client Gauge, 10k series", naive],
  ["(b) ControllerMetrics, 10k machines, unchanged", unchanged],
  ["(b) ControllerMetrics, 10k machines, 1 change/scrape", changing],
  ["(c) ControllerMetrics, no machines (floor)", floor],
];
console.log(`scrape time, ${SCRAPES} scrapes after ${WARM_UP} warm-up (Node ${process.version})`);
console.log(`${"case".padEnd(54)}  median ms    p95 ms`);
for (const [label, { median, p95 }] of rows) console.log(`${label.padEnd(54)} ${ms(median)}  ${ms(p95)}`);
console.log(`ratio naive / ControllerMetrics (median): unchanged ${(naive.median / unchanged.median).toFixed(1)}x, ` +
  `1 change/scrape ${(naive.median / changing.median).toFixed(1)}x`);
console.log(`\n10,000 state changes: setMachine ${setMachineMs.toFixed(1)} ms ` +
  `(${((setMachineMs * 1000) / MACHINES).toFixed(2)} µs each); ` +
  `naive Gauge remove+set ${naiveSetMs.toFixed(1)} ms`);
