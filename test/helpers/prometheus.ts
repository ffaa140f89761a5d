/**
 * Gates for tests that need an external Prometheus tool (promtool, prometheus): run them when the
 * tool is installed, show a visible skip when it is not, and fail instead when the environment
 * demands the tools (CI sets ARCBOX_REQUIRE_PROMETHEUS=1).
 */
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import { itWithPrerequisite } from "./tools.js";

/** The environment variable that turns a missing tool into a failure. */
export const REQUIRE_PROMETHEUS_ENV = "ARCBOX_REQUIRE_PROMETHEUS";

/** The absolute path of executable `name` on PATH, or undefined when there is none. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // Not here; keep looking.
    }
  }
  return undefined;
}

/**
 * Registers test `name`, whose body receives the tool's path. Without the tool: when
 * ARCBOX_REQUIRE_PROMETHEUS=1 the test fails saying what is missing; otherwise vitest reports it as
 * skipped, with the reason.
 */
export function requireToolOrSkip(
  tool: string,
  name: string,
  body: (toolPath: string) => Promise<void> | void,
  timeout?: number,
): void {
  itWithPrerequisite(name, { find: () => findTool(tool), missing: `${tool} is not on PATH`, requireEnv: REQUIRE_PROMETHEUS_ENV }, body, timeout);
}
