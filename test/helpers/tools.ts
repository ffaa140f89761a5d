/**
 * Runs an external command-line tool (promtool, systemd-analyze, ...) to completion and keeps
 * everything it said, so a failing assertion can show the tool's own words.
 */
import { spawn } from "node:child_process";

/** What a finished tool run produced. */
export interface ToolRun {
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The command line and both outputs, ready to be an assertion message. */
  report: string;
}

/**
 * Runs `tool` with `args` (no shell) in `cwd` and resolves when it exits, whatever its exit code.
 * `env` is added to this process's environment. Rejects only when the tool cannot be started at
 * all (e.g. ENOENT).
 */
export function runTool(tool: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const env = options.env === undefined ? undefined : { ...process.env, ...options.env };
    const child = spawn(tool, args, { cwd: options.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const report = [
        `$ ${[tool, ...args].join(" ")}${options.cwd ? `   (in ${options.cwd})` : ""}`,
        `exit: ${code ?? signal}`,
        `stdout:\n${stdout}`,
        `stderr:\n${stderr}`,
      ].join("\n");
      resolve({ code, signal, stdout, stderr, report });
    });
  });
}
