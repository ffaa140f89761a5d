/** Optimistic concurrency: a change made by someone else between read and write is never overwritten. */
import { rmSync, writeFileSync } from "node:fs";
import { readdir as readdirAsync } from "node:fs/promises";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, MachineStore } from "../../src/store/index.js";
import { fsOpsWith } from "./fs-ops.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const OTHER = configText("m").replace('state = "stopped"', 'state = "running"').replace("cpus = 2", "cpus = 3");

const t = useTempStore();
beforeEach(async () => {
  await t.put("m", configText("m"));
});

const onlyConfig = async () => expect(await readdirAsync(join(t.dir, "m"))).toEqual(["config.toml"]);

describe("conflicts", () => {
  it("ifRevision: an edit made after the read is not overwritten", async () => {
    const { revision } = await t.store.load("m");
    writeFileSync(join(t.dir, "m", "config.toml"), OTHER); // a person's editor, while hooks run
    await expect(t.store.updateState("m", "stopped", { ifRevision: revision })).rejects.toBeInstanceOf(ConflictError);
    await expect(t.store.updateIp("m", "10.0.0.1", { ifRevision: revision })).rejects.toThrow(/changed by another writer/);
    expect((await t.bytes("m")).toString()).toBe(OTHER);
    await onlyConfig();
  });

  it("ifRevision equal to the file's: the write goes through", async () => {
    const { revision } = await t.store.load("m");
    const result = await t.store.updateState("m", "running", { ifRevision: revision });
    expect(result.revision).not.toBe(revision);
    expect((await t.store.load("m")).machine.state).toBe("running");
  });

  it("a write between the read and the rename (inside mutate) is detected", async () => {
    const error = await t.store
      .update("m", (m) => {
        writeFileSync(join(t.dir, "m", "config.toml"), OTHER);
        m.state = "running";
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).path).toBe(join(t.dir, "m", "config.toml"));
    expect((await t.bytes("m")).toString()).toBe(OTHER);
    await onlyConfig();
  });

  it("a full re-serialisation is checked the same way", async () => {
    await expect(
      t.store.update("m", (m) => {
        writeFileSync(join(t.dir, "m", "config.toml"), OTHER);
        m.cpus = 9;
      }),
    ).rejects.toBeInstanceOf(ConflictError);
    expect((await t.bytes("m")).toString()).toBe(OTHER);
  });

  it("a file removed meanwhile is not re-created", async () => {
    await expect(
      t.store.update("m", (m) => {
        writeFileSync(join(t.dir, "m", "other-file"), "x");
        rmSync(join(t.dir, "m", "config.toml"));
        m.state = "running";
      }),
    ).rejects.toThrow(/removed meanwhile/);
    expect((await readdirAsync(join(t.dir, "m"))).sort()).toEqual(["other-file"]);
  });

  it("save: a change landing while the temp file is written is not overwritten", async () => {
    const ops = fsOpsWith({
      fsync: (real) => async (fd) => {
        writeFileSync(join(t.dir, "m", "config.toml"), OTHER);
        return real(fd);
      },
    });
    const store = new MachineStore({ dir: t.dir, fs: ops });
    await expect(store.save(sampleMachine("m"))).rejects.toBeInstanceOf(ConflictError);
    expect((await t.bytes("m")).toString()).toBe(OTHER);
    await onlyConfig();
  });

  it("save of a new machine does not replace a file created meanwhile", async () => {
    const ops = fsOpsWith({
      fsync: (real) => async (fd) => {
        writeFileSync(join(t.dir, "n", "config.toml"), configText("n"));
        return real(fd);
      },
    });
    const store = new MachineStore({ dir: t.dir, fs: ops });
    await expect(store.save(sampleMachine("n"))).rejects.toThrow(/created meanwhile/);
    expect((await t.bytes("n")).toString()).toBe(configText("n"));
  });

  it("concurrent updates of one machine: each either lands or reports a conflict, none is lost silently", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => t.store.update("m", (m) => void (m.cpus = 10 + i))),
    );
    const landed = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(ConflictError);
    expect(landed.length).toBeGreaterThanOrEqual(1);
    const final = await t.store.load("m");
    expect(landed.map((l) => l.revision)).toContain(final.revision);
    await onlyConfig();
  });
});

