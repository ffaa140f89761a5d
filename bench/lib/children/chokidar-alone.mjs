// The peer baseline of the service's idle cost and memory: chokidar alone, watching a machines
// directory the way the controller asks it to (each machine directory and its config.toml and
// vm.pid, one level deep, hidden entries skipped), and doing nothing with the events.
//   node bench/lib/children/chokidar-alone.mjs MACHINES_DIR
// Writes `ready` once the initial scan is done; answers each stdin line `memory` with one JSON line
// of process.memoryUsage().
import { basename, relative, sep } from "node:path";
import { createInterface } from "node:readline";
import { watch } from "chokidar";

const dir = process.argv[2];
const relevant = new Set(["config.toml", "vm.pid"]);
let events = 0;
const watcher = watch(dir, {
  ignoreInitial: true,
  depth: 1,
  followSymlinks: false,
  ignored: (path, stats) => {
    if (path === dir) return false;
    const parts = relative(dir, path).split(sep);
    if (parts[0].startsWith(".")) return true;
    if (parts.length === 1) return false;
    if (parts.length > 2) return true;
    return stats?.isDirectory() === true || !relevant.has(basename(path));
  },
});
watcher.on("all", () => events++);
watcher.on("raw", () => events++);
watcher.once("ready", () => process.stdout.write("ready\n"));
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "memory") process.stdout.write(`${JSON.stringify({ ...process.memoryUsage(), events })}\n`);
});
