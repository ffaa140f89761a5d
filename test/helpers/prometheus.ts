/**
 * Gates for tests that need an external Prometheus tool (promtool, prometheus): run them when the
 * tool is installed, show a visible skip when it is not, and fail instead when the environment
 * demands the tools (CI sets ARCBOX_REQUIRE_PROMETHEUS=1).
 */
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import { it } from "vitest";

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
 * ARCBOX_REQUIRE_PROMETHEUS=1 the test fails saying what is missing; otherwise it is registered as
 * "SKIPPED: <tool> not installed — <name>" and only warns.
 */
export function requireToolOrSkip(
  tool: string,
  name: string,
  body: (toolPath: string) => Promise<void> | void,
  timeout?: number,
): void {
  const toolPath = findTool(tool);
  if (toolPath !== undefined) {
    it(name, () => body(toolPath), timeout);
  } else if (process.env[REQUIRE_PROMETHEUS_ENV] === "1") {
    it(name, () => {
      throw new Error(`${tool} is not on PATH, and ${REQUIRE_PROMETHEUS_ENV}=1 requires it; install ${tool}`);
    });
  } else {
    it(`SKIPPED: ${tool} not installed — ${name}`, () => {
      console.warn(
        `SKIPPED "${name}": ${tool} is not on PATH (set ${REQUIRE_PROMETHEUS_ENV}=1 to make this a failure)`,
      );
    });
  }
}
