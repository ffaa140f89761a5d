/**
 * Another writer landing in the microseconds of the commit itself — after the store's last look at
 * the file, right before or during the atomic swap — is never overwritten: the swap brings its file
 * out, the store sees that the content is not what it read, and swaps it back. The faults are timed
 * by wrapping the swap; the files and renames are real.
 */
import { renameSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, MachineStore } from "../../src/store/index.js";
import { fsOpsWith } from "./fs-ops.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();
const config = () => join(t.dir, "m", "config.toml");
/** Another writer's write by rename, as arcbox does it. */
function foreignWrite(text: string): void {
  writeFileSync(join(t.dir, "m", ".foreign"), text);
  renameSync(join(t.dir, "m", ".foreign"), config());
}

beforeEach(async () => {
  await t.put("m", configText("m"));
});

/** A store whose n-th swap (counting from 1) is preceded by `before`. */
function storeWith(before: Record<number, () => void>): MachineStore {
  let swaps = 0;
  return new MachineStore({
    dir: t.dir,
    fs: fsOpsWith({
      renameAt: (real) => async (dir, from, to, mode) => {
        if (mode === "exchange") before[++swaps]?.();
        return real(dir, from, to, mode);
      },
    }),
  });
}

describe("a write landing during the commit", () => {
  it.each([
    ["a minimal edit", (s: MachineStore) => s.updateState("m", "running")],
    ["a re-serialisation", (s: MachineStore) => s.update("m", (m) => void (m.cpus = 9))],
    ["a save", (s: MachineStore) => s.save(sampleMachine("m"))],
  ])("right before the swap (%s): swapped back, ConflictError, nothing of ours left", async (_label, write) => {
    const theirs = configText("m", "theirs = 1\n");
    const error = await write(storeWith({ 1: () => foreignWrite(theirs) })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((await t.bytes("m")).toString()).toBe(theirs);
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });

  it("written in place (same file, same size) right before the swap: noticed by content", async () => {
    const theirs = configText("m").replace("cpus = 2", "cpus = 3");
    const error = await storeWith({ 1: () => writeFileSync(config(), theirs) }).updateState("m", "running").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((await t.bytes("m")).toString()).toBe(theirs);
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });

  it("a second write landing while the first is swapped back: the newest one stays", async () => {
    const first = configText("m", "theirs = 1\n");
    const second = configText("m", "theirs = 2\n");
    const error = await storeWith({ 1: () => foreignWrite(first), 2: () => foreignWrite(second) })
      .updateState("m", "running")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((await t.bytes("m")).toString()).toBe(second);
    expect(await readdir(join(t.dir, "m"))).toEqual(["config.toml"]);
  });

  it("the file removed right before the swap is not re-created", async () => {
    let removed = false;
    const store = storeWith({
      1: () => {
        writeFileSync(join(t.dir, "m", "note"), "x");
        renameSync(config(), join(t.dir, "m", "moved-away"));
        removed = true;
      },
    });
    await expect(store.updateState("m", "running")).rejects.toThrow(/removed meanwhile/);
    expect(removed).toBe(true);
    expect((await readdir(join(t.dir, "m"))).sort()).toEqual(["moved-away", "note"]);
  });

  it("a file created right before a new machine's rename is not replaced", async () => {
    const theirs = configText("n", "theirs = 1\n");
    const store = new MachineStore({
      dir: t.dir,
      fs: fsOpsWith({
        renameAt: (real) => async (dir, from, to, mode) => {
          if (mode === "noreplace") writeFileSync(join(t.dir, "n", "config.toml"), theirs);
          return real(dir, from, to, mode);
        },
      }),
    });
    await expect(store.save(sampleMachine("n"))).rejects.toThrow(/created meanwhile/);
    expect((await t.bytes("n")).toString()).toBe(theirs);
    expect(await readdir(join(t.dir, "n"))).toEqual(["config.toml"]);
  });
});
