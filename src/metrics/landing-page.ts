import type { MachineView } from "./machine-table.js";

/** Escapes text for HTML element content and attribute values. Never fails. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Renders the `/` page, as Prometheus exporters do: links to the endpoints and a table of the
 * machines with their state and needs-recovery flag.
 */
export function renderLandingPage(version: string, machines: ReadonlyArray<MachineView>): string {
  const rows = machines
    .map(
      (m) =>
        `<tr><td>${escapeHtml(m.name)}</td><td>${escapeHtml(m.state)}</td><td>${m.needsRecovery ? "yes" : "no"}</td></tr>`,
    )
    .join("\n");
  const table =
    machines.length === 0
      ? "<p>No machines known yet.</p>"
      : `<table>
<thead><tr><th>machine</th><th>state</th><th>needs recovery</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>arcbox-controller</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style>
</head>
<body>
<h1>arcbox-controller</h1>
<p>Version ${escapeHtml(version)}</p>
<ul>
<li><a href="metrics">/metrics</a></li>
<li><a href="healthz">/healthz</a></li>
<li><a href="readyz?verbose">/readyz?verbose</a></li>
</ul>
<h2>Machines (${machines.length})</h2>
${table}
</body>
</html>
`;
}
