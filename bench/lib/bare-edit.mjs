// The physical limit of edit → recovered for one machine: the edit seen by a bare fs.watch on the
// machine's directory, and one bare durable write of `stopped` (see durable.mjs), both on the real file.
import { watch } from "node:fs";
import { dirname } from "node:path";
import { arcboxWrite, durableWrite } from "./durable.mjs";
import { since, sleep } from "./stats.mjs";

/**
 * `rounds` times: writes `text("running", round)` to `config` as arcbox does and times the bare
 * fs.watch event it causes, then times a bare durable write of `text("stopped", round)`. Resolves the
 * times in ms: `{ events, writes }`. Leaves the file `stopped`.
 */
export async function measureBareEdit(config, text, rounds) {
  const events = [];
  const writes = [];
  let seen;
  const watcher = watch(dirname(config), () => seen?.());
  try {
    for (let round = 0; round < rounds; round++) {
      const event = new Promise((resolve) => (seen = resolve));
      const started = performance.now();
      arcboxWrite(config, text("running", round));
      await event;
      events.push(since(started));
      seen = undefined;
      await sleep(5);
      const writeStarted = performance.now();
      await durableWrite(config, text("stopped", round));
      writes.push(since(writeStarted));
      await sleep(20);
    }
  } finally {
    watcher.close();
  }
  return { events, writes };
}
