/**
 * The schema of `config.toml`: exactly what arcbox-core's serde loader accepts, applied to the
 * parsed document (integers as bigint, floats as number, datetimes as TomlDate).
 */
import { TomlDate } from "smol-toml";
import { z } from "zod";
import { parseCreatedAt } from "./created-at.js";
import type { Machine } from "./machine.js";
import { PERSISTED_STATES } from "./machine.js";

export const U32_MAX = 2n ** 32n - 1n;
/** serde reads a `u64` from a TOML integer, which is an i64: so 2^63-1 is the real limit. */
export const U64_TOML_MAX = 2n ** 63n - 1n;
export const I64_MIN = -(2n ** 63n);

/** Keys of `PersistedMachine` in its declaration order (the order arcbox-core's toml 0.8 writes). */
export const MACHINE_KEYS = [
  "name",
  "cpus",
  "memory_mb",
  "disk_gb",
  "kernel",
  "cmdline",
  "block_devices",
  "distro",
  "distro_version",
  "disk_path",
  "ssh_key_path",
  "ip_address",
  "state",
  "vm_id",
  "created_at",
] as const;
export type MachineKey = (typeof MACHINE_KEYS)[number];

export const OPTIONAL_STRING_KEYS = [
  "kernel",
  "cmdline",
  "distro",
  "distro_version",
  "disk_path",
  "ssh_key_path",
  "ip_address",
] as const;

export const BLOCK_DEVICE_KEYS = ["path", "read_only"] as const;

/** How a TOML value is called in messages: "an integer", "a float", "a datetime", ... */
export function describeTomlValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "bigint") return `an integer (${value})`;
  if (typeof value === "number") return `a float (${value})`;
  if (typeof value === "string") return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  if (typeof value === "boolean") return `a boolean (${value})`;
  if (value instanceof TomlDate) return "a bare TOML datetime";
  if (Array.isArray(value)) return "an array";
  return "a table";
}

const rangeError = (max: bigint) => (issue: { input?: unknown }) =>
  `${String(issue.input)} is out of range (0 ..= ${max})`;

const unsigned = (max: bigint) =>
  z.bigint().refine((v) => v >= 0n && v <= max, { error: rangeError(max) });

const optionalString = z.string().optional();

const createdAt = z
  .string()
  .refine((value) => parseCreatedAt(value) !== undefined, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not an RFC 3339 timestamp as arcbox-core's chrono reads it (e.g. "2026-04-27T04:13:21.482913Z")`,
  })
  .optional();

function isPlainTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof TomlDate);
}

/**
 * serde also reads a struct from a sequence of its fields in order (`["/d.img", true]`, further
 * elements ignored); such a device is read as its table.
 */
const blockDevice = z.preprocess(
  (value) => (Array.isArray(value) && value.length >= 2 ? { path: value[0], read_only: value[1] } : value),
  z.object({ path: z.string(), read_only: z.boolean() }),
);

/**
 * serde reads a unit variant from its name, or from a table holding only that name with an empty
 * table as its value (`state = { running = {} }`, or `[state.running]`).
 */
const persistedState = z.preprocess(
  (value) => {
    if (!isPlainTable(value)) return value;
    const entries = Object.entries(value);
    const [key, inner] = entries[0] ?? [];
    return entries.length === 1 && isPlainTable(inner) && Object.keys(inner).length === 0 ? key : value;
  },
  z.enum(PERSISTED_STATES, {
    error: (issue) =>
      typeof issue.input === "string"
        ? `expected "created", "running" or "stopped" (lowercase), found ${JSON.stringify(issue.input)}`
        : `expected "created", "running" or "stopped" (lowercase), found ${describeTomlValue(issue.input)}`,
  }),
);

/** The document schema; unknown keys are allowed (and dropped from the output, kept by the codec). */
export const machineDocumentSchema = z.object({
  name: z.string(),
  cpus: unsigned(U32_MAX),
  memory_mb: unsigned(U64_TOML_MAX),
  disk_gb: unsigned(U64_TOML_MAX),
  kernel: optionalString,
  cmdline: optionalString,
  block_devices: z.array(blockDevice).optional(),
  distro: optionalString,
  distro_version: optionalString,
  disk_path: optionalString,
  ssh_key_path: optionalString,
  ip_address: optionalString,
  state: persistedState,
  vm_id: z.string(),
  created_at: createdAt,
});

/** What the zod issue of a wrong or missing value should say, in the words of TOML. */
export function describeTypeIssue(expected: string, input: unknown): string {
  if (input === undefined) return "required key is missing";
  const wanted: Record<string, string> = {
    bigint: "an integer",
    string: "a string",
    boolean: "a boolean",
    array: "an array of tables ([[block_devices]])",
    object: "a table",
  };
  const reason = `expected ${wanted[expected] ?? expected}, found ${describeTomlValue(input)}`;
  return input instanceof TomlDate && expected === "string"
    ? `${reason}; quote it: arcbox-core reads it only as a string`
    : reason;
}

/** Builds the Machine from a document the schema accepted; a missing `created_at` becomes now. */
export function machineFromDocument(data: z.output<typeof machineDocumentSchema>, now: () => Date): Machine {
  const machine: Machine = {
    name: data.name,
    cpus: Number(data.cpus),
    memory_mb: data.memory_mb,
    disk_gb: data.disk_gb,
    block_devices: (data.block_devices ?? []).map((d) => ({ path: d.path, read_only: d.read_only })),
    state: data.state,
    vm_id: data.vm_id,
    created_at: data.created_at ?? now().toISOString(),
  };
  for (const key of OPTIONAL_STRING_KEYS) {
    const value = data[key];
    if (value !== undefined) machine[key] = value;
  }
  return orderMachineKeys(machine);
}

/** The same machine with its keys in declaration order (for stable output and comparisons). */
export function orderMachineKeys(machine: Machine): Machine {
  const ordered: Record<string, unknown> = {};
  for (const key of MACHINE_KEYS) {
    if (machine[key] !== undefined) ordered[key] = machine[key];
  }
  return ordered as unknown as Machine;
}
