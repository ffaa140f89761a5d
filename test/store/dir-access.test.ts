/**
 * The ways of reaching names inside an opened directory (dir-ops.ts): the one chosen for this system,
 * and each one that works here doing the store's whole job, removal included — which goes through
 * descriptors too and never follows a symlink.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DIR_ACCESS_KINDS, defaultFsOps, dirAccessAvailable, fsOpsFor } from "../../src/store/dir-ops.js";
import { InvalidConfigError, MachineNotFoundError, MachineStore } from "../../src/store/index.js";
import { configText, sampleMachine, useTempStore } from "./temp-store.js";

const t = useTempStore();
const available = DIR_ACCESS_KINDS.filter(dirAccessAvailable);

describe("choosing", () => {
  it("uses the first way that works here, and says which are available", () => {
    console.log(`directory access on ${process.platform}: available ${available.join(", ")}; chosen ${defaultFsOps().access}`);
    expect(defaultFsOps().access).toBe(available[0]);
    if (process.platform === "linux") expect(available).toEqual(["proc", "devfd", "syscall"]);
  });

  it("refuses a way that does not work here", () => {
    for (const kind of DIR_ACCESS_KINDS.filter((k) => !available.includes(k))) expect(() => fsOpsFor(kind)).toThrow();
  });
});

describe.each(available)("names reached through %s", (kind) => {
  let outside: string;
  let store: MachineStore;
  beforeEach(async () => {
    outside = await mkdtemp(join(tmpdir(), "arcbox-outside-"));
    await writeFile(join(outside, "keep"), "keep");
    store = new MachineStore({ dir: t.dir, fs: fsOpsFor(kind) });
  });
  afterEach(() => rm(outside, { recursive: true, force: true }));

  it("saves, loads, edits, sweeps and removes", async () => {
    await store.save(sampleMachine("m"));
    expect((await store.load("m")).machine).toEqual(sampleMachine("m"));
    await store.updateState("m", "running");
    await store.updateIp("m", "10.0.0.9");
    expect((await store.load("m")).machine).toMatchObject({ state: "running", ip_address: "10.0.0.9" });
    await writeFile(join(t.dir, "m", ".config.toml.arcbox-tmp-1-0123456789ab"), "x");
    expect(await store.sweepTempFiles()).toEqual([join(t.dir, "m", ".config.toml.arcbox-tmp-1-0123456789ab")]);
    await store.remove("m");
    await expect(store.load("m")).rejects.toBeInstanceOf(MachineNotFoundError);
    expect(await readdir(t.dir)).toEqual([]);
  });

  it("removes a whole machine directory without following a symlink in it", async () => {
    await t.put("m", configText("m"));
    await mkdir(join(t.dir, "m", "disks", "deep"), { recursive: true });
    await writeFile(join(t.dir, "m", "disks", "deep", "data.img"), "data");
    await symlink(outside, join(t.dir, "m", "disks", "link-to-outside"));
    await symlink(join(outside, "keep"), join(t.dir, "m", "keep-link"));
    execFileSync("mkfifo", [join(t.dir, "m", "fifo")]);
    await store.remove("m");
    expect(await readdir(t.dir)).toEqual([]);
    expect(await readdir(outside)).toEqual(["keep"]);
    expect(await readFile(join(outside, "keep"), "utf8")).toBe("keep");
  });

  it("removes a symlink in a machine's place, not what it points to", async () => {
    await mkdir(t.dir, { recursive: true });
    await symlink(outside, join(t.dir, "m"));
    await expect(store.load("m")).rejects.toBeInstanceOf(InvalidConfigError);
    await store.remove("m");
    expect(await readdir(t.dir)).toEqual([]);
    expect(await readdir(outside)).toEqual(["keep"]);
  });
});
