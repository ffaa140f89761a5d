/** Every config file written by the Rust core loads with every field right, and survives rewrites. */
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "smol-toml";
import type { Machine } from "../../src/store/index.js";
import { fixtureConfig, fixtureMachines } from "../helpers/fixtures.js";
import { useTempStore } from "./temp-store.js";

const toml05Devices = (name: string) => [
  { path: "/var/lib/arcbox/boot/0.5.5/rootfs.erofs", read_only: true },
  { path: `/var/lib/arcbox/machines/${name}/data.img`, read_only: false },
];
const toml05 = (name: string, rest: Partial<Machine>): Machine => ({
  name,
  cpus: 4,
  memory_mb: 8192n,
  disk_gb: 50n,
  kernel: "/var/lib/arcbox/boot/0.5.5/kernel",
  cmdline: "console=hvc0 root=/dev/vda ro rootfstype=erofs",
  block_devices: toml05Devices(name),
  distro: "ubuntu",
  distro_version: "24.04",
  disk_path: `/var/lib/arcbox/machines/${name}/disk.img`,
  state: "created",
  vm_id: "",
  created_at: "",
  ...rest,
});

const EXPECTED: Record<string, Machine> = {
  "toml05/build": toml05("build", {
    ip_address: "10.0.2.16",
    state: "stopped",
    vm_id: "467ab4a3-3b79-4370-b3f8-0ff99b9f1fff",
    created_at: "2026-11-26T01:20:05.086084917Z",
  }),
  "toml05/default": toml05("default", {
    state: "running",
    vm_id: "fb37123f-6c4b-4d72-9c18-142b81dc6f7a",
    created_at: "2026-11-26T01:20:05.082707566Z",
  }),
  "toml05/dev": toml05("dev", {
    ip_address: "10.0.2.15",
    state: "running",
    vm_id: "7c1d4a8f-63f5-4597-ae40-cdc37145553a",
    created_at: "2026-11-26T01:20:05.084453096Z",
  }),
  "toml05/fresh": toml05("fresh", {
    state: "created",
    vm_id: "12b3f622-6775-4a31-a0c9-55767b6c79d3",
    created_at: "2026-11-26T01:20:05.087735497Z",
  }),
  "toml08/default": {
    name: "default",
    cpus: 4,
    memory_mb: 8192n,
    disk_gb: 50n,
    kernel: "/Users/alice/.arcbox/boot/0.5.5/kernel",
    cmdline:
      "console=hvc0 root=/dev/vda ro rootfstype=erofs earlycon swiotlb=noforce arcbox.guest_docker_vsock_port=2375",
    block_devices: [
      { path: "/Users/alice/.arcbox/boot/0.5.5/rootfs.erofs", read_only: true },
      { path: "/Users/alice/.arcbox/data/docker.img", read_only: false },
    ],
    state: "running",
    vm_id: "9b2f4c1e-7d3a-4e8b-a1c2-5f6e7d8c9b0a",
    created_at: "2026-04-27T04:13:21.482913Z",
  },
  "toml08/dev": {
    name: "dev",
    cpus: 2,
    memory_mb: 4096n,
    disk_gb: 20n,
    block_devices: [],
    distro: "ubuntu",
    distro_version: "24.04",
    ip_address: "10.0.2.15",
    state: "stopped",
    vm_id: "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48",
    created_at: "2026-04-27T05:01:09.120004Z",
  },
};

const t = useTempStore();

/** Copies a fixture into the temp store under its machine name; returns the original bytes. */
async function install(id: string): Promise<{ name: string; original: Buffer }> {
  const name = id.split("/")[1] as string;
  await mkdir(join(t.dir, name), { mode: 0o700 });
  await copyFile(fixtureConfig(id), join(t.dir, name, "config.toml"));
  return { name, original: await readFile(fixtureConfig(id)) };
}

describe("Rust-written fixtures", () => {
  it("covers every fixture on disk", () => {
    expect(fixtureMachines()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.keys(EXPECTED))("%s loads with every field right", async (id) => {
    const { name } = await install(id);
    const loaded = await t.store.load(name);
    expect(loaded.machine).toStrictEqual(EXPECTED[id]);
    expect(loaded.unknownKeys).toEqual([]);
  });

  it("toml05/dev: the facts the controller relies on", async () => {
    await install("toml05/dev");
    const { machine } = await t.store.load("dev");
    expect(machine.ip_address).toBe("10.0.2.15");
    expect(machine.state).toBe("running");
    expect(machine.block_devices).toHaveLength(2);
    expect(machine.created_at).toBe("2026-11-26T01:20:05.084453096Z"); // nanoseconds kept
  });

  it("loadAll over both layouts finds every machine and nothing invalid", async () => {
    for (const id of ["toml05/build", "toml05/fresh", "toml08/default"]) await install(id);
    const all = await t.store.loadAll();
    expect(all.invalid).toEqual([]);
    expect(all.machines.map((m) => m.machine.name)).toEqual(["build", "default", "fresh"]);
  });

  const rewrites: [string, string, (m: Machine) => void, Partial<Machine>][] = [];
  for (const id of Object.keys(EXPECTED)) {
    const state = EXPECTED[id]?.state === "running" ? "stopped" : "running";
    rewrites.push([id, "state (minimal edit)", (m) => void (m.state = state), { state }]);
    rewrites.push([id, "cpus (full re-serialisation)", (m) => void (m.cpus = 8), { cpus: 8 }]);
  }
  it.each(rewrites)("%s rewritten for %s parses to the same machine but that field", async (id, _what, mutate, changed) => {
    const { name } = await install(id);
    await t.store.update(name, mutate);
    const reread = await t.store.load(name);
    expect(reread.machine).toStrictEqual({ ...EXPECTED[id], ...changed });
    // and the raw document (what arcbox-core reads) has the same keys and values but the change
    const before = parse((await readFile(fixtureConfig(id))).toString(), { integersAsBigInt: true });
    const after = parse((await t.bytes(name)).toString(), { integersAsBigInt: true });
    const key = Object.keys(changed)[0] as string;
    const expected = { ...before, [key]: key === "cpus" ? BigInt(changed.cpus as number) : changed.state };
    expect({ ...after }).toEqual(expected);
    expect(typeof after.created_at).toBe("string");
  });

  it.each(Object.keys(EXPECTED))("%s: a state change differs from the original only in the state value's bytes", async (id) => {
    const { name, original } = await install(id);
    const next = EXPECTED[id]?.state === "stopped" ? "running" : "stopped";
    await t.store.updateState(name, next);
    const now = (await t.bytes(name)).toString();
    const old = original.toString();
    const prev = EXPECTED[id]?.state as string;
    const at = old.indexOf(`state = `) + "state = ".length + 1;
    expect(now).toBe(old.slice(0, at) + next + old.slice(at + prev.length));
  });
});
