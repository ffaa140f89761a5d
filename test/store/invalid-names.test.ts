/**
 * An entry whose name is not a valid machine name is invalid while it exists and "not found" once it
 * is gone, so that whoever tracks it (the controller, its metrics) forgets it. Names that could
 * escape the machines directory are refused without touching any path (bad-input.test.ts).
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Controller } from "../../src/controller/controller.js";
import { ControllerMetrics } from "../../src/metrics/controller-metrics.js";
import { InvalidNameError, MachineNotFoundError } from "../../src/store/index.js";
import { machineToml, memoryLogger, testConfig } from "../helpers/machines.js";
import { waitFor } from "../helpers/processes.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();
const NAMES = ["bad name", "-x", "y.", ".hidden", "a".repeat(129)];

describe("an invalid name", () => {
  it.each(NAMES)("%j: invalid while the entry exists, not found once it is gone", async (name) => {
    await t.put(name, configText(name));
    await expect(t.store.load(name)).rejects.toBeInstanceOf(InvalidNameError);
    await expect(t.store.update(name, () => undefined)).rejects.toBeInstanceOf(InvalidNameError);

    await rm(path.join(t.dir, name), { recursive: true });
    const gone = await t.store.load(name).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(MachineNotFoundError);
    expect((gone as MachineNotFoundError).path).toBe(path.join(t.dir, name));
    await expect(t.store.update(name, () => undefined)).rejects.toBeInstanceOf(MachineNotFoundError);
  });

  it.each(NAMES)("%j: a file of that name (not a directory) is no machine, as for arcbox-core's list()", async (name) => {
    await mkdir(t.dir, { recursive: true });
    await writeFile(path.join(t.dir, name), "x");
    await expect(t.store.load(name)).rejects.toBeInstanceOf(MachineNotFoundError);
    expect((await t.store.loadAll()).invalid.map((entry) => entry.name)).not.toContain(name);
  });

  it.each(NAMES)("%j is never created or removed, whether or not it exists", async (name) => {
    await expect(t.store.save(sampleMachine(name))).rejects.toBeInstanceOf(InvalidNameError);
    await expect(t.store.remove(name)).rejects.toBeInstanceOf(InvalidNameError);
    await t.put(name, configText(name));
    await expect(t.store.remove(name)).rejects.toBeInstanceOf(InvalidNameError);
    expect((await t.bytes(name)).toString()).toBe(configText(name));
  });
});

describe("through the controller", () => {
  let controller: Controller | undefined;
  afterEach(async () => {
    await controller?.stop();
    controller = undefined;
  });

  it("forgets removed entries with invalid names: their series and the invalid count go", async () => {
    const bad = ["bad name", "-x", "y."];
    for (const name of bad) await t.put(name, machineToml(name));
    await t.put("fine", machineToml("fine", { state: "stopped" }));
    const metrics = new ControllerMetrics({ version: "test" });
    controller = new Controller({ config: testConfig(t.dir, path.join(t.dir, "..", "no-hooks"), { liveness: "none" }), logger: memoryLogger().logger, metrics });
    await controller.start();
    await waitFor(async () => /arcbox_machines\{state="invalid"\} 3/.test(await metrics.metricsText()), "three invalid entries");
    for (const name of bad) expect(metrics.machines().find((m) => m.name === name)?.state).toBe("invalid");

    for (const name of bad) await rm(path.join(t.dir, name), { recursive: true });
    await waitFor(async () => /arcbox_machines\{state="invalid"\} 0/.test(await metrics.metricsText()), "no invalid entries");
    expect(metrics.machines().map((m) => m.name)).toEqual(["fine"]);
    const text = await metrics.metricsText();
    for (const name of bad) expect(text).not.toContain(`machine="${name}"`);
  });
});
