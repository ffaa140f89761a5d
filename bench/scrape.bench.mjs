// /metrics scrape time to first byte at MACHINES machines, through the built CLI: `arcbox-controller run`
// (liveness `none`, every machine stopped and reconciled), once with the per-machine series
// (`per_machine_metrics = true`, the default) and once without. Each scrape is a new connection, as
// timed by the client. Baselines in the same run, from another process on plain node:http: the
// service's own `arcbox_machine_state` family, pre-rendered once and served as bytes (the physical
// limit), and the same series in a plain prom-client Gauge rendered at each scrape (the peer).
//   node bench/scrape.bench.mjs      (after npm run build)
// Knobs: BENCH_SCRAPE_MACHINES (default 10000), BENCH_SCRAPES (200, after 5 untimed; fewer make p99 the maximum of a handful), BENCH_DIR.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { benchRoot, writeMachines } from "./lib/machines.mjs";
import { count, knob, Report } from "./lib/report.mjs";
import { httpGet, requireBuiltCli, startService, waitSettled, writeControllerConfig } from "./lib/service.mjs";
import { percentile, sleep } from "./lib/stats.mjs";

const MACHINES = knob("BENCH_SCRAPE_MACHINES", 10_000);
const SCRAPES = knob("BENCH_SCRAPES", 200);
const WARM_UP = 5;
const FLOOR = fileURLToPath(new URL("./lib/children/scrape-floor.mjs", import.meta.url));

/** `SCRAPES` timed GETs of `path` after `WARM_UP` untimed ones, 50 ms apart; resolves the times and the last body. */
async function scrapes(address, path) {
  const firstByte = [];
  const total = [];
  let body = "";
  for (let i = 0; i < WARM_UP + SCRAPES; i++) {
    const result = await httpGet(address, path);
    if (i >= WARM_UP) {
      firstByte.push(result.firstByte);
      total.push(result.total);
    }
    body = result.body;
    await sleep(50);
  }
  return { firstByte, total, body };
}

/** The `arcbox_machine_state` family of an exposition: its HELP and TYPE lines and its samples. */
const machineFamily = (text) =>
  text
    .split("\n")
    .filter((line) => /^(# (HELP|TYPE) )?arcbox_machine_state[ {]/.test(line))
    .join("\n") + "\n";

requireBuiltCli();
const report = new Report("scrape");
const root = benchRoot("scrape");
try {
  const machines = join(root.path, "machines");
  writeMachines(machines, MACHINES, "stopped");
  console.log(`${count(MACHINES)} machines in ${root.path}; ${SCRAPES} scrapes after ${WARM_UP} untimed`);

  const measured = {};
  for (const perMachine of [true, false]) {
    const config = writeControllerConfig(join(root.path, `controller-${perMachine}.toml`), {
      machines_dir: machines,
      hooks_dir: "",
      liveness: "none",
      listen: "127.0.0.1:0",
      per_machine_metrics: perMachine,
    });
    const service = await startService(config);
    try {
      await waitSettled(service, MACHINES);
      measured[perMachine] = await scrapes(service.address, "/metrics");
    } finally {
      await service.stop();
    }
    const series = measured[perMachine].body.split("\n").filter((line) => line.startsWith("arcbox_machine_state{")).length;
    console.log(`per_machine_metrics = ${perMachine}: ${measured[perMachine].body.length} bytes, ${series} arcbox_machine_state series`);
    if (perMachine && series !== MACHINES) throw new Error(`expected ${MACHINES} arcbox_machine_state series, found ${series}`);
  }

  const familyFile = join(root.path, "family.prom");
  writeFileSync(familyFile, machineFamily(measured[true].body));
  const floor = spawn(process.execPath, [FLOOR, familyFile], { stdio: ["ignore", "pipe", "inherit"] });
  let staticFamily;
  let promClient;
  try {
    const [address] = await once(createInterface({ input: floor.stdout }), "line");
    staticFamily = await scrapes(address, "/static");
    promClient = await scrapes(address, "/prom-client");
    if (staticFamily.body !== machineFamily(measured[true].body)) throw new Error("the static baseline did not serve the service's family");
  } finally {
    floor.kill();
  }

  for (const [q, name] of [
    [0.5, "p50"],
    [0.99, "p99"],
  ]) {
    const baselines = [
      { name: `arcbox_machine_state family alone, pre-rendered bytes on node:http, ${name}`, value: percentile(staticFamily.firstByte, q) },
      { name: `same series in a plain prom-client Gauge, ${name}`, value: percentile(promClient.firstByte, q) },
    ];
    for (const perMachine of [true, false]) {
      const value = percentile(measured[perMachine].firstByte, q);
      report.add({
        figure: `/metrics time to first byte, ${name}, ${count(MACHINES)} machines, per-machine series ${perMachine ? "on" : "off"}`,
        value,
        unit: "ms",
        baselines,
        target: "≤ 5 ms",
        max: 5,
      });
    }
  }
} finally {
  root.remove();
}
report.print();
