/**
 * `npm start` (scripts/demo.mjs) as the README's quick start promises it: a demo machines directory
 * made from manifests/examples, the controller serving metrics, "web" recovered because no arcbox
 * daemon runs, "broken" reported as invalid, and a clean exit on SIGTERM.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, it } from "vitest";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

const DEMO = fileURLToPath(new URL("../../scripts/demo.mjs", import.meta.url));

let root: string;
beforeEach(async () => {
  root = await makeTempDir("demo");
});
afterEach(() => removeTempDir(root));

it("recovers the example machine whose daemon is not running, reports the broken one, serves metrics and stops cleanly", async () => {
  const child = spawn(process.execPath, [DEMO, "--log-format", "json"], {
    env: { PATH: process.env.PATH, HOME: root, ARCBOX_DEMO_DIR: root, ARCBOX_LISTEN: "127.0.0.1:0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(child, "exit");
  const logs: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  try {
    const recovered = await waitFor(() => logs.find((line) => line.msg === "machine recovered"), "the recovery of web");
    expect(recovered.machine).toBe("web");
    expect(recovered.reason).toMatch(/^the arcbox daemon is not running \(no lock file .*run\/daemon\.lock\)$/);
    const invalid = await waitFor(() => logs.find((line) => line.machine === "broken"), "the report of broken");
    expect(String(invalid.err)).toContain(path.join(root, "machines", "broken", "config.toml"));
    expect(await readFile(path.join(root, "machines", "web", "config.toml"), "utf8")).toMatch(/^state = "stopped"$/m);

    const address = logs.find((line) => line.msg === "listening")!.address as string;
    const expected = ['arcbox_machines{state="stopped"} 2', 'arcbox_machines{state="created"} 1', 'arcbox_machines{state="running"} 0', 'arcbox_machines{state="invalid"} 1', "arcbox_daemon_up 0"];
    const scrape = async () => (await fetch(`http://${address}/metrics`)).text();
    await waitFor(async () => {
      const metrics = await scrape();
      return expected.every((series) => metrics.includes(`${series}\n`));
    }, "the demo's machines counted by state");
  } finally {
    child.kill("SIGTERM");
  }
  expect(await exited).toEqual([0, null]);
});
