// A stand-in arcbox daemon for the benchmarks: a real process holding `run/daemon.lock` with flock as
// arcbox-daemon does (see children/daemon.mjs), which a benchmark SIGKILLs.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./children/daemon.mjs", import.meta.url));

/** Starts a stand-in daemon holding `lockPath`; resolves `{ pid, kill() }` once it holds the lock. */
export async function startStandInDaemon(lockPath) {
  const child = spawn(process.execPath, [CHILD, lockPath], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = once(child, "exit");
  const [first] = await Promise.race([once(createInterface({ input: child.stdout }), "line"), exited.then(([code]) => [`exit ${code}`])]);
  if (first !== "locked") throw new Error(`the stand-in daemon did not take ${lockPath}: ${first}`);
  return {
    pid: child.pid,
    /** SIGKILL, as a crashing daemon; resolves when it is gone (and the kernel has dropped its flock). */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

const WAITER = fileURLToPath(new URL("./children/lock-waiter.mjs", import.meta.url));

/**
 * Starts a process blocked in flock(2) on `lockPath` (see children/lock-waiter.mjs). Resolves once it
 * waits, with `released`: a promise of the `performance.now()` at which its word of the lock's
 * release arrived.
 */
export async function startLockWaiter(lockPath) {
  const child = spawn(process.execPath, [WAITER, lockPath], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const [first] = await Promise.race([once(lines, "line"), once(child, "exit").then(([code]) => [`exit ${code}`])]);
  if (first !== "waiting") throw new Error(`the lock waiter did not start: ${first}`);
  const released = new Promise((resolve, reject) => {
    lines.once("line", (line) => (line === "released" ? resolve(performance.now()) : reject(new Error(`the lock waiter said ${line}`))));
  });
  return { released };
}
