/**
 * What a failing hook printed may be a secret: the landing page and /activity, which anyone who can
 * reach the metrics port may read, say which hook failed and how, and leave its output to the log
 * unless `show_hook_output = true` (docs/design.md#endpoints). Through the built CLI.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

const secret = "token=hunter2-5f1c";
let root: string;
let controller: RunningController | undefined;

beforeEach(async () => (root = await makeTempDir("hook-output")));
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await removeTempDir(root);
});

async function failingHookService(settings: string): Promise<RunningController> {
  const hooks = path.join(root, "hooks");
  await writeHook(hooks, "10-net", `echo "login failed, ${secret}" >&2; exit 3`);
  await writeMachine(path.join(root, "machines"), "web", machineToml("web"));
  const config = path.join(root, "controller.toml");
  await writeFile(config, [`machines_dir = "${path.join(root, "machines")}"`, `hooks_dir = "${hooks}"`, 'liveness = "none"', settings, ""].join("\n"));
  controller = await startControllerProcess(["--config", config, "--listen", "127.0.0.1:0"]);
  await waitFor(async () => (await pages(controller!))[1]!.includes('"kind":"failed"'), "the failure in /activity");
  return controller;
}

async function pages(c: RunningController): Promise<string[]> {
  return [await (await fetch(`http://${c.address}/`)).text(), await (await fetch(`http://${c.address}/activity`)).text()];
}

describe("what a failing hook printed", () => {
  it("stays in the log: the landing page and /activity say which hook failed, how, and where the details are", async () => {
    const c = await failingHookService("");
    const [page, activity] = await pages(c);
    expect(page).toContain("network hook 10-net failed for machine web: exit code 3");
    expect(page).toMatch(/What the hook printed is in the log: reconcile_id [0-9a-f]{8}/);
    for (const text of [page, activity]) expect(text).not.toContain(secret);
    expect(JSON.stringify(c.logs.find((line) => line.msg === "reconcile failed; will retry"))).toContain(secret);
  });

  it("is shown there too with show_hook_output = true", async () => {
    const c = await failingHookService("show_hook_output = true");
    for (const text of await pages(c)) expect(text).toContain(secret);
  });
});
