/** Test support: a MachineStore on a fresh temp directory, and machine builders. */
import { mkdtemp, mkdir, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";
import { MachineStore, type DurableFsOps, type Machine } from "../../src/store/index.js";

export interface TempStore {
  dir: string;
  store: MachineStore;
  /** Writes `<dir>/<name>/config.toml` (creating the directory) with exactly `text`. */
  put(name: string, text: string | Uint8Array, mode?: number): Promise<string>;
  bytes(name: string): Promise<Buffer>;
  cleanup(): Promise<void>;
}

export async function tempStore(fs?: DurableFsOps): Promise<TempStore> {
  const dir = await mkdtemp(join(tmpdir(), "arcbox-store-"));
  const store = new MachineStore({ dir, fs });
  return {
    dir,
    store,
    async put(name, text, mode = 0o600) {
      await mkdir(join(dir, name), { recursive: true, mode: 0o700 });
      const path = join(dir, name, "config.toml");
      await writeFile(path, text);
      await chmod(path, mode);
      return path;
    },
    bytes: (name) => readFile(join(dir, name, "config.toml")),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Gives every test of the calling file (or describe block) a fresh TempStore, created before the
 * test and removed after it. The returned object always refers to the current test's store.
 */
export function useTempStore(): TempStore {
  let current: TempStore | undefined;
  beforeEach(async () => {
    current = await tempStore();
  });
  afterEach(async () => {
    await current?.cleanup();
    current = undefined;
  });
  const now = (): TempStore => {
    if (current === undefined) throw new Error("useTempStore: the store exists only while a test runs");
    return current;
  };
  return {
    get dir() {
      return now().dir;
    },
    get store() {
      return now().store;
    },
    put: (name, text, mode) => now().put(name, text, mode),
    bytes: (name) => now().bytes(name),
    cleanup: () => now().cleanup(),
  };
}

/** A valid machine with sensible values; `overrides` replace fields. */
export function sampleMachine(name: string, overrides: Partial<Machine> = {}): Machine {
  return {
    name,
    cpus: 4,
    memory_mb: 8192n,
    disk_gb: 50n,
    kernel: "/var/lib/arcbox/boot/kernel",
    cmdline: "console=hvc0 root=/dev/vda ro",
    block_devices: [
      { path: "/var/lib/arcbox/boot/rootfs.erofs", read_only: true },
      { path: `/var/lib/arcbox/machines/${name}/data.img`, read_only: false },
    ],
    distro: "ubuntu",
    distro_version: "24.04",
    state: "created",
    vm_id: "7c1d4a8f-63f5-4597-ae40-cdc37145553a",
    created_at: "2026-04-27T04:13:21.482913Z",
    ...overrides,
  };
}

/** A hand-written valid config for `name`, in toml08 style. */
export function configText(name: string, extra = ""): string {
  return `name = "${name}"
cpus = 2
memory_mb = 4096
disk_gb = 20
state = "stopped"
vm_id = "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48"
created_at = "2026-04-27T05:01:09.120004Z"
${extra}`;
}
