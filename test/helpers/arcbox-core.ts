/**
 * arcbox-core's own loader (`../shared/arcbox-core-loader`, MachinePersistence as a CLI) as the judge
 * of what arcbox-core accepts. CI builds it and sets ARCBOX_CORE_LOADER (and
 * ARCBOX_REQUIRE_CORE_LOADER=1, which makes its absence a failure); locally
 * `scripts/build-arcbox-core-loader.sh` builds it once into a cache that is found here by itself.
 * The loader runs one process per check, so checks are batched: one shell runs many of them.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { itWithPrerequisite } from "./tools.js";
import type { Machine } from "../../src/store/index.js";
import { parseCreatedAt } from "../../src/store/created-at.js";

export const CORE_LOADER_ENV = "ARCBOX_CORE_LOADER";
export const REQUIRE_CORE_LOADER_ENV = "ARCBOX_REQUIRE_CORE_LOADER";

/** The loader's path: $ARCBOX_CORE_LOADER, else the build script's default cache; undefined when neither exists. */
export function coreLoaderPath(): string | undefined {
  const cache = process.env.ARCBOX_CORE_LOADER_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "arcbox-controller");
  const candidates = [process.env[CORE_LOADER_ENV], join(cache, "arcbox-core-loader", "arcbox-core-loader")];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      if (candidate === process.env[CORE_LOADER_ENV]) throw new Error(`${CORE_LOADER_ENV}=${candidate} is not an executable file`);
    }
  }
  return undefined;
}

/**
 * Registers test `name` whose body gets the loader's path. Without the loader it fails when
 * ARCBOX_REQUIRE_CORE_LOADER=1, and is reported as skipped (with the reason) otherwise.
 */
export function itWithCoreLoader(name: string, body: (loader: string) => Promise<void>, timeout?: number): void {
  itWithPrerequisite(
    name,
    { find: coreLoaderPath, missing: "arcbox-core's loader is not built (scripts/build-arcbox-core-loader.sh builds it)", requireEnv: REQUIRE_CORE_LOADER_ENV },
    body,
    timeout,
  );
}

/** What `arcbox-core-loader check` said about one machine. */
export interface CoreVerdict {
  /** The loader loaded it (exit 0). */
  ok: boolean;
  /** Exit code (1: refused; anything else: the loader failed otherwise, e.g. a panic). */
  code: number;
  /** Its whole output: the fields line, or `ERROR <reason>`. */
  output: string;
}

const SEPARATOR = "\u001e";

/** Runs the loader's `check` for every name (machines under `dir`), in two shells at once; results in order. */
export async function coreCheckAll(loader: string, dir: string, names: string[]): Promise<CoreVerdict[]> {
  const half = Math.ceil(names.length / 2);
  const shards = await Promise.all([names.slice(0, half), names.slice(half)].map((shard) => checkShard(loader, dir, shard)));
  return shards.flat();
}

function checkShard(loader: string, dir: string, names: string[]): Promise<CoreVerdict[]> {
  if (names.length === 0) return Promise.resolve([]);
  const script = `L=$1; D=$2; shift 2; for n; do "$L" check "$D" "$n" 2>&1; printf '${SEPARATOR}%d\\n' $?; done`;
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", script, "sh", loader, dir, ...names], { stdio: ["ignore", "pipe", "inherit"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`loader batch shell exited ${code}`));
      const parts = Buffer.concat(chunks).toString("utf8").split(SEPARATOR);
      const verdicts: CoreVerdict[] = [];
      let output = parts[0] ?? "";
      for (const part of parts.slice(1)) {
        const newline = part.indexOf("\n");
        const exit = Number(part.slice(0, newline));
        verdicts.push({ ok: exit === 0, code: exit, output });
        output = part.slice(newline + 1);
      }
      if (verdicts.length !== names.length) return reject(new Error(`loader batch: ${verdicts.length} results for ${names.length} machines`));
      resolve(verdicts);
    });
  });
}

/** Runs one loader command (`write`, `states`, ...) and resolves with its output; rejects on a non-zero exit. */
export function coreRun(loader: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(loader, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${loader} ${args.join(" ")}: exit ${code}: ${out}`))));
  });
}

// What Rust's Debug escapes as \u{..}: controls, format characters, separators (but the space), unassigned.
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Zs}\p{Cn}\p{Co}\p{Cs}]/u;

/** Rust's `{:?}` of a string (what the loader prints for `Option<String>` fields). */
export function rustDebugString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const cp = ch.codePointAt(0) as number;
    if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\\") out += "\\\\";
    else if (ch === '"') out += '\\"';
    else if (ch === "\0") out += "\\0";
    else if (ch !== " " && NOT_PRINTABLE.test(ch)) out += `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

const debugOption = (value: string | undefined) => (value === undefined ? "None" : `Some(${rustDebugString(value)})`);

/**
 * The line the loader's `check` prints for `machine`: equal lines mean equal fields. Without
 * `created_at` in the file both sides use "now", so that field is left out (see `withoutCreatedAt`).
 */
export function coreLine(machine: Machine): string {
  const state = machine.state.charAt(0).toUpperCase() + machine.state.slice(1);
  const devices = machine.block_devices.map((d) => `${d.path}:${d.read_only}`).join(",");
  const createdAt = parseCreatedAt(machine.created_at)?.rfc3339 ?? `unreadable(${machine.created_at})`;
  return (
    `name=${machine.name} state=${state} cpus=${machine.cpus} memory_mb=${machine.memory_mb} disk_gb=${machine.disk_gb} ` +
    `ip=${debugOption(machine.ip_address)} block_devices=${devices} kernel=${debugOption(machine.kernel)} ` +
    `cmdline=${debugOption(machine.cmdline)} distro=${debugOption(machine.distro)} distro_version=${debugOption(machine.distro_version)} ` +
    `disk_path=${debugOption(machine.disk_path)} ssh_key_path=${debugOption(machine.ssh_key_path)} vm_id=${machine.vm_id} created_at=${createdAt}\n`
  );
}

/** A `check` line without its `created_at` field (for files that have none: each side says "now"). */
export function withoutCreatedAt(line: string): string {
  return line.replace(/ created_at=[^\n]*\n$/, "\n");
}
