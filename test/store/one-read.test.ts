/**
 * The lean recovery path keeps every promise of the slow one: an update based on an earlier load
 * (one read per recovery) still detects a change made since, the parse kept from the store's own
 * write is used only for exactly those bytes, and a minimal edit checked by the quick read-back is
 * byte for byte the same minimal edit.
 */
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConflictError, MachineNotFoundError, MachineStore } from "../../src/store/index.js";
import { configText, useTempStore } from "./temp-store.js";

const t = useTempStore();
const running = (name: string) => configText(name).replace('state = "stopped"', 'state = "running"');

describe("an update based on an earlier load", () => {
  it("writes without reading again, and changes only the state's bytes", async () => {
    const original = running("m");
    await t.put("m", original);
    const loaded = await t.store.load("m");
    const updated = await t.store.updateState("m", "stopped", { basis: loaded });
    expect((await t.bytes("m")).toString()).toBe(original.replace('state = "running"', 'state = "stopped"'));
    expect(updated.machine).toEqual({ ...loaded.machine, state: "stopped" });
    expect(updated.unknownKeys).toEqual(loaded.unknownKeys);
  });

  it.each([
    ["rewritten by rename with other content", async (path: string) => {
      await writeFile(`${path}.new`, running("m").replace("cpus = 2", "cpus = 3"));
      await rename(`${path}.new`, path);
    }],
    ["edited in place", async (path: string) => writeFile(path, running("m").replace("cpus = 2", "cpus = 9"))],
    ["rewritten with the very same bytes", async (path: string) => writeFile(path, running("m"))],
  ])("refuses with ConflictError when the file was %s since that load, and leaves it as it is", async (_how, change) => {
    const path = await t.put("m", running("m"));
    const loaded = await t.store.load("m");
    await change(path);
    const now = await t.bytes("m");
    // Same bytes in place still changed the file's identity (its change time): refused, to be safe.
    await expect(t.store.updateState("m", "stopped", { basis: loaded })).rejects.toBeInstanceOf(ConflictError);
    expect(await t.bytes("m")).toEqual(now);
  });

  it("reports a machine deleted since that load as not found", async () => {
    await t.put("m", running("m"));
    await t.store.withMachine("m", async (machine) => {
      const loaded = await machine.load();
      await rm(join(t.dir, "m"), { recursive: true });
      await expect(machine.updateState("stopped", { basis: loaded })).rejects.toBeInstanceOf(MachineNotFoundError);
    });
  });

  it("ignores a basis of another machine and reads its own file", async () => {
    await t.put("a", running("a"));
    await t.put("b", running("b"));
    const a = await t.store.load("a");
    await t.store.updateState("b", "stopped", { basis: a });
    expect((await t.store.load("b")).machine.name).toBe("b");
    expect((await t.store.load("b")).machine.state).toBe("stopped");
    expect((await t.store.load("a")).machine.state).toBe("running");
  });
});

describe("the read after the store's own write", () => {
  it("gives the machine just written", async () => {
    await t.put("m", running("m"));
    const written = await t.store.updateState("m", "stopped");
    const reread = await t.store.load("m");
    expect(reread.machine).toEqual(written.machine);
    expect(reread.revision).toBe(written.revision);
  });

  it("gives it to every read of those bytes (a watcher reports each step of a write), each a copy of its own", async () => {
    await t.put("m", running("m"));
    const written = await t.store.updateState("m", "stopped");
    const first = await t.store.load("m");
    first.machine.cpus = 99;
    first.unknownKeys.push("changed by a reader");
    const second = await t.store.load("m");
    expect(second.machine).toEqual(written.machine);
    expect(second.unknownKeys).toEqual(written.unknownKeys);
    // And an edit based on a read of the cached parse is still the minimal edit.
    await t.store.updateState("m", "running", { basis: second });
    expect((await t.bytes("m")).toString()).toBe(running("m"));
  });

  it("is not changed by the write's caller changing the machine it got back", async () => {
    await t.put("m", running("m"));
    const written = await t.store.updateState("m", "stopped");
    const expected = structuredClone(written.machine);
    written.machine.cpus = 99;
    expect((await t.store.load("m")).machine).toEqual(expected);
  });

  it("is not kept by a store told not to remember writes (a one-shot pass), whose reads parse the file", async () => {
    await t.put("m", running("m"));
    const store = new MachineStore({ dir: t.dir, rememberWrites: false });
    const written = await store.updateState("m", "stopped");
    // What is kept has no public face: its size is the only sign.
    expect((store as unknown as { written: Map<string, unknown> }).written.size).toBe(0);
    expect((t.store as unknown as { written: Map<string, unknown> }).written.size).toBe(0);
    await t.store.updateState("m", "running");
    expect((t.store as unknown as { written: Map<string, unknown> }).written.size).toBe(1);
    const reread = await store.load("m");
    expect(reread.machine).toEqual({ ...written.machine, state: "running" });
  });

  it("parses anew whatever someone else wrote after it", async () => {
    const path = await t.put("m", running("m"));
    await t.store.updateState("m", "stopped");
    await writeFile(path, configText("m").replace("cpus = 2", "cpus = 5"));
    expect((await t.store.load("m")).machine.cpus).toBe(5);
  });

  it("can edit the written text again (its source map is made when needed)", async () => {
    const original = running("m");
    await t.put("m", original);
    await t.store.updateState("m", "stopped");
    await t.store.updateState("m", "running");
    await t.store.updateIp("m", "10.9.9.9");
    // A new ip_address line goes right before the state line (toml 0.8's declaration order).
    expect((await t.bytes("m")).toString()).toBe(original.replace('state = "running"', 'ip_address = "10.9.9.9"\nstate = "running"'));
  });
});
