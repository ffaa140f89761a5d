/**
 * `arcbox-controller get`: lists every entry of the machines directory, invalid ones included,
 * with its state, liveness and health; an entry that is no machine (a directory without
 * config.toml) shows as `NoConfig`. Read-only.
 */
import type { ControllerConfig } from "../controller/config.js";
import { livenessOptions } from "../controller/controller.js";
import { probeLiveness, type LivenessOptions } from "../host/liveness.js";
import { escapeText } from "../platform/escape-text.js";
import { InvalidConfigError, MachineStore, type InvalidMachine, type LoadedMachine, type NotAMachine } from "../store/index.js";
import { parseCreatedAt } from "../store/created-at.js";
import { toJsonWithBigInts } from "../store/machine.js";
import { hooksNote, listingFailure, missingDirectoryNote } from "./listing.js";

/**
 * One row of `get -o json`. Its texts from the disk (`name`, `ip_address`, `path`, `error`) are spelled
 * by escapeText, as in the table: printable, on one line, and two different names never spelled alike,
 * a name that is not UTF-8 included (`f\xff`); `state` and `created_at` are checked by the schema.
 */
export interface MachineStatusRow {
  name: string;
  status: "Healthy" | "NeedsRecovery" | "Invalid" | "NoConfig";
  state: string | null;
  alive: boolean | null;
  ip_address: string | null;
  cpus: number | null;
  memory_mb: bigint | null;
  created_at: string | null;
  path: string;
  error: string | null;
}

/** A row and, for an invalid entry, the short reason the table shows (escaped too). */
interface StatusEntry extends MachineStatusRow {
  reason?: string;
}

/** The fields of a row about an entry that is not a valid machine. */
const NOTHING_LOADED = { state: null, alive: null, ip_address: null, cpus: null, memory_mb: null, created_at: null } as const;

/** Reads every machine and probes its liveness. Throws only when the directory cannot be listed. */
export async function collectStatus(config: ControllerConfig): Promise<StatusEntry[]> {
  const store = new MachineStore({ dir: config.machinesDir });
  const { machines, invalid, notMachines } = await store.loadAll();
  const rows: StatusEntry[] = [];
  const liveness = livenessOptions(config);
  for (const loaded of machines) rows.push(await machineRow(config, store, liveness, loaded));
  rows.push(...invalid.map(invalidRow), ...notMachines.map(noConfigRow));
  return rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The row of a machine that is not valid; the table shows the config's own problem without its path. */
function invalidRow({ name, path, error }: InvalidMachine): StatusEntry {
  const where = error instanceof InvalidConfigError && error.line !== undefined ? `line ${error.line}: ` : "";
  const reason = error instanceof InvalidConfigError ? `${where}${error.reason}` : error.message;
  const spelled = { path: escapeText(path), error: escapeText(error.message), reason: escapeText(reason) };
  return { name: escapeText(name), status: "Invalid", ...NOTHING_LOADED, ...spelled };
}

/** The row of an entry that is no machine. */
function noConfigRow({ name, path, reason }: NotAMachine): StatusEntry {
  const spelled = { path: escapeText(path), error: `${escapeText(path)}: ${escapeText(reason)}` };
  return { name: escapeText(name), status: "NoConfig", ...NOTHING_LOADED, ...spelled };
}

/** The row of a valid machine, with its liveness probed. */
async function machineRow(
  config: ControllerConfig,
  store: MachineStore,
  liveness: LivenessOptions,
  { machine, path }: LoadedMachine,
): Promise<StatusEntry> {
  // A pid file that cannot be read leaves liveness unknown: shown as "-", never as NeedsRecovery.
  let alive: boolean | null = null;
  let error: string | null = null;
  if (config.liveness === "daemon" && machine.state !== "running") {
    alive = false; // the daemon runs only the machines it persisted as running
  } else {
    try {
      ({ alive } = await probeLiveness(store.machineDir(machine.name), liveness));
    } catch (probeError) {
      error = escapeText((probeError as Error).message);
    }
  }
  return {
    name: escapeText(machine.name),
    status: machine.state === "running" && alive === false ? "NeedsRecovery" : "Healthy",
    state: machine.state,
    alive,
    ip_address: machine.ip_address === undefined ? null : escapeText(machine.ip_address),
    cpus: machine.cpus,
    memory_mb: machine.memory_mb,
    created_at: machine.created_at,
    path: escapeText(path),
    error,
  };
}

/** Runs `get`; returns the exit code (0, or 2 when the machines directory cannot be read). */
export async function runGet(config: ControllerConfig, output: "table" | "json"): Promise<number> {
  let rows: StatusEntry[];
  try {
    rows = await collectStatus(config);
  } catch (error) {
    process.stderr.write(listingFailure(config.machinesDir, error));
    return 2;
  }
  const note = rows.length === 0 ? await missingDirectoryNote(config.machinesDir) : null;
  if (note !== null) process.stderr.write(note);
  const hooks = await hooksNote(config);
  if (hooks !== null) process.stderr.write(hooks);
  const json = rows.map(({ reason: _reason, ...row }): MachineStatusRow => row);
  process.stdout.write(output === "json" ? `${toJsonWithBigInts(json, 2)}\n` : renderTable(rows, Date.now()));
  return 0;
}

/** The aligned table of `get`: `NAME STATE ALIVE IP CPUS MEMORY AGE STATUS`, of rows as collectStatus spells them. */
export function renderTable(rows: StatusEntry[], now: number): string {
  const header = ["NAME", "STATE", "ALIVE", "IP", "CPUS", "MEMORY", "AGE", "STATUS"];
  const cells = rows.map((row) => [
    row.name,
    row.state ?? "-",
    row.alive === null ? "-" : row.alive ? "yes" : "no",
    row.ip_address ?? "-",
    row.cpus === null ? "-" : String(row.cpus),
    row.memory_mb === null ? "-" : formatMemory(row.memory_mb),
    row.created_at === null ? "-" : formatAge(now - (parseCreatedAt(row.created_at)?.epochMs ?? NaN)),
    row.status === "Invalid" ? `Invalid: ${row.reason ?? row.error ?? ""}` : row.status,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((line) => line[column]!.length)));
  const format = (line: string[]) =>
    line
      .map((cell, column) => (column === line.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join("   ")
      .trimEnd();
  return [header, ...cells].map(format).join("\n") + "\n";
}

/** `8192` → `8Gi`, `1536` → `1536Mi` (kubectl's style). */
export function formatMemory(mb: bigint): string {
  return mb >= 1024n && mb % 1024n === 0n ? `${mb / 1024n}Gi` : `${mb}Mi`;
}

/** kubectl-style age: `45s`, `12m`, `5h`, `3d`, `2y`. */
export function formatAge(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  return d < 730 ? `${d}d` : `${Math.floor(d / 365)}y`;
}
