/**
 * The built CLI (`dist/cli.js`) as a child process: `arcbox-controller run` with its JSON log read
 * line by line.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { waitFor } from "./processes.js";

export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

export interface RunningController {
  child: ChildProcess;
  /** `host:port` from the `listening` log line. */
  address: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  stderr: () => string;
  /** SIGTERM, then the exit code (SIGKILL after 30 s so a test can never hang). */
  stop(): Promise<number | null>;
}

/**
 * Starts `arcbox-controller run ARGS` with a clean environment and waits for its `listening` line.
 * `wrapper` (e.g. `["unshare", "--mount", ...]`) is a command that gets Node.js and its arguments
 * appended and must exec them. Throws with the output so far if it exits first.
 */
export async function startControllerProcess(args: string[], { wrapper = [] }: { wrapper?: string[] } = {}): Promise<RunningController> {
  const [command, ...commandArgs] = [...wrapper, process.execPath, CLI, "run", ...args] as [string, ...string[]];
  const child = spawn(command, commandArgs, { env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "pipe"] });
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  createInterface({ input: child.stdout! }).on("line", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const listening = await Promise.race([
    waitFor(() => logs.find((line) => line.msg === "listening"), "the listening line"),
    exited.then((code) => {
      throw new Error(`arcbox-controller run exited (${code}) before listening: ${stderr}`);
    }),
  ]);
  return {
    child,
    address: listening.address as string,
    logs,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
        const code = await exited;
        clearTimeout(kill);
        return code;
      }
      return exited;
    },
  };
}
