// The raw durable recovery loop, the physical limit of a recovery pass: list the machines directory,
// read each config, parse it (smol-toml, as the controller does), and for each `running` one set
// `state = "stopped"` and replace the file durably (temp file, write, fsync, rename, directory fsync),
// CONCURRENCY machines in flight. No validation beyond the parse, no hooks, no lock, no metrics.
//
// With --checks, the same loop also makes, bare and nothing more, the checks docs/design.md#write-protocol promises of every
// recovery: the TOML 1.0 verdict on what was read (toml-eslint-parser, whose source map also places
// the minimal edit), the schema (the controller's zod schema, from dist/), the read-back of the edited
// text, and the identity checks around the commit (fstat of the file read, fchmod and fstat of the new
// one, lstat of the target right before the rename and of the result right after). That is the least
// any implementation of those promises spends: an analysis figure, not a baseline.
//   node bench/raw-durable-loop.mjs DIR CONCURRENCY [--checks]
// Prints one JSON line: {"machines":N,"recovered":N,"ms":N} (ms from the listing to the last write).
import { lstat, open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "smol-toml";
import { durableWrite } from "./lib/durable.mjs";

const [dir, concurrencyText, mode] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
if (!dir || !Number.isInteger(concurrency) || concurrency < 1 || (mode !== undefined && mode !== "--checks")) {
  process.stderr.write("usage: node bench/raw-durable-loop.mjs DIR CONCURRENCY [--checks]\n");
  process.exit(2);
}
const recover = mode === "--checks" ? await checkedRecovery() : rawRecovery;

const started = performance.now();
const names = (await readdir(dir)).filter((name) => !name.startsWith("."));
let next = 0;
let recovered = 0;

async function worker() {
  while (next < names.length) {
    if (await recover(join(dir, names[next++], "config.toml"))) recovered++;
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
console.log(JSON.stringify({ machines: names.length, recovered, ms: Math.round(performance.now() - started) }));

/** Resolves true when the machine was `running` and is now `stopped` on disk. */
async function rawRecovery(path) {
  const text = await readFile(path, "utf8");
  if (parse(text).state !== "running") return false;
  await durableWrite(path, stopped(text));
  return true;
}

function stopped(text) {
  return text.replace(/^state = "running"$/m, 'state = "stopped"');
}

async function checkedRecovery() {
  const { parseTOML } = await import("toml-eslint-parser");
  const { machineDocumentSchema } = await import("../dist/store/schema.js");
  return async (path) => {
    const file = await open(path, "r");
    let read, text;
    try {
      read = await file.stat({ bigint: true });
      text = await file.readFile("utf8");
    } finally {
      await file.close();
    }
    parseTOML(text, { tomlVersion: "1.0.0" });
    const document = parse(text, { integersAsBigInt: true });
    if (!machineDocumentSchema.safeParse(document).success) throw new Error(`${path}: invalid`);
    if (document.state !== "running") return false;
    const edited = stopped(text);
    const back = parse(edited, { integersAsBigInt: true });
    if (back.state !== "stopped" || back.name !== document.name || back.vm_id !== document.vm_id) throw new Error(`${path}: edit does not read back`);
    await durableWrite(path, edited, {
      beforeCommit: async () => {
        const current = await lstat(path, { bigint: true });
        if (current.ino !== read.ino || current.mtimeNs !== read.mtimeNs) throw new Error(`${path}: changed since it was read`);
      },
    });
    return true;
  };
}
