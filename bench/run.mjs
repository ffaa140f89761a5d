// Runs every bench/*.bench.mjs in turn (or those whose name contains FILTER), each in its own Node
// process so one benchmark's heap and JIT state cannot colour the next, then prints the table of the
// whole run: every figure beside the baselines measured in the same run. Run after `npm run build`
// (`npm run bench` does both). Each bench's knobs are environment variables (see docs/BENCHMARKS.md).
//   node bench/run.mjs [FILTER]
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { formatTable } from "./lib/report.mjs";

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2] ?? "";
const files = readdirSync(benchDir)
  .filter((name) => name.endsWith(".bench.mjs") && name.includes(filter))
  .sort();

if (files.length === 0) {
  console.error(`no bench/*.bench.mjs matches "${filter}"`);
  process.exit(1);
}

const load = () => loadavg().map((value) => value.toFixed(2)).join(" ");
const scratch = mkdtempSync(path.join(tmpdir(), "arcbox-bench-results-"));
const results = path.join(scratch, "figures.jsonl");
const started = performance.now();
console.log(`node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"}), ${new Date().toISOString()}`);

const failed = [];
for (const file of files) {
  console.log(`\n=== ${file} === (load average ${load()})`);
  const benchStarted = performance.now();
  const code = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(benchDir, file)], { stdio: "inherit", env: { ...process.env, BENCH_RESULTS: results } });
    child.on("error", reject);
    child.on("close", (exitCode, signal) => resolve(signal ? `signal ${signal}` : exitCode));
  });
  console.log(`${file}: ${((performance.now() - benchStarted) / 1000).toFixed(0)} s`);
  if (code !== 0) {
    console.error(`${file} failed (exit ${code})`);
    failed.push(file);
  }
}

let figures = [];
try {
  figures = readFileSync(results, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
} catch {
  // no bench reported a figure
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const minutes = (performance.now() - started) / 60_000;
console.log(`\n## All figures (${files.length - failed.length} of ${files.length} benchmarks completed in ${minutes.toFixed(1)} min; load average now ${load()})\n`);
console.log(formatTable(figures));
if (failed.length > 0) {
  console.error(`\nfailed: ${failed.join(", ")}`);
  process.exitCode = 1;
}
