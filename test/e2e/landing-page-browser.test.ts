/**
 * The landing page of a running service (the built CLI) in a real headless Chromium: after a
 * recovery and a hook failure, the rendered page lists both under "Recent activity", newest first,
 * beside the machines table and the arcbox daemon's status; `/activity` serves the same as JSON.
 * It also takes the screenshot of the README: `npm run screenshot` runs this test with
 * ARCBOX_SCREENSHOT=docs/landing-page.png.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { ActivitySnapshot } from "../../src/metrics/activity.js";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { chromiumOrSkip, launchChromium, type Browser } from "../helpers/chromium.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let controller: RunningController | undefined;
let browser: Browser | undefined;

beforeEach(async () => {
  root = await makeTempDir("browser");
});
afterEach(async () => {
  await browser?.close();
  browser = undefined;
  if (controller) expect(await controller.stop()).toBe(0);
  controller = undefined;
  await removeTempDir(root);
});

/** What the test reads from the rendered DOM. */
interface RenderedPage {
  title: string;
  headings: string[];
  daemon: string | null;
  machineColumns: string[];
  machines: string[][];
  /** The activity list follows the "Recent activity" heading in document order. */
  activityUnderHeading: boolean;
  activity: { kind: string; machine: string | null; seq: number; text: string }[];
  scripts: number;
}

const READ_DOM = `(() => {
  const heading = [...document.querySelectorAll("h2")].find((h) => h.textContent === "Recent activity");
  const list = document.querySelector("ol#activity");
  return {
    title: document.title,
    headings: [...document.querySelectorAll("h2")].map((h) => h.textContent),
    daemon: document.querySelector("#daemon")?.textContent ?? null,
    machineColumns: [...document.querySelectorAll("#machines thead th")].map((th) => th.textContent),
    machines: [...document.querySelectorAll("#machines tbody tr")].map((tr) => [...tr.cells].map((td) => td.textContent)),
    activityUnderHeading: !!heading && !!list && (heading.compareDocumentPosition(list) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0,
    activity: [...document.querySelectorAll("ol#activity > li")].map((li) => ({
      kind: li.dataset.kind, machine: li.dataset.machine ?? null, seq: Number(li.dataset.seq), text: li.textContent,
    })),
    scripts: document.scripts.length,
  };
})()`;

it("shows a recovery and a hook failure on the landing page, newest first, in a real browser", async (context) => {
  const chromium = chromiumOrSkip(context);
  const machines = path.join(root, "machines");
  const hooks = path.join(root, "hooks");
  // The hook fails for "db" only, as a bridge that is missing on this host would.
  await writeHook(hooks, "10-bridge", 'cat > /dev/null; [ "$ARCBOX_MACHINE" != db ] || { echo "bridge br0 not found" >&2; exit 3; }');
  await writeMachine(machines, "cache", machineToml("cache", { state: "stopped" }));
  await writeMachine(machines, "builder", machineToml("builder", { state: "created" }));
  const config = path.join(root, "controller.toml");
  // The default liveness (the arcbox daemon's lock) with no daemon running: running machines are stale.
  await writeFile(config, `machines_dir = "${machines}"\nhooks_dir = "${hooks}"\nlisten = "127.0.0.1:0"\nresync_interval = "1h"\n`);
  controller = await startControllerProcess(["--config", config]);
  const base = `http://${controller.address}`;
  const activity = async (): Promise<ActivitySnapshot> => (await (await fetch(`${base}/activity`)).json()) as ActivitySnapshot;

  await writeMachine(machines, "web", machineToml("web", { state: "running" }));
  await waitFor(async () => (await activity()).events.some((e) => e.kind === "recovered" && e.machine === "web"), "the recovery of web");
  await writeMachine(machines, "db", machineToml("db", { state: "running" }));
  await waitFor(async () => (await activity()).events.some((e) => e.kind === "failed" && e.machine === "db"), "the failure of db");

  browser = await launchChromium(chromium);
  await browser.page.goto(`${base}/`);
  const page = await browser.page.evaluate<RenderedPage>(READ_DOM);

  expect(page.title).toBe("arcbox-controller");
  expect(page.scripts).toBe(0);
  expect(page.daemon).toBe("arcbox daemon: down");
  expect(page.machineColumns).toEqual(["machine", "state", "alive", "needs recovery"]);
  expect(page.machines).toEqual([
    ["builder", "created", "no", "no"],
    ["cache", "stopped", "no", "no"],
    ["db", "running", "no", "yes"],
    ["web", "stopped", "no", "no"],
  ]);
  expect(page.headings).toEqual(["Machines (4, 1 needing recovery)", "Recent activity"]);
  expect(page.activityUnderHeading).toBe(true);

  // Newest first: numbers strictly falling; db's failure above web's recovery, the daemon at the bottom.
  const seqs = page.activity.map((item) => item.seq);
  expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
  const failure = page.activity.findIndex((item) => item.kind === "failed" && item.machine === "db");
  const recovery = page.activity.findIndex((item) => item.kind === "recovered" && item.machine === "web");
  expect(failure).toBeGreaterThanOrEqual(0);
  expect(recovery).toBeGreaterThan(failure);
  expect(page.activity.at(-1)).toMatchObject({ kind: "daemon", machine: null });
  expect(page.activity[recovery]!.text).toMatch(/recovered web: the arcbox daemon is not running .*; hooks 10-bridge; \d+ ms$/);
  expect(page.activity[failure]!.text).toContain("network hook 10-bridge failed for machine db: exit code 3");
  // What the hook printed stays in the log; the page says where to find it.
  expect(page.activity[failure]!.text).not.toContain("bridge br0 not found");
  expect(page.activity[failure]!.text).toMatch(/What the hook printed is in the log: reconcile_id [0-9a-f]{8}\./);

  // The JSON has both too, newest first, and (read later) everything the page showed.
  const json = await activity();
  const kinds = json.events.map((e) => `${e.kind}:${"machine" in e ? e.machine : ""}`);
  expect(kinds.indexOf("failed:db")).toBeLessThan(kinds.indexOf("recovered:web"));
  expect(json.events.map((e) => e.seq)).toEqual([...json.events.map((e) => e.seq)].sort((a, b) => b - a));
  expect(json.recorded).toBeGreaterThanOrEqual(Math.max(...seqs));
  expect(json.events.find((e) => e.kind === "failed")).toMatchObject({ hook: "10-bridge", exit_code: 3 });
  expect(JSON.stringify(json)).not.toContain("bridge br0 not found");

  const png = await browser.page.screenshot(1000);
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect(png.readUInt32BE(16)).toBe(1000);
  expect(png.readUInt32BE(20)).toBeGreaterThan(300);
  const target = process.env.ARCBOX_SCREENSHOT ? path.resolve(process.env.ARCBOX_SCREENSHOT) : path.join(root, "landing-page.png");
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, png);
});
