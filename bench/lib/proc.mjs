// What Linux's /proc says about a process: CPU time and context switches (wake-ups).
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 where that cannot be asked). */
export const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

/** True where /proc has per-process statistics (Linux). */
export const HAS_PROC = (() => {
  try {
    readFileSync(`/proc/${process.pid}/stat`);
    return true;
  } catch {
    return false;
  }
})();

/** CPU time (user + system, all threads) of `pid` so far, in ms. */
export function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces), counted from field 3: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

const field = (status, name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);

/**
 * Context switches of `pid`: `main` (the main thread, the event loop) and `all` (summed over the
 * threads alive now: libuv's pool, V8's workers), voluntary (the thread slept and was woken) and
 * involuntary.
 */
export function contextSwitches(pid) {
  const read = (path) => {
    const status = readFileSync(path, "utf8");
    return { voluntary: field(status, "voluntary_ctxt_switches"), involuntary: field(status, "nonvoluntary_ctxt_switches") };
  };
  const main = read(`/proc/${pid}/status`);
  const all = { voluntary: 0, involuntary: 0, threads: 0 };
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      const counts = read(`/proc/${pid}/task/${task}/status`);
      all.voluntary += counts.voluntary;
      all.involuntary += counts.involuntary;
      all.threads++;
    } catch {
      // the thread ended meanwhile
    }
  }
  return { main, all };
}
