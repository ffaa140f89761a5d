import type { ActivityEntry } from "./activity.js";
import type { MachineView } from "./machine-table.js";

/** Escapes text for HTML element content and attribute values. Never fails. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** What the landing page shows. */
export interface LandingPageView {
  version: string;
  machines: ReadonlyArray<MachineView>;
  /**
   * The arcbox daemon (only with `liveness = "daemon"`): up or down at the last probe, or unknown
   * before the first. Absent: the page says nothing about a daemon.
   */
  daemon?: "up" | "down" | "unknown";
  /** Recent activity, newest first; absent when no record is kept. */
  activity?: ReadonlyArray<ActivityEntry>;
  /** Events recorded since start-up (the page says how many of them it shows). */
  activityRecorded?: number;
  /** What an operator should know now, shown first (a missing hooks directory, say). */
  notices?: ReadonlyArray<string>;
}

/**
 * Renders the `/` page, as Prometheus exporters do, with what an operator needs after an incident:
 * links to the endpoints, the arcbox daemon's status, every machine (state, alive, needs recovery)
 * and the recent activity, newest first. Every value from outside is HTML-escaped. Never fails.
 */
export function renderLandingPage(view: LandingPageView): string {
  const { machines } = view;
  const needing = machines.filter((m) => m.needsRecovery).length;
  const daemon =
    view.daemon === undefined
      ? ""
      : `<p id="daemon" class="daemon ${view.daemon}">arcbox daemon: <strong>${view.daemon === "unknown" ? "not probed yet" : view.daemon}</strong></p>\n`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>arcbox-controller</title>
<style>${STYLE}</style>
</head>
<body>
<h1>arcbox-controller</h1>
<p class="muted">Version ${escapeHtml(view.version)} ·
<a href="metrics">/metrics</a> · <a href="healthz">/healthz</a> · <a href="readyz?verbose">/readyz?verbose</a>${view.activity === undefined ? "" : ' · <a href="activity">/activity</a> (JSON)'}</p>
${noticeList(view.notices ?? [])}${daemon}<h2>Machines (${machines.length}${needing > 0 ? `, ${needing} needing recovery` : ""})</h2>
${machinesTable(machines)}
${view.activity === undefined ? "" : activityList(view.activity, view.activityRecorded ?? view.activity.length)}</body>
</html>
`;
}

function noticeList(notices: ReadonlyArray<string>): string {
  return notices.map((text) => `<p class="notice">${escapeHtml(text)}</p>\n`).join("");
}

function machinesTable(machines: ReadonlyArray<MachineView>): string {
  if (machines.length === 0) return `<p id="machines" class="muted">No machines known yet.</p>`;
  const rows = machines.map((m) => {
    const alive = m.alive === null ? "—" : m.alive ? "yes" : "no";
    const attention = m.needsRecovery ? ' class="attention"' : m.state === "invalid" ? ' class="invalid"' : "";
    return `<tr${attention}><td>${escapeHtml(m.name)}</td><td>${escapeHtml(m.state)}</td><td>${alive}</td><td>${m.needsRecovery ? "yes" : "no"}</td></tr>`;
  });
  return `<table id="machines">
<thead><tr><th>machine</th><th>state</th><th>alive</th><th>needs recovery</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>`;
}

function activityList(entries: ReadonlyArray<ActivityEntry>, recorded: number): string {
  const heading = `<h2>Recent activity</h2>\n`;
  if (entries.length === 0) return `${heading}<p id="activity" class="muted">Nothing has happened yet.</p>\n`;
  const shown = recorded > entries.length ? `the last ${entries.length} of ${recorded} events` : `${entries.length} event${entries.length === 1 ? "" : "s"}`;
  return `${heading}<p class="muted">Newest first; ${shown}.</p>
<ol id="activity">
${entries.map(activityItem).join("\n")}
</ol>
`;
}

function activityItem(entry: ActivityEntry): string {
  const time = `<time datetime="${escapeHtml(entry.time)}">${escapeHtml(entry.time.replace("T", " "))}</time>`;
  const open = (subject: string, machine?: string): string =>
    `<li class="${entry.kind}" data-kind="${entry.kind}" data-seq="${entry.seq}"${machine === undefined ? "" : ` data-machine="${escapeHtml(machine)}"`}>${time} <span class="kind">${subject}</span>`;
  const machine = (name: string): string => ` <span class="machine">${escapeHtml(name)}</span>`;
  switch (entry.kind) {
    case "recovered": {
      const hooks =
        entry.no_hooks !== undefined
          ? `no hooks: ${escapeHtml(entry.no_hooks)}`
          : entry.hooks.length === 0
            ? "no hooks"
            : `hooks ${entry.hooks.map(escapeHtml).join(", ")}`;
      return `${open("recovered", entry.machine)}${machine(entry.machine)}: <span class="detail">${escapeHtml(entry.reason)}; ${hooks}; ${entry.duration_ms} ms</span></li>`;
    }
    case "failed": {
      const details =
        entry.stderr !== undefined
          ? entry.stderr === "" ? "" : `<pre>${escapeHtml(entry.stderr.trimEnd())}</pre>`
          : entry.hook !== undefined && entry.reconcile_id !== undefined
            ? ` <span class="muted">What the hook printed is in the log: reconcile_id ${escapeHtml(entry.reconcile_id)}.</span>`
            : "";
      // The error names the machine first (`db: recovery failed: …`); the line already does.
      const err = entry.err.startsWith(`${entry.machine}: `) ? entry.err.slice(entry.machine.length + 2) : entry.err;
      const repeats = entry.count > 1 ? `${entry.count} times since ${escapeHtml(entry.first_time.replace("T", " "))}, ` : "";
      return `${open("failed", entry.machine)}${machine(entry.machine)}: <span class="detail">${escapeHtml(err)}</span> <span class="muted">(${repeats}attempt ${entry.attempt}, retry in ${entry.retry_in_ms} ms)</span>${details}</li>`;
    }
    case "invalid":
      return `${open("invalid config", entry.machine)}${machine(entry.machine)}: <span class="detail">${escapeHtml(entry.err)}</span></li>`;
    case "daemon":
      return `${open(entry.up ? "daemon up" : "daemon down")}: <span class="detail">${escapeHtml(entry.reason)}</span></li>`;
  }
}

const STYLE = [
  "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#1d232a;max-width:70em}",
  "h1{margin-bottom:.2em}h2{margin-top:1.4em;font-size:1.2em}",
  ".muted{color:#5c6670}a{color:#0b5cad}",
  "table{border-collapse:collapse}td,th{border:1px solid #d0d5da;padding:.25em .7em;text-align:left}th{background:#f2f4f6}",
  "tr.attention td{background:#fff4d6}tr.invalid td{background:#fde8e8}",
  ".notice{padding:.4em .7em;background:#fff4d6;border-left:4px solid #b7791f}",
  ".daemon strong{padding:0 .4em;border-radius:.3em}.daemon.up strong{background:#dff3e3}.daemon.down strong{background:#fde8e8}",
  "ol#activity{list-style:none;padding:0}ol#activity li{padding:.35em .5em;border-bottom:1px solid #e6e9ec}",
  "time{color:#5c6670;font-variant-numeric:tabular-nums;margin-right:.4em}",
  ".kind{display:inline-block;min-width:7.5em;font-weight:600}.machine{font-family:ui-monospace,monospace;font-weight:600}",
  "li.recovered .kind{color:#1a7f37}li.failed .kind,li.invalid .kind{color:#b42318}li.daemon .kind{color:#6e4aa8}",
  "pre{margin:.3em 0 0 1em;padding:.3em .6em;background:#f6f8fa;border-left:3px solid #b42318;white-space:pre-wrap;overflow-wrap:anywhere}",
].join("");
