/** The tests of arcbox-core's MachinePersistence, ported. */
import { describe, expect, it } from "vitest";
import {
  MachineNotFoundError,
  fromPersistedState,
  persistedStateNeedsRecovery,
} from "../../src/store/index.js";
import { sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();

describe("MachinePersistence (ported from arcbox-core)", () => {
  it("save then load gives the same fields, created_at preserved", async () => {
    const machine = sampleMachine("test-vm", { ip_address: "192.168.64.2", state: "running" });
    await t.store.save(machine);
    const loaded = await t.store.load("test-vm");
    expect(loaded.machine).toEqual(machine);
    expect(loaded.machine.created_at).toBe("2026-04-27T04:13:21.482913Z");
    expect(loaded.unknownKeys).toEqual([]);
  });

  it("list returns the saved machines, sorted", async () => {
    for (const name of ["vm3", "vm1", "vm2"]) await t.store.save(sampleMachine(name));
    expect(await t.store.list()).toEqual(["vm1", "vm2", "vm3"]);
  });

  it("remove deletes the machine; load fails after", async () => {
    await t.store.save(sampleMachine("gone"));
    await t.store.remove("gone");
    await expect(t.store.load("gone")).rejects.toBeInstanceOf(MachineNotFoundError);
    expect(await t.store.list()).toEqual([]);
    await t.store.remove("gone"); // a missing machine is not an error
  });

  it("update changes state and ip in one call", async () => {
    await t.store.save(sampleMachine("upd"));
    const result = await t.store.update("upd", (m) => {
      m.state = "running";
      m.ip_address = "10.0.0.9";
    });
    expect(result.machine.state).toBe("running");
    expect(result.machine.ip_address).toBe("10.0.0.9");
    const loaded = await t.store.load("upd");
    expect(loaded.machine).toEqual({ ...sampleMachine("upd"), state: "running", ip_address: "10.0.0.9" });
    expect(loaded.revision).toBe(result.revision);
  });

  it("needs_recovery is true only for running", () => {
    expect(persistedStateNeedsRecovery("running")).toBe(true);
    expect(persistedStateNeedsRecovery("stopped")).toBe(false);
    expect(persistedStateNeedsRecovery("created")).toBe(false);
  });

  it("a persisted running machine reloads as stopped, and update_state(stopped) sticks", async () => {
    await t.store.save(sampleMachine("rec", { state: "running" }));
    const before = await t.store.load("rec");
    expect(before.machine.state).toBe("running");
    expect(fromPersistedState(before.machine.state)).toBe("stopped");
    await t.store.updateState("rec", "stopped");
    const after = await t.store.load("rec");
    expect(after.machine.state).toBe("stopped");
    expect(persistedStateNeedsRecovery(after.machine.state)).toBe(false);
    // transitional in-memory states persist as where they lead
    await t.store.updateState("rec", "starting");
    expect((await t.store.load("rec")).machine.state).toBe("running");
    await t.store.updateState("rec", "stopping");
    expect((await t.store.load("rec")).machine.state).toBe("stopped");
  });
});
