/**
 * The built CLI (`dist/cli.cjs`) as a child process: `arcbox-controller run` with its JSON log read
 * line by line.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile, readdir, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { waitFor } from "./processes.js";

export const CLI = fileURLToPath(new URL("../../dist/cli.cjs", import.meta.url));

/**
 * The HOME of every CLI run here unless a test gives its own: a directory that does not exist, so
 * that no ArcBox data directory of the host (~/.arcbox, its controller.toml) leaks into a test.
 */
export const NO_HOME = path.join(os.tmpdir(), "arcbox-test-home-that-does-not-exist");

export interface RunningController {
  child: ChildProcess;
  /** `host:port` from the `listening` log line. */
  address: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  stderr: () => string;
  /** SIGTERM, then the exit code (SIGKILL after 30 s so a test can never hang). */
  stop(): Promise<number | null>;
  /** Resolves once `/readyz` answers 200: the first listing has been queued. */
  ready(): Promise<void>;
}

/**
 * Starts `arcbox-controller run ARGS` with a clean environment and waits for its `listening` line.
 * `wrapper` (e.g. `["unshare", "--mount", ...]`) is a command that gets Node.js and its arguments
 * appended and must exec them. Throws with the output so far if it exits first.
 */
export async function startControllerProcess(
  args: string[],
  { wrapper = [], env = {} }: { wrapper?: string[]; env?: Record<string, string> } = {},
): Promise<RunningController> {
  const [command, ...commandArgs] = [...wrapper, process.execPath, CLI, "run", ...args] as [string, ...string[]];
  const child = spawn(command, commandArgs, { env: { PATH: process.env.PATH, HOME: NO_HOME, ...env }, stdio: ["ignore", "pipe", "pipe"] });
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
    async ready() {
      await waitFor(async () => (await fetch(`http://${listening.address as string}/readyz`).catch(() => undefined))?.status === 200, "/readyz to answer 200");
    },
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

/** How a CLI run ended. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI to completion with a clean environment (only PATH and {@link NO_HOME}, plus
 * `env`), so no config file or ARCBOX_* variable of the host leaks in. Never rejects: the exit code
 * is in the result.
 */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const options = { env: { PATH: process.env.PATH, HOME: NO_HOME, ...env }, maxBuffer: 64 * 1024 * 1024 };
    execFile(process.execPath, [CLI, ...args], options, (error, stdout, stderr) => {
      const code = error ? ((error as { code?: unknown }).code as number) : 0;
      resolve({ code: typeof code === "number" ? code : 1, stdout, stderr });
    });
  });
}

/** Every entry below `dir` with its bytes and mtime, to prove a command wrote nothing. */
export async function snapshotTree(dir: string): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const info = await stat(file);
    result.set(file, entry.isFile() ? `${info.mtimeMs}:${await readFile(file, "base64")}` : "dir");
  }
  return result;
}
