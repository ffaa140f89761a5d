/**
 * The package as a library: `import { MachineStore } from "arcbox-controller"` in a separate Node
 * process resolves the built package root (package.json `exports`) and works on real files.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, expect, it } from "vitest";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
let dir: string;
beforeEach(async () => (dir = await makeTempDir("package")));
afterEach(() => removeTempDir(dir));

it("exports the store, its errors and the controller from the package root", async () => {
  await writeMachine(dir, "vm", machineToml("vm"));
  const script = `
    import { MachineStore, ConflictError, InvalidConfigError, MachineNotFoundError, InvalidNameError, Controller, WorkQueue, ControllerMetrics } from "arcbox-controller";
    const store = new MachineStore({ dir: ${JSON.stringify(dir)} });
    const { machine, revision } = await store.load("vm");
    await store.updateState("vm", "stopped", { ifRevision: revision });
    const stale = await store.updateState("vm", "running", { ifRevision: revision }).catch((e) => e);
    const missing = await store.load("nope").catch((e) => e);
    const badName = await store.load("../etc").catch((e) => e);
    console.log(JSON.stringify({
      state: machine.state,
      conflict: stale instanceof ConflictError,
      notFound: missing instanceof MachineNotFoundError,
      badName: badName instanceof InvalidNameError,
      classes: [InvalidConfigError, Controller, WorkQueue, ControllerMetrics].map((c) => typeof c),
    }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { cwd: repo });
  expect(JSON.parse(stdout)).toEqual({ state: "running", conflict: true, notFound: true, badName: true, classes: ["function", "function", "function", "function"] });
  expect(await readFile(path.join(dir, "vm", "config.toml"), "utf8")).toBe(machineToml("vm").replace('state = "running"', 'state = "stopped"'));
});
