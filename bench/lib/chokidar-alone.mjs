// chokidar alone watching a machines directory, as a child process (see children/chokidar-alone.mjs).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./children/chokidar-alone.mjs", import.meta.url));

/**
 * Starts chokidar alone on `dir`; resolves once its initial scan is done with `{ pid, memory(),
 * stop() }`: `memory()` resolves its process.memoryUsage() (bytes).
 */
export async function startChokidarAlone(dir) {
  const child = spawn(process.execPath, [CHILD, dir], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, "exit");
  const [first] = await Promise.race([once(lines, "line"), exited.then(([code]) => [`exit ${code}`])]);
  if (first !== "ready") throw new Error(`chokidar alone did not start: ${first}`);
  return {
    pid: child.pid,
    async memory() {
      const answer = once(lines, "line");
      child.stdin.write("memory\n");
      return JSON.parse((await answer)[0]);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
