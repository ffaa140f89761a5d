// Machines directories for the benchmarks: configs as arcbox-core writes them (toml 0.8's layout,
// as in its persisted fixtures: kernel, cmdline, an IP and two block devices), whole trees of them,
// and a check of the states on disk.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";

/**
 * A fresh directory for one bench under BENCH_DIR (default: the system's temp directory), and the
 * type of the file system it is on (on tmpfs an fsync costs nothing, so durable figures mean little
 * there). `remove()` deletes it.
 */
export function benchRoot(prefix) {
  const parent = process.env.BENCH_DIR || tmpdir();
  const path = mkdtempSync(join(parent, `arcbox-bench-${prefix}-`));
  const fsType = spawnSync("stat", ["-f", "-c", "%T", path], { encoding: "utf8" }).stdout?.trim() || "unknown";
  return { path, fsType, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Name of machine `i` (`m00042`): sorted names are in creation order. */
const machineName = (i) => `m${String(i).padStart(5, "0")}`;

/** A valid `config.toml` for `name` in `state`, laid out as arcbox-core's toml 0.8 writer does. */
export function machineToml(name, state, { cpus = 4 } = {}) {
  const octet = (n) => Number.parseInt(name.replace(/\D/g, "") || "0", 10) % n;
  return `name = "${name}"
cpus = ${cpus}
memory_mb = 8192
disk_gb = 50
kernel = "/Users/alice/.arcbox/boot/0.5.5/kernel"
cmdline = "console=hvc0 root=/dev/vda ro rootfstype=erofs earlycon swiotlb=noforce arcbox.guest_docker_vsock_port=2375"
ip_address = "10.0.${octet(250)}.${2 + octet(251)}"
state = "${state}"
vm_id = "9b2f4c1e-7d3a-4e8b-a1c2-${String(octet(1e12)).padStart(12, "0")}"
created_at = "2026-04-27T04:13:21.482913Z"

[[block_devices]]
path = "/Users/alice/.arcbox/boot/0.5.5/rootfs.erofs"
read_only = true

[[block_devices]]
path = "/Users/alice/.arcbox/machines/${name}/data.img"
read_only = false
`;
}

/**
 * Writes `count` machines (`m00000` …) in `state` under `dir` (created if needed), replacing what
 * was there, then flushes the file system so that no dirty page of the set-up is left for the
 * measured run's fsyncs to write. Returns their names.
 */
export function writeMachines(dir, count, state) {
  const names = Array.from({ length: count }, (_, i) => machineName(i));
  for (const name of names) {
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, "config.toml"), machineToml(name, state));
  }
  syncFileSystem(dir);
  return names;
}

/** Flushes the file system holding `dir` (syncfs through `sync -f`; a whole `sync` where that is missing). */
export function syncFileSystem(dir) {
  const result = spawnSync("sync", ["-f", dir]);
  if (result.status !== 0) spawnSync("sync");
}

/**
 * Reads every machine's config under `dir` as arcbox would (smol-toml) and counts them by `state`
 * (`unreadable` for a file that does not parse). Returns the counts and the parsed configs by name.
 */
export function readStates(dir) {
  const counts = {};
  const configs = new Map();
  for (const name of readdirSync(dir)) {
    if (name.startsWith(".")) continue;
    let state = "unreadable";
    try {
      const config = parse(readFileSync(join(dir, name, "config.toml"), "utf8"));
      configs.set(name, config);
      state = String(config.state);
    } catch {
      // counted as unreadable
    }
    counts[state] = (counts[state] ?? 0) + 1;
  }
  return { counts, configs };
}
