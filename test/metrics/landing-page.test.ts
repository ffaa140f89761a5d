import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ActivityLog, type ActivityEntry } from "../../src/metrics/activity.js";
import { escapeHtml, renderLandingPage } from "../../src/metrics/landing-page.js";

/** One event of every kind, recorded in this order (so newest first is the reverse). */
function everyKind(text = (s: string) => s): ActivityEntry[] {
  const log = new ActivityLog();
  log.record({ kind: "daemon", up: false, reason: text("no process holds the lock") });
  log.record({ kind: "recovered", machine: text("web"), reason: text("daemon is down"), hooks: [text("10-net"), text("20-dns")], duration_ms: 16 });
  log.record({ kind: "invalid", machine: text("bad"), err: text("config.toml:3:9: invalid state") });
  log.record({ kind: "failed", machine: text("db"), attempt: 2, retry_in_ms: 200, err: text("network hook 10-net failed for machine db: exit code 3"), hook: text("10-net"), exit_code: 3, stderr: text("no bridge br0\n") });
  return log.recent();
}

describe("landing page", () => {
  it("escapes every HTML-significant character", () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;");
  });

  it("says so when there are no machines and no activity, and escapes the version", () => {
    const html = renderLandingPage({ version: "<v>", machines: [], activity: [] });
    expect(html).toContain("No machines known yet.");
    expect(html).toContain("Nothing has happened yet.");
    expect(html).toContain("Version &#60;v&#62;");
  });

  it("lists machines with state, alive and needs recovery", () => {
    const html = renderLandingPage({
      version: "1",
      machines: [
        { name: "a", state: "running", alive: false, needsRecovery: true },
        { name: "b", state: "running", alive: true, needsRecovery: false },
        { name: "c", state: "invalid", alive: null, needsRecovery: false },
      ],
    });
    expect(html).toContain("<h2>Machines (3, 1 needing recovery)</h2>");
    expect(html).toContain("<thead><tr><th>machine</th><th>state</th><th>alive</th><th>needs recovery</th></tr></thead>");
    expect(html).toContain('<tr class="attention"><td>a</td><td>running</td><td>no</td><td>yes</td></tr>');
    expect(html).toContain("<tr><td>b</td><td>running</td><td>yes</td><td>no</td></tr>");
    expect(html).toContain('<tr class="invalid"><td>c</td><td>invalid</td><td>—</td><td>no</td></tr>');
    // Without an activity record there is neither the section nor the link to its JSON.
    expect(html).not.toContain("Recent activity");
    expect(html).not.toContain('href="activity"');
  });

  it("shows the arcbox daemon's status only when given", () => {
    expect(renderLandingPage({ version: "1", machines: [] })).not.toContain("arcbox daemon");
    expect(renderLandingPage({ version: "1", machines: [], daemon: "up" })).toContain('<p id="daemon" class="daemon up">arcbox daemon: <strong>up</strong></p>');
    expect(renderLandingPage({ version: "1", machines: [], daemon: "down" })).toContain("arcbox daemon: <strong>down</strong>");
    expect(renderLandingPage({ version: "1", machines: [], daemon: "unknown" })).toContain("arcbox daemon: <strong>not probed yet</strong>");
  });

  it("lists recent activity newest first under its heading, with what each event says", () => {
    const activity = everyKind();
    const html = renderLandingPage({ version: "1", machines: [], activity, activityRecorded: 400 });
    expect(html).toContain("<h2>Recent activity</h2>");
    expect(html).toContain("Newest first; the last 4 of 400 events.");
    expect(html).toContain('href="activity"');
    const kinds = [...html.matchAll(/<li class="[^"]*" data-kind="([a-z]+)" data-seq="(\d+)"/g)].map((m) => `${m[2]}:${m[1]}`);
    expect(kinds).toEqual(["4:failed", "3:invalid", "2:recovered", "1:daemon"]);
    expect(html).toContain('data-machine="web"><time datetime="');
    expect(html).toContain("daemon is down; hooks 10-net, 20-dns; 16 ms");
    expect(html).toContain("network hook 10-net failed for machine db: exit code 3</span> <span class=\"muted\">(attempt 2, retry in 200 ms)</span><pre>no bridge br0</pre>");
    expect(html).toContain("config.toml:3:9: invalid state");
    expect(html).toContain('<span class="kind">daemon down</span>: <span class="detail">no process holds the lock</span>');
  });

  it("drops the machine's name from the front of its error, and says how often a failure repeated", () => {
    const log = new ActivityLog({ now: () => new Date("2026-04-27T04:00:00.000Z") });
    for (const attempt of [1, 2, 3]) log.record({ kind: "failed", machine: "db", attempt, retry_in_ms: 400, err: "db: recovery failed: exit code 3" });
    const html = renderLandingPage({ version: "1", machines: [], activity: log.recent() });
    expect(html).toContain('<span class="machine">db</span>: <span class="detail">recovery failed: exit code 3</span> <span class="muted">(3 times since 2026-04-27 04:00:00.000Z, attempt 3, retry in 400 ms)</span>');
  });

  it("escapes every value from outside: machine names, reasons, errors, hooks, stderr", () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        // Each field carries a tag and quotes; none may reach the page unescaped.
        const hostile = (s: string) => `<u>${text}"'&${s}`;
        const html = renderLandingPage({
          version: hostile("v"),
          machines: [{ name: hostile("m"), state: "invalid", alive: null, needsRecovery: false }],
          daemon: "down",
          activity: everyKind(hostile),
        });
        return !html.includes("<u>") && !html.includes(`"'&`);
      }),
    );
  });
});
