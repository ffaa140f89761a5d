// The raw durable recovery loop, the physical limit of a recovery pass: list the machines directory,
// read each config, parse it (smol-toml, as the controller does), and for each `running` one set
// `state = "stopped"` and replace the file durably (temp file, write, fsync, rename, directory fsync),
// CONCURRENCY machines in flight. No validation beyond the parse, no hooks, no lock, no metrics.
//   node bench/raw-durable-loop.mjs DIR CONCURRENCY
// Prints one JSON line: {"machines":N,"recovered":N,"ms":N} (ms from the listing to the last write).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "smol-toml";
import { durableWrite } from "./lib/durable.mjs";

const [dir, concurrencyText] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
if (!dir || !Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write("usage: node bench/raw-durable-loop.mjs DIR CONCURRENCY\n");
  process.exit(2);
}

const started = performance.now();
const names = (await readdir(dir)).filter((name) => !name.startsWith("."));
let next = 0;
let recovered = 0;

async function worker() {
  while (next < names.length) {
    const path = join(dir, names[next++], "config.toml");
    const text = await readFile(path, "utf8");
    if (parse(text).state !== "running") continue;
    await durableWrite(path, text.replace(/^state = "running"$/m, 'state = "stopped"'));
    recovered++;
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
console.log(JSON.stringify({ machines: names.length, recovered, ms: Math.round(performance.now() - started) }));
