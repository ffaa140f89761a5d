/**
 * End to end with a real Prometheus: the built CLI (`dist/cli.cjs`) runs the controller on a machines
 * directory made of arcbox-core's own config files; a Prometheus server configured from
 * manifests/prometheus/scrape.yml (and loading alerts.yml) scrapes it; its query API must report the
 * machine counts that the files on disk hold, before and after a VM dies.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { access, cp, mkdir, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { z } from "zod";
import { PERSISTED_STATES } from "../../src/store/machine.js";
import { FIXTURES_DIR } from "../helpers/fixtures.js";
import { makeTempDir, removeTempDir, startProcess, stopProcess, waitFor } from "../helpers/processes.js";
import { findTool, requireToolOrSkip } from "../helpers/prometheus.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const cli = path.join(repoRoot, "dist/cli.cjs");
const prometheusManifests = path.join(repoRoot, "manifests/prometheus");
const prometheusBin = findTool("prometheus");

/** Generous: the machine is shared; nothing here asserts how long anything took. */
const SLOW = { timeoutMs: 90_000, intervalMs: 250 };
const TEST_TIMEOUT = 120_000;

/** The machine made invalid on purpose (a state arcbox-core rejects). */
const INVALID_MACHINE = "broken";
/** The running machine whose VM is killed in the recovery test. */
const VICTIM = "dev";

type Counts = Record<"created" | "running" | "stopped" | "invalid", number>;

const vectorSchema = z.object({
  status: z.literal("success"),
  data: z.object({
    resultType: z.literal("vector"),
    result: z.array(z.object({ metric: z.record(z.string(), z.string()), value: z.tuple([z.number(), z.string()]) })),
  }),
});
const rulesSchema = z.object({
  status: z.literal("success"),
  data: z.object({
    groups: z.array(z.object({ rules: z.array(z.object({ name: z.string(), health: z.string(), type: z.string() })) })),
  }),
});
const alertsSchema = z.object({
  status: z.literal("success"),
  data: z.object({ alerts: z.array(z.object({ labels: z.record(z.string(), z.string()), state: z.string() })) }),
});
const httpProbe = z.object({ httpGet: z.object({ path: z.string() }) });
const daemonSetProbesSchema = z.object({
  spec: z.object({
    template: z.object({
      spec: z.object({ containers: z.array(z.object({ livenessProbe: httpProbe, readinessProbe: httpProbe })) }),
    }),
  }),
});
const scrapeConfigSchema = z.looseObject({
  global: z.looseObject({}),
  rule_files: z.array(z.string()),
  scrape_configs: z.array(z.looseObject({ job_name: z.string() })),
});

let root = "";
let machinesDir = "";
const vms = new Map<string, ChildProcess>();
let controller: ChildProcess | undefined;
let controllerAddress = "";
const controllerOutput: string[] = [];
let prometheus: ChildProcess | undefined;
let prometheusUrl = "";
const prometheusOutput: string[] = [];

/** Keeps the last lines a process wrote, for failure messages. */
function collect(stream: NodeJS.ReadableStream, into: string[]): void {
  createInterface({ input: stream }).on("line", (line) => {
    into.push(line);
    if (into.length > 500) into.shift();
  });
}

/** Resolves with the `address` of the controller's `listening` log line; rejects if it exits first. */
function addressFromListeningLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    if (child.stdout === null) throw new Error("the controller's stdout is not piped");
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: unknown; address?: unknown };
        if (entry.msg === "listening" && typeof entry.address === "string") resolve(entry.address);
      } catch {
        // Not a JSON log line; it is still kept in controllerOutput for the report.
      }
    });
    child.once("exit", (code, signal) =>
      reject(new Error(`the controller exited (${code ?? signal}) before listening:\n${controllerOutput.join("\n")}`)),
    );
  });
}

/** A TCP port that was free a moment ago (bound to port 0, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("no TCP address for a port-0 server");
  return address.port;
}

/** Sends SIGTERM and waits for the exit; SIGKILL only if it lingers, so cleanup always finishes. */
async function terminate(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const lingering = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(lingering);
}

/** Machines per persisted state, and invalid ones, judged from the files on disk alone. */
async function countsOnDisk(): Promise<Counts> {
  const counts: Counts = { created: 0, running: 0, stopped: 0, invalid: 0 };
  for (const entry of await readdir(machinesDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    let config: Record<string, unknown>;
    try {
      config = parseToml(await readFile(path.join(machinesDir, entry.name, "config.toml"), "utf8"));
    } catch {
      counts.invalid += 1;
      continue;
    }
    const state = PERSISTED_STATES.find((candidate) => candidate === config.state);
    if (state === undefined || config.name !== entry.name) counts.invalid += 1;
    else counts[state] += 1;
  }
  return counts;
}

async function prometheusApi(pathAndQuery: string): Promise<unknown> {
  const response = await fetch(`${prometheusUrl}${pathAndQuery}`);
  if (!response.ok) throw new Error(`GET ${pathAndQuery}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

async function query(promql: string): Promise<z.infer<typeof vectorSchema>["data"]["result"]> {
  return vectorSchema.parse(await prometheusApi(`/api/v1/query?query=${encodeURIComponent(promql)}`)).data.result;
}

/** `arcbox_machines` by state as Prometheus last scraped it. */
async function scrapedCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const sample of await query('arcbox_machines{job="arcbox-controller"}')) {
    counts[sample.metric.state ?? "?"] = Number(sample.value[1]);
  }
  return counts;
}

/** Polls until Prometheus reports `expected`; on timeout, fails showing the last report. */
async function expectScrapedCounts(expected: Counts): Promise<void> {
  let last: Record<string, number> = {};
  try {
    await waitFor(
      async () => {
        last = await scrapedCounts();
        return JSON.stringify(sortKeys(last)) === JSON.stringify(sortKeys(expected));
      },
      "Prometheus to report the machine counts on disk",
      SLOW,
    );
  } catch {
    // Fall through to the assertion, which shows both sides.
  }
  expect(last, `controller log:\n${controllerOutput.slice(-30).join("\n")}`).toEqual(expected);
}

function sortKeys(record: Record<string, number>): Array<[string, number]> {
  return Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
}

/** Copies arcbox-core's sample machines, adds an invalid one and gives each running machine a live VM. */
async function makeMachines(): Promise<void> {
  await cp(path.join(FIXTURES_DIR, "toml05"), machinesDir, { recursive: true });
  const sample = await readFile(path.join(machinesDir, "fresh", "config.toml"), "utf8");
  await mkdir(path.join(machinesDir, INVALID_MACHINE));
  await writeFile(
    path.join(machinesDir, INVALID_MACHINE, "config.toml"),
    sample.replace("name = 'fresh'", `name = '${INVALID_MACHINE}'`).replace("state = 'created'", "state = 'Running'"),
  );
  const anHourAgo = new Date(Date.now() - 3_600_000);
  for (const entry of await readdir(machinesDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const configPath = path.join(machinesDir, entry.name, "config.toml");
    // Old files: no machine is inside startup_grace, so the numbers do not move on their own.
    await utimes(configPath, anHourAgo, anHourAgo);
    if (!/^state = 'running'$/m.test(await readFile(configPath, "utf8"))) continue;
    // A live process stands in for the VM; its pid file is written after it started.
    const vm = await startProcess("sleep", ["600"]);
    vms.set(entry.name, vm);
    await writeFile(path.join(machinesDir, entry.name, "vm.pid"), `${vm.pid}\n`);
  }
}

async function startController(): Promise<void> {
  await access(cli).catch(() => {
    throw new Error(`${cli} is missing: build the CLI first (npm run build)`);
  });
  const hooksDir = path.join(root, "hooks");
  await mkdir(hooksDir);
  const configFile = path.join(root, "controller.toml");
  await writeFile(configFile, "# defaults: the flags below say everything\n");
  controller = spawn(
    process.execPath,
    [cli, "run", "--config", configFile, "--machines-dir", machinesDir, "--hooks-dir", hooksDir, "--liveness", "pidfile", "--listen", "127.0.0.1:0", "--log-level", "info"],
    { env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "pipe"] },
  );
  if (controller.stdout === null || controller.stderr === null) throw new Error("controller output is not piped");
  collect(controller.stdout, controllerOutput);
  collect(controller.stderr, controllerOutput);
  controllerAddress = await addressFromListeningLine(controller);
}

/** How many alert rules alerts.yml defines. */
async function alertRuleCount(): Promise<number> {
  const rules = z.object({ groups: z.array(z.object({ rules: z.array(z.unknown()) })) });
  return rules.parse(parseYaml(await readFile(path.join(prometheusManifests, "alerts.yml"), "utf8"))).groups.flatMap((group) => group.rules).length;
}

/** scrape.yml as shipped, pointed at this controller, scraping and evaluating every second. */
async function prometheusConfig(): Promise<string> {
  const config = scrapeConfigSchema.parse(parseYaml(await readFile(path.join(prometheusManifests, "scrape.yml"), "utf8")));
  const job = config.scrape_configs.find((candidate) => candidate.job_name === "arcbox-controller");
  if (job === undefined) throw new Error("manifests/prometheus/scrape.yml has no arcbox-controller job");
  Object.assign(config.global, { scrape_interval: "1s", evaluation_interval: "1s" });
  Object.assign(job, { scrape_interval: "1s", scrape_timeout: "1s", static_configs: [{ targets: [controllerAddress] }] });
  config.rule_files = config.rule_files.map((file) => path.resolve(prometheusManifests, file));
  return stringifyYaml(config);
}

async function startPrometheus(binary: string): Promise<void> {
  const dir = path.join(root, "prometheus");
  await mkdir(dir);
  await writeFile(path.join(dir, "prometheus.yml"), await prometheusConfig());
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  prometheus = spawn(
    binary,
    [
      `--config.file=${path.join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--web.enable-lifecycle",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  if (prometheus.stdout === null || prometheus.stderr === null) throw new Error("prometheus output is not piped");
  collect(prometheus.stdout, prometheusOutput);
  collect(prometheus.stderr, prometheusOutput);
  const server = prometheus;
  await waitFor(
    async () => {
      if (server.exitCode !== null) throw new Error(`prometheus exited (${server.exitCode}):\n${prometheusOutput.join("\n")}`);
      return fetch(`${prometheusUrl}/-/ready`).then((response) => response.ok, () => false);
    },
    "Prometheus to become ready",
    SLOW,
  );
}

describe("the controller scraped by a real Prometheus", () => {
  beforeAll(async () => {
    if (prometheusBin === undefined) return;
    root = await makeTempDir("e2e-prometheus");
    machinesDir = path.join(root, "machines");
    await makeMachines();
    await startController();
    await startPrometheus(prometheusBin);
  }, TEST_TIMEOUT);

  afterAll(async () => {
    await terminate(prometheus);
    await terminate(controller);
    for (const vm of vms.values()) await stopProcess(vm);
    if (root !== "") await removeTempDir(root);
  }, TEST_TIMEOUT);

  requireToolOrSkip(
    "prometheus",
    "scrapes the controller at the target from scrape.yml",
    async () => {
      await waitFor(async () => (await query('up{job="arcbox-controller"} == 1')).length === 1, "up == 1", SLOW);
      const [up] = await query('up{job="arcbox-controller"}');
      expect(up?.metric.instance).toBe(controllerAddress);
    },
    TEST_TIMEOUT,
  );

  requireToolOrSkip(
    "prometheus",
    "reports arcbox_machines for all four states with the counts on disk",
    async () => {
      const expected = await countsOnDisk();
      expect(expected).toEqual({ created: 1, running: 2, stopped: 1, invalid: 1 });
      await expectScrapedCounts(expected);
      const [needing] = await query('arcbox_machines_needing_recovery{job="arcbox-controller"}');
      expect(needing?.value[1]).toBe("0");
    },
    TEST_TIMEOUT,
  );

  requireToolOrSkip(
    "prometheus",
    "loads alerts.yml, evaluates every rule and holds ArcboxInvalidMachineConfigs pending",
    async () => {
      await waitFor(
        async () => {
          const rules = rulesSchema.parse(await prometheusApi("/api/v1/rules")).data.groups.flatMap((group) => group.rules);
          return rules.length === (await alertRuleCount()) && rules.every((rule) => rule.type === "alerting" && rule.health === "ok");
        },
        "every alert rule to be evaluated with health ok",
        SLOW,
      );
      await waitFor(
        async () =>
          alertsSchema
            .parse(await prometheusApi("/api/v1/alerts"))
            .data.alerts.some((alert) => alert.labels.alertname === "ArcboxInvalidMachineConfigs" && alert.state === "pending"),
        "ArcboxInvalidMachineConfigs to be pending",
        SLOW,
      );
    },
    TEST_TIMEOUT,
  );

  requireToolOrSkip(
    "prometheus",
    "answers the DaemonSet's probe paths on the metrics address",
    async () => {
      const documents = parseAllDocuments(await readFile(path.join(repoRoot, "manifests/kubernetes/daemonset.yaml"), "utf8"));
      const container = daemonSetProbesSchema.parse(documents.map((document) => document.toJS()).find((doc) => doc?.kind === "DaemonSet"))
        .spec.template.spec.containers[0];
      const probePaths = [container?.livenessProbe.httpGet.path, container?.readinessProbe.httpGet.path];
      expect(probePaths).toEqual(["/healthz", "/readyz"]);
      for (const probePath of probePaths) {
        await waitFor(
          () => fetch(`http://${controllerAddress}${probePath}`).then((response) => response.status === 200, () => false),
          `${probePath} to answer 200`,
          SLOW,
        );
      }
    },
    TEST_TIMEOUT,
  );

  requireToolOrSkip(
    "prometheus",
    "shows the recovery of a machine whose VM died",
    async () => {
      const vm = vms.get(VICTIM);
      expect(vm, `no VM process for ${VICTIM}`).toBeDefined();
      await stopProcess(vm as ChildProcess);
      // The watcher sees the pid file go; the controller finds the VM dead and recovers it.
      await rm(path.join(machinesDir, VICTIM, "vm.pid"));
      await waitFor(
        async () => /^state = 'stopped'$/m.test(await readFile(path.join(machinesDir, VICTIM, "config.toml"), "utf8")),
        `${VICTIM}/config.toml to say stopped`,
        SLOW,
      );
      const expected = await countsOnDisk();
      expect(expected).toEqual({ created: 1, running: 1, stopped: 2, invalid: 1 });
      await expectScrapedCounts(expected);
      await waitFor(
        async () => (await query('arcbox_recoveries_total{job="arcbox-controller", result="success"} == 1')).length === 1,
        "arcbox_recoveries_total{result=success} to reach 1",
        SLOW,
      );
    },
    TEST_TIMEOUT,
  );

  requireToolOrSkip(
    "prometheus",
    "the controller exits 0 on SIGTERM",
    async () => {
      const running = controller;
      expect(running?.exitCode, "the controller stopped early").toBeNull();
      const exited = once(running as ChildProcess, "exit");
      running?.kill("SIGTERM");
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      expect({ code, signal }, controllerOutput.slice(-20).join("\n")).toEqual({ code: 0, signal: null });
    },
    TEST_TIMEOUT,
  );
});
