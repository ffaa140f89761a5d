/** One named health condition, e.g. `watcher` or `initial-sync`. */
export interface HealthCheck {
  name: string;
  ok: boolean;
  /** Why it failed; shown in the report. */
  detail?: string;
}

/** Where /healthz and /readyz read their checks from, at request time. */
export interface HealthSource {
  liveness(): HealthCheck[];
  readiness(): HealthCheck[];
}

/** An HTTP answer for a health endpoint. */
export interface HealthReport {
  status: 200 | 503;
  body: string;
}

/**
 * Renders checks the way the Kubernetes apiserver does: `ok` when all pass; otherwise 503 with the
 * failing checks (`[-]name failed: detail`); with `verbose`, every check (`[+]name ok`) and a
 * closing `<endpoint> check passed|failed` line. No checks at all counts as passing.
 */
export function renderHealthReport(endpoint: string, checks: readonly HealthCheck[], verbose: boolean): HealthReport {
  const healthy = checks.every((check) => check.ok);
  if (healthy && !verbose) return { status: 200, body: "ok\n" };
  const shown = verbose ? checks : checks.filter((check) => !check.ok);
  const lines = shown.map((check) =>
    check.ok ? `[+]${check.name} ok` : `[-]${check.name} failed: ${oneLine(check.detail ?? "no detail")}`,
  );
  lines.push(`${endpoint} check ${healthy ? "passed" : "failed"}`);
  return { status: healthy ? 200 : 503, body: `${lines.join("\n")}\n` };
}

/** Keeps one check per line whatever its detail contains. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ");
}
