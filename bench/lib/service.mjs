// The built CLI (`dist/cli.cjs`) as the benchmarks drive it: one-shot commands timed as processes, and
// `arcbox-controller run` as a child process whose JSON log lines arrive with their time of receipt
// and whose /metrics is scraped over real HTTP.
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { sleep } from "./stats.mjs";

export const CLI = fileURLToPath(new URL("../../dist/cli.cjs", import.meta.url));

/** Exits with a clear message when the CLI has not been built. */
export function requireBuiltCli() {
  if (!existsSync(CLI)) {
    process.stderr.write(`bench: ${CLI} is missing; run \`npm run build\` first (npm run bench does)\n`);
    process.exit(2);
  }
}

/** A clean environment, so no ARCBOX_* variable of the host changes what is measured. */
const cleanEnv = () => ({ PATH: process.env.PATH, HOME: process.env.HOME });

/**
 * Writes a controller config file (docs/design.md#configuration) at `path` from snake_case `settings` (strings,
 * numbers, booleans) with JSON log lines, and returns `path`.
 */
export function writeControllerConfig(path, settings) {
  const lines = Object.entries({ log_format: "json", log_level: "info", ...settings }).map(
    ([key, value]) => `${key} = ${typeof value === "string" ? JSON.stringify(value) : String(value)}`,
  );
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

/** Runs the CLI with `args` to completion; resolves its exit code, output and wall time (ms, as a process). */
export function runCli(args) {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: cleanEnv(), maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr, wall: performance.now() - started });
    });
  });
}

/**
 * Starts `arcbox-controller run --config CONFIG` and resolves once it logs `listening`. The service
 * object: `pid`, `address`, `onLog(listener)` (each parsed JSON line with `at`, its receipt time as
 * `performance.now()`), `waitForLog(predicate, what, timeoutMs)`, `metrics()` (the parsed
 * exposition), `stop()`. Rejects with the service's output when it exits or cannot listen.
 * `options.onLog` gets every line from the first one on, those before `listening` included.
 */
export async function startService(configPath, options = {}) {
  const child = spawn(process.execPath, [CLI, "run", "--config", configPath], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const listeners = new Set(options.onLog ? [options.onLog] : []);
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  createInterface({ input: child.stdout }).on("line", (line) => {
    const at = performance.now();
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      return;
    }
    entry.at = at;
    for (const listener of listeners) listener(entry);
  });
  const exited = once(child, "exit");
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));

  const waitForLog = (predicate, what, timeoutMs = 600_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`the service did not log ${what} within ${timeoutMs / 1000} s`)), timeoutMs);
      const onExit = () => finish(new Error(`the service exited before logging ${what}: ${stderr.trim()}`));
      const listener = (entry) => predicate(entry) && finish(null, entry);
      const finish = (error, entry) => {
        clearTimeout(timer);
        listeners.delete(listener);
        child.off("exit", onExit);
        if (error) reject(error);
        else resolve(entry);
      };
      listeners.add(listener);
      if (exitedEarly) onExit();
      else child.once("exit", onExit);
    });

  const listening = await waitForLog((entry) => entry.msg === "listening", "`listening`", 120_000);
  const address = listening.address;
  return {
    child,
    pid: child.pid,
    address,
    onLog(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    waitForLog,
    async metrics() {
      return parseExposition((await httpGet(address, "/metrics")).body);
    },
    async stop() {
      if (!exitedEarly) {
        child.kill("SIGTERM");
        const kill = setTimeout(() => child.kill("SIGKILL"), 60_000);
        await exited;
        clearTimeout(kill);
      }
    },
  };
}

/**
 * Waits until the service has reconciled at least `reconciles` times in all and its queue is empty
 * with nothing in flight (polling /metrics every 250 ms). Throws after `timeoutMs`.
 */
export async function waitSettled(service, reconciles, timeoutMs = 600_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const metrics = await service.metrics();
    const done = metrics.sum("arcbox_reconcile_total");
    // In-flight work is read where the service exports it (docs/design.md#metrics does); an empty queue alone otherwise.
    const unfinished = metrics.sum("arcbox_workqueue_unfinished_work_seconds");
    if (done >= reconciles && metrics.sum("arcbox_workqueue_depth") === 0 && !(unfinished > 0)) return;
    if (performance.now() > deadline) throw new Error(`the service did not settle within ${timeoutMs / 1000} s (${done} of ${reconciles} reconciles)`);
    await sleep(250);
  }
}

/** The samples of a Prometheus text exposition; `sum(name)` adds the values of every series of `name` (NaN when there is none). */
export function parseExposition(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const series = line.slice(0, space);
    const brace = series.indexOf("{");
    samples.push({ name: brace === -1 ? series : series.slice(0, brace), series, value: Number(line.slice(space + 1)) });
  }
  return {
    samples,
    sum(name) {
      const matching = samples.filter((sample) => sample.name === name);
      return matching.length === 0 ? Number.NaN : matching.reduce((total, sample) => total + sample.value, 0);
    },
  };
}

/**
 * GET `http://ADDRESS/PATH` on a new connection; resolves the body, `firstByte` (ms from the request
 * to the first byte of the response) and `total` (ms to its end). Rejects on a non-200 status.
 */
export function httpGet(address, path) {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let firstByte;
    const req = request({ host, port, path, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => {
        const total = performance.now() - started;
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: HTTP ${res.statusCode}`));
        else resolve({ body: Buffer.concat(chunks).toString(), firstByte: firstByte ?? total, total });
      });
    });
    req.on("socket", (socket) => socket.once("data", () => (firstByte ??= performance.now() - started)));
    req.on("error", reject);
    req.end();
  });
}
