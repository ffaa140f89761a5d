/**
 * Runs an external command-line tool (promtool, systemd-analyze, ...) to completion and keeps
 * everything it said, so a failing assertion can show the tool's own words.
 */
import { spawn } from "node:child_process";
import { it } from "vitest";

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

/**
 * Registers test `name`, whose body gets what `find` finds (a tool's path, a built binary …). When
 * `find` finds nothing, the test fails if `requireEnv` is set to 1 (CI sets it: there the prerequisite
 * must be present), and is otherwise reported by vitest as skipped, with `missing` as the reason: it
 * never passes without having run.
 */
export function itWithPrerequisite<T>(
  name: string,
  prerequisite: { find: () => T | undefined; missing: string; requireEnv: string },
  body: (found: T) => Promise<void> | void,
  timeout?: number,
): void {
  it(
    name,
    async (context) => {
      const found = prerequisite.find();
      if (found === undefined) {
        if (process.env[prerequisite.requireEnv] === "1") throw new Error(`${prerequisite.missing}, and ${prerequisite.requireEnv}=1 requires it`);
        context.skip(`${prerequisite.missing} (${prerequisite.requireEnv}=1 makes this a failure)`);
        return;
      }
      await body(found);
    },
    timeout,
  );
}
