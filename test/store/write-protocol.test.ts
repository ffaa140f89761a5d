/**
 * The order of a durable write's steps, observed on the real file system: the temp file is synced
 * before it is swapped into place, and the directory is synced after the swap and before the file it
 * replaced is removed. And the bytes written are always checked before they are put in place.
 */
import { constants } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MachineStore, StoreError } from "../../src/store/index.js";
import { defaultFsOps } from "../../src/store/dir-ops.js";
import { fsOpsWith } from "./fs-ops.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();
const base = defaultFsOps();

/** The store's file operations, recording each step that changes or syncs something. */
function recording(): { store: MachineStore; steps: string[] } {
  const steps: string[] = [];
  const kind = async (fd: number) => ((await base.fstat(fd)).isDirectory() ? "directory" : "file");
  const ops = fsOpsWith({
    openAt: (real) => async (dir, name, flags, mode) => {
      if (flags & constants.O_CREAT) steps.push(`create ${name.startsWith(".") ? "temp" : name}`);
      return real(dir, name, flags, mode);
    },
    write: (real) => async (...args) => {
      if (steps.at(-1) !== "write") steps.push("write");
      return real(...args);
    },
    fsync: (real) => async (fd) => {
      steps.push(`fsync ${await kind(fd)}`);
      return real(fd);
    },
    renameAt: (real) => async (dir, from, to, mode) => {
      steps.push(`rename ${mode}`);
      return real(dir, from, to, mode);
    },
    unlinkAt: (real) => async (dir, name) => {
      steps.push("unlink temp");
      return real(dir, name);
    },
  });
  return { store: new MachineStore({ dir: t.dir, fs: ops }), steps };
}

describe("the steps of a durable write", () => {
  it("a replacement: temp written and synced, swapped in, directory synced, then the old file removed", async () => {
    await t.put("m", configText("m"));
    const { store, steps } = recording();
    await store.updateState("m", "running");
    expect(steps).toEqual(["create temp", "write", "fsync file", "rename exchange", "fsync directory", "unlink temp"]);
  });

  it("a new file: temp written and synced, renamed into the free name, directory synced", async () => {
    const { store, steps } = recording();
    await store.save(sampleMachine("n"));
    expect(steps).toEqual(["create temp", "write", "fsync file", "rename noreplace", "fsync directory"]);
  });
});

describe("what is written is checked before it is put in place", () => {
  it.each([
    ["a state arcbox-core does not know (minimal edit)", (m: { state: string }) => void (m.state = "starting")],
    ["a state arcbox-core does not know (with another change)", (m: { state: string; cpus: number }) => void ((m.state = "Running"), (m.cpus = 3))],
    ["an ip_address that is not a string", (m: { ip_address?: unknown }) => void (m.ip_address = 7)],
  ])("%s: refused, the file unchanged and no temp file", async (_label, mutate) => {
    await t.put("m", configText("m"));
    await expect(t.store.update("m", mutate as never)).rejects.toBeInstanceOf(StoreError);
    expect((await t.bytes("m")).toString()).toBe(configText("m"));
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });
});
