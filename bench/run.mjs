// Runs every bench/*.bench.mjs in turn, each in its own Node process so one benchmark's heap and JIT
// state cannot colour the next. Run after `npm run build` (or use `npm run bench`).
//   node bench/run.mjs [name-filter]
import { spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2] ?? "";
const files = (await readdir(benchDir))
  .filter((name) => name.endsWith(".bench.mjs") && name.includes(filter))
  .sort();

if (files.length === 0) {
  console.error(`no bench/*.bench.mjs matches "${filter}"`);
  process.exit(1);
}

const failed = [];
for (const file of files) {
  console.log(`\n=== ${file} ===`);
  const code = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(benchDir, file)], { stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (exitCode, signal) => resolve(signal ? `signal ${signal}` : exitCode));
  });
  if (code !== 0) {
    console.error(`${file} failed (exit ${code})`);
    failed.push(file);
  }
}

console.log(`\n${files.length - failed.length} of ${files.length} benchmarks completed`);
if (failed.length > 0) {
  console.error(`failed: ${failed.join(", ")}`);
  process.exitCode = 1;
}
