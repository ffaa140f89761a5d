/**
 * The machine model of arcbox-core's `MachinePersistence`, as it is kept in
 * `<machines-dir>/<name>/config.toml`. Field names are the TOML keys (snake_case),
 * so a `Machine` serialises to JSON with exactly the config's keys.
 */

/** In-memory lifecycle states of arcbox-core. */
export const MACHINE_STATES = ["created", "starting", "running", "stopping", "stopped"] as const;
export type MachineState = (typeof MACHINE_STATES)[number];

/** The states that can be persisted (the `state` key), lowercase exactly as arcbox-core writes them. */
export const PERSISTED_STATES = ["created", "running", "stopped"] as const;
export type PersistedState = (typeof PERSISTED_STATES)[number];

/** One `[[block_devices]]` table. */
export interface BlockDevice {
  path: string;
  read_only: boolean;
}

/**
 * A valid machine config. `memory_mb` and `disk_gb` are Rust `u64` (0 ..= 2^63-1 in TOML),
 * so they are `bigint` to stay exact; `cpus` is a `u32` and fits a `number`.
 * Optional strings are absent when unset (never the empty string on disk).
 */
export interface Machine {
  name: string;
  cpus: number;
  memory_mb: bigint;
  disk_gb: bigint;
  kernel?: string;
  cmdline?: string;
  block_devices: BlockDevice[];
  distro?: string;
  distro_version?: string;
  disk_path?: string;
  ssh_key_path?: string;
  ip_address?: string;
  state: PersistedState;
  vm_id: string;
  /** RFC 3339 timestamp, kept as written (nanosecond precision survives). */
  created_at: string;
}

/** arcbox-core's `From<MachineState> for PersistedState`: transitional states persist as where they lead. */
export function toPersistedState(state: MachineState): PersistedState {
  switch (state) {
    case "created":
      return "created";
    case "starting":
    case "running":
      return "running";
    case "stopping":
    case "stopped":
      return "stopped";
  }
}

/**
 * arcbox-core's `From<PersistedState> for MachineState`: after a restart no VM runs, so a
 * persisted `running` is read back as `stopped`.
 */
export function fromPersistedState(state: PersistedState): MachineState {
  return state === "created" ? "created" : "stopped";
}

/**
 * arcbox-core's `PersistedState::needs_recovery`: the file says `running`, so if no live VM
 * backs it the controller must repair it. Liveness is checked separately (host/liveness).
 */
export function persistedStateNeedsRecovery(state: PersistedState): boolean {
  return state === "running";
}

/**
 * Serialises a machine (or any value holding bigints) as JSON, writing each bigint as an exact JSON
 * number. `JSON.stringify` throws on bigints, and `Number()` would round values above 2^53.
 */
export function toJsonWithBigInts(value: unknown, indent?: number): string {
  const marker = "\u0000bigint:";
  const text = JSON.stringify(
    value,
    (_key, v: unknown) => (typeof v === "bigint" ? `${marker}${v.toString()}` : v),
    indent,
  );
  // The marker holds a NUL, which JSON escapes as \u0000, so no real string can contain its escaped form.
  return text.replace(/"\\u0000bigint:(-?\d+)"/g, "$1");
}
