/**
 * MachineStore: the port of arcbox-core's `MachinePersistence` — one `config.toml` per machine
 * directory under `dir`, with validated reads, durable minimal writes and optimistic concurrency.
 */
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import PQueue from "p-queue";
import {
  ConflictError,
  InvalidConfigError,
  InvalidNameError,
  MachineNotFoundError,
  StoreError,
  StoreIoError,
  controllerRule,
  errnoCode,
} from "./errors.js";
import { toPersistedState, type Machine, type MachineState } from "./machine.js";
import { machineNameProblem, validateMachineName } from "./names.js";
import { orderMachineKeys } from "./schema.js";
import { decodeUtf8, readConfigBytes, revisionOf, type ConfigSnapshot, type Revision } from "./config-file.js";
import { isTempFileName, writeFileDurably, type DurableFsOps } from "./durable-write.js";
import { CONFIG_FILE_NAME, isEntryName, isMachineEntry, listDirectoryEntries, listMachineEntryNames } from "./machine-entries.js";
import { editInPlace, parseMachineConfig, serializeMachine, type MinimalChange, type ParsedMachineConfig } from "./toml-codec.js";

export { CONFIG_FILE_NAME };

/** A machine as read from disk, with the revision of the exact bytes it came from. */
export interface LoadedMachine {
  machine: Machine;
  revision: Revision;
  /** Path of its config.toml. */
  path: string;
  /** Keys arcbox-core does not know (kept on every rewrite): `foo`, `block_devices[0].bar`. */
  unknownKeys: string[];
  /** When the file was last modified (ms since the epoch); for a file this store just wrote, the write's time. */
  mtimeMs: number;
}

/** A machine (an entry arcbox-core's `list()` loads) that is not valid, and why. */
export interface InvalidMachine {
  name: string;
  path: string;
  error: StoreError;
}

/** An entry of the machines directory that is not a machine (e.g. a directory without config.toml), and why. */
export interface NotAMachine {
  name: string;
  path: string;
  reason: string;
}

export interface MachineStoreOptions {
  /** The machines directory (`<machines-dir>`). */
  dir: string;
  /** Low-level file operations of the durable writer (fault-injection tests only). */
  fs?: DurableFsOps;
  /** How many machines `loadAll` reads at once. */
  loadConcurrency?: number;
}

export interface UpdateOptions {
  /** Write only if the file still has this revision (from an earlier `load`); else ConflictError. */
  ifRevision?: Revision;
}

interface ReadResult extends ParsedMachineConfig {
  snapshot: ConfigSnapshot;
}

/** Reads and writes machine configs under one machines directory. Every name is validated first. */
export class MachineStore {
  readonly dir: string;
  private readonly fsOps: DurableFsOps | undefined;
  private readonly loadConcurrency: number;
  /** Writes to one file from this process queue up, so the conflict check and rename are not interleaved. */
  private readonly writeLocks = new Map<string, Promise<unknown>>();

  constructor(options: MachineStoreOptions) {
    this.dir = options.dir;
    this.fsOps = options.fs;
    this.loadConcurrency = Math.max(1, options.loadConcurrency ?? 16);
  }

  /** `<dir>/<name>`. Throws InvalidNameError for a name that is not a valid machine name. */
  machineDir(name: string): string {
    validateMachineName(name, join(this.dir, String(name)));
    return join(this.dir, name);
  }

  /** `<dir>/<name>/config.toml`. Throws InvalidNameError for a name that is not a valid machine name. */
  configPath(name: string): string {
    return join(this.machineDir(name), CONFIG_FILE_NAME);
  }

  /**
   * Reads and validates one machine. Throws MachineNotFoundError (no directory or no config.toml:
   * also for a name that breaks the name rule, when that entry is no machine arcbox-core would list),
   * InvalidNameError, InvalidConfigError (symlinked directory, bad file: see readMachineConfig),
   * StoreIoError.
   */
  async load(name: string): Promise<LoadedMachine> {
    // A single path component inside the machines directory may be looked at to tell the two apart.
    if (machineNameProblem(name) !== undefined && isEntryName(name) && !(await isMachineEntry(this.dir, name))) {
      throw new MachineNotFoundError(name, join(this.dir, name));
    }
    const read = await this.read(name);
    return this.loaded(read);
  }

  /**
   * Sorted names of the machines, as arcbox-core's `list()` returns them: every directory holding a
   * config.toml, names that break the controller's name rule included (they load as invalid).
   */
  async list(): Promise<string[]> {
    return listMachineEntryNames(this.dir);
  }

  /**
   * Reads every entry of the machines directory (but the controller's lock file): each machine
   * arcbox-core's `list()` would load is valid or an InvalidMachine with its error (name rule,
   * symlinked directory, bad file); every other entry is a NotAMachine (no config.toml, not a
   * directory). An entry removed while it is read is left out. Throws only when the machines
   * directory itself cannot be read.
   */
  async loadAll(): Promise<{ machines: LoadedMachine[]; invalid: InvalidMachine[]; notMachines: NotAMachine[] }> {
    const entries = await listDirectoryEntries(this.dir);
    const machines: LoadedMachine[] = [];
    const invalid: InvalidMachine[] = [];
    const notMachines: NotAMachine[] = [];
    const pool = new PQueue({ concurrency: this.loadConcurrency });
    await pool.addAll(
      entries.map((entry) => async () => {
        const path = join(this.dir, entry.name);
        if (entry.kind === "noConfig") {
          notMachines.push({ name: entry.name, path, reason: entry.reason });
          return;
        }
        const outcome = await this.loadEntry(entry.name, entry.symlink);
        if (outcome === undefined) return;
        if (outcome instanceof StoreError) invalid.push({ name: entry.name, path, error: outcome });
        else machines.push(outcome);
      }),
    );
    const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    machines.sort((a, b) => byName(a.machine, b.machine));
    invalid.sort(byName);
    notMachines.sort(byName);
    return { machines, invalid, notMachines };
  }

  private async loadEntry(name: string, isSymlink: boolean): Promise<LoadedMachine | StoreError | undefined> {
    const path = join(this.dir, name);
    const problem = machineNameProblem(name);
    if (problem !== undefined) return new InvalidNameError(name, problem, path);
    if (isSymlink) return symlinkedDirectory(path);
    try {
      return await this.load(name);
    } catch (error) {
      // Gone (or its config.toml gone) since the listing: no longer a machine.
      if (error instanceof MachineNotFoundError) return undefined;
      if (error instanceof StoreError) return error;
      throw error;
    }
  }

  /**
   * Writes the whole machine (creating its directory, mode 0700, when needed). Unknown keys of an
   * existing valid file are kept and so is its mode (0600 for a new file). Refuses, with that
   * file's InvalidConfigError, to replace an existing file that is invalid. Throws InvalidNameError,
   * InvalidConfigError (invalid machine, symlinked directory), ConflictError (the file changed while
   * saving), StoreIoError.
   */
  async save(machine: Machine): Promise<Revision> {
    const dir = this.machineDir(machine.name);
    const path = join(dir, CONFIG_FILE_NAME);
    await this.ensureMachineDir(dir);
    let existing: ReadResult | undefined;
    try {
      existing = await this.read(machine.name);
    } catch (error) {
      if (!(error instanceof MachineNotFoundError)) throw error;
    }
    const text = serializeMachine(orderMachineKeys(machine), path, existing?.document);
    const bytes = Buffer.from(text, "utf8");
    if (existing && existing.snapshot.bytes.equals(bytes)) return existing.snapshot.revision;
    await this.writeChecked(path, bytes, existing?.snapshot);
    return revisionOf(bytes);
  }

  /** Removes the machine directory and everything in it (symlinks are removed, never followed). A missing machine is not an error. */
  async remove(name: string): Promise<void> {
    const dir = this.machineDir(name);
    try {
      await fsp.rm(dir, { recursive: true, force: true });
    } catch (error) {
      throw new StoreIoError(dir, "remove", error);
    }
  }

  /**
   * One read-modify-write. `mutate` gets a copy of the machine and changes it (or returns a new
   * one); when nothing changed nothing is written. Only `state`/`ip_address` changed → those bytes
   * are edited in place; otherwise the file is re-serialised with its unknown keys. The bytes on
   * disk are compared with those read right before the rename, so a write by someone else is never
   * overwritten; a write landing in the microseconds between that check and the rename can still
   * be lost (POSIX has no compare-and-rename). Throws ConflictError (file changed, or not at
   * `ifRevision`), MachineNotFoundError, InvalidConfigError (file or result invalid), StoreIoError.
   */
  async update(
    name: string,
    mutate: (machine: Machine) => Machine | void,
    options: UpdateOptions = {},
  ): Promise<LoadedMachine> {
    const current = await this.read(name);
    const path = current.snapshot.path;
    if (options.ifRevision !== undefined && options.ifRevision !== current.snapshot.revision) {
      throw new ConflictError(path, "its revision differs from the one the update was based on");
    }
    const draft = structuredClone(current.machine);
    const next = orderMachineKeys(mutate(draft) ?? draft);
    if (next.name !== name) {
      throw new InvalidConfigError(path, { key: "name", reason: `update cannot rename machine "${name}" to ${JSON.stringify(next.name)}` });
    }
    const changed = changedKeys(current.machine, next);
    if (changed.length === 0) return this.loaded(current);
    const text = this.render(current, next, changed);
    const bytes = Buffer.from(text, "utf8");
    await this.writeChecked(path, bytes, current.snapshot);
    const written = parseMachineConfig(text, path, name);
    return { machine: written.machine, revision: revisionOf(bytes), path, unknownKeys: written.unknownKeys, mtimeMs: Date.now() };
  }

  /** Sets the persisted state (`starting` → `running`, `stopping` → `stopped`); see `update` for errors. */
  updateState(name: string, state: MachineState, options?: UpdateOptions): Promise<LoadedMachine> {
    const persisted = toPersistedState(state);
    return this.update(name, (m) => {
      m.state = persisted;
    }, options);
  }

  /** Sets `ip_address`, or removes it with `null`; see `update` for errors. */
  updateIp(name: string, ip: string | null, options?: UpdateOptions): Promise<LoadedMachine> {
    return this.update(name, (m) => {
      if (ip === null) delete m.ip_address;
      else m.ip_address = ip;
    }, options);
  }

  /**
   * Removes this store's leftover temp files (`.config.toml.arcbox-tmp-*`, from a crash mid-write)
   * from every machine directory; nothing else is touched. Returns the removed paths.
   */
  async sweepTempFiles(): Promise<string[]> {
    const removed: string[] = [];
    for (const entry of await this.readMachinesDir()) {
      if (!entry.isDirectory() || machineNameProblem(entry.name) !== undefined) continue;
      const dir = join(this.dir, entry.name);
      let names: import("node:fs").Dirent[];
      try {
        names = await fsp.readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (errnoCode(error) === "ENOENT") continue;
        throw new StoreIoError(dir, "read directory", error);
      }
      for (const file of names) {
        if (!file.isFile() || !isTempFileName(file.name)) continue;
        const path = join(dir, file.name);
        try {
          await fsp.unlink(path);
          removed.push(path);
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw new StoreIoError(path, "remove temp file", error);
        }
      }
    }
    return removed.sort();
  }

  private render(current: ReadResult, next: Machine, changed: string[]): string {
    const { snapshot, document } = current;
    if (changed.every((k) => k === "state" || k === "ip_address")) {
      const change: MinimalChange = {};
      if (changed.includes("state")) change.state = next.state;
      if (changed.includes("ip_address")) change.ip_address = next.ip_address ?? null;
      const edited = editInPlace(snapshot.text, current, change, snapshot.path, next.name);
      if (edited !== undefined) return edited;
    }
    return serializeMachine(next, snapshot.path, document);
  }

  private async read(name: string): Promise<ReadResult> {
    const dir = this.machineDir(name);
    const path = join(dir, CONFIG_FILE_NAME);
    let stat;
    try {
      stat = await fsp.lstat(dir);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") throw new MachineNotFoundError(name, dir);
      throw new StoreIoError(dir, "stat", error);
    }
    if (stat.isSymbolicLink()) throw symlinkedDirectory(dir);
    if (!stat.isDirectory()) throw new InvalidConfigError(dir, { reason: "is not a directory (machine entries are directories holding config.toml)" });
    let raw;
    try {
      raw = await readConfigBytes(path);
    } catch (error) {
      if (error instanceof StoreIoError && error.code === "ENOENT") throw new MachineNotFoundError(name, path);
      throw error;
    }
    const text = decodeUtf8(raw.bytes, path);
    const parsed = parseMachineConfig(text, path, name);
    return { snapshot: { ...raw, text }, ...parsed };
  }

  private loaded(read: ReadResult): LoadedMachine {
    return {
      machine: read.machine,
      revision: read.snapshot.revision,
      path: read.snapshot.path,
      unknownKeys: read.unknownKeys,
      mtimeMs: read.snapshot.mtimeMs,
    };
  }

  /**
   * Durable write of `bytes` over `path` unless the file no longer holds what `basis` read (or,
   * without a basis, exists by now). Keeps the basis's mode and owner; a new file gets 0600.
   */
  private async writeChecked(path: string, bytes: Uint8Array, basis: ConfigSnapshot | undefined): Promise<void> {
    const previous = this.writeLocks.get(path) ?? Promise.resolve();
    const write = previous.then(() =>
      writeFileDurably(path, bytes, {
        mode: basis?.mode ?? 0o600,
        owner: basis && { uid: basis.uid, gid: basis.gid },
        fs: this.fsOps,
        beforeRename: () => this.assertUnchanged(path, basis?.revision),
      }),
    );
    const settled = write.catch(() => undefined);
    this.writeLocks.set(path, settled);
    try {
      await write;
    } finally {
      if (this.writeLocks.get(path) === settled) this.writeLocks.delete(path);
    }
  }

  /** The conflict check: the file must still hold the bytes we read (or still be absent). */
  private async assertUnchanged(path: string, expected: Revision | undefined): Promise<void> {
    let actual: Revision | undefined;
    try {
      actual = (await readConfigBytes(path)).revision;
    } catch (error) {
      if (!(error instanceof StoreIoError && error.code === "ENOENT")) {
        if (error instanceof StoreError) throw new ConflictError(path, `it is no longer readable: ${error.message}`);
        throw error;
      }
    }
    if (actual === expected) return;
    throw new ConflictError(path, expected === undefined ? "it was created meanwhile" : actual === undefined ? "it was removed meanwhile" : "its content changed since it was read");
  }

  private async ensureMachineDir(dir: string): Promise<void> {
    try {
      await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await fsp.mkdir(dir, { mode: 0o700 });
      return;
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw new StoreIoError(dir, "create directory", error);
    }
    const stat = await fsp.lstat(dir);
    if (stat.isSymbolicLink()) throw symlinkedDirectory(dir);
    if (!stat.isDirectory()) throw new InvalidConfigError(dir, { reason: "is not a directory (machine entries are directories holding config.toml)" });
  }

  private async readMachinesDir(): Promise<import("node:fs").Dirent[]> {
    try {
      return await fsp.readdir(this.dir, { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return [];
      throw new StoreIoError(this.dir, "read directory", error);
    }
  }
}

function symlinkedDirectory(path: string): InvalidConfigError {
  return new InvalidConfigError(path, {
    reason: controllerRule("machine directory is a symbolic link; the store never follows links (replace it with a real directory)"),
  });
}

/** Keys whose values differ between two machines (absent and `undefined` are the same). */
function changedKeys(before: Machine, after: Machine): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter(
    (k) => !isDeepStrictEqual((before as unknown as Record<string, unknown>)[k], (after as unknown as Record<string, unknown>)[k]),
  );
}
