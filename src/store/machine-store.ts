/**
 * MachineStore: the port of arcbox-core's `MachinePersistence` — one `config.toml` per machine
 * directory under `dir`, with validated reads, durable minimal writes and optimistic concurrency.
 */
import { constants, promises as fsp, type Dirent } from "node:fs";
import { basename, join } from "node:path";
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
import { decodeUtf8, MAX_CONFIG_BYTES, readConfigAt, revisionOf, type ConfigSnapshot, type Revision } from "./config-file.js";
import { defaultFsOps, type DurableFsOps } from "./dir-ops.js";
import { guardedFsOps } from "./guarded-ops.js";
import { OverdueCalls } from "../platform/deadline.js";
import { isOwnTempFileName, isTempFileName, writeFileDurably, type OpenDirectory, type WritePrecondition } from "./durable-write.js";
import {
  CONFIG_FILE_NAME,
  compareEntryNames,
  entryPath,
  isEntryName,
  isMachineEntry,
  listDirectoryEntries,
  listMachineEntryNames,
} from "./machine-entries.js";
import {
  checkMachine,
  editInPlace,
  parseMachineConfig,
  serializeMachine,
  type CheckedText,
  type MinimalChange,
  type ParsedMachineConfig,
} from "./toml-codec.js";

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

/**
 * An entry of the machines directory that is not a machine (e.g. a directory without config.toml), and
 * why. A name that is not UTF-8 is kept as its bytes, and so is its path.
 */
export interface NotAMachine {
  name: string | Buffer;
  path: string | Buffer;
  reason: string;
}

export interface MachineStoreOptions {
  /** The machines directory (`<machines-dir>`). */
  dir: string;
  /**
   * The file operations (default: those of this system, see dir-ops.ts). Tests pass others to inject
   * faults or to choose how names inside an opened directory are reached.
   */
  fs?: DurableFsOps;
  /** How many machines `loadAll` reads at once. */
  loadConcurrency?: number;
  /**
   * Keep the parse of what the store writes, so that reading those bytes back (a watcher reporting
   * the store's own rename) skips parsing them (default true). A store that reads each file once,
   * as a one-shot pass does, has no use for it.
   */
  rememberWrites?: boolean;
  /**
   * Deadlines of the file system calls, keyed by machine directory (docs/design.md#hung-mounts):
   * a call on a directory that does not answer in time fails with a StoreIoError of code
   * `ETIMEDOUT`. Default: a new OverdueCalls with the default deadline. Share one to learn which
   * directories are overdue.
   */
  calls?: OverdueCalls;
}

export interface UpdateOptions {
  /** Write only if the file still has this revision (from an earlier `load`); else ConflictError. */
  ifRevision?: Revision;
  /**
   * Base the update on this earlier `load` of the same machine by this store, instead of reading
   * the file again: one read per read-modify-write. The write is refused with ConflictError when the
   * file is no longer exactly the one that load read (see `update`).
   */
  basis?: LoadedMachine;
}

interface ReadResult extends ParsedMachineConfig {
  snapshot: ConfigSnapshot;
}

/** One machine's directory, open for reads and writes (see `MachineStore.withMachine`). */
export interface MachineHandle {
  readonly name: string;
  /** As `MachineStore.load`. */
  load(): Promise<LoadedMachine>;
  /** As `MachineStore.update`. */
  update(mutate: (machine: Machine) => Machine | void, options?: UpdateOptions): Promise<LoadedMachine>;
  /** As `MachineStore.updateState`. */
  updateState(state: MachineState, options?: UpdateOptions): Promise<LoadedMachine>;
}

/** Reads and writes machine configs under one machines directory. Every name is validated first. */
export class MachineStore {
  readonly dir: string;
  /** What each LoadedMachine handed out was read from, for `update`'s `basis`. */
  private readonly reads = new WeakMap<LoadedMachine, ReadResult>();
  /**
   * The parse of what this store last wrote for each machine: the reads that follow a write (a
   * watcher reporting each step of the store's own rename) then skip parsing bytes it made itself.
   * Keyed by name, matched by revision (so any other content is parsed), at most WRITTEN_CACHE_SIZE
   * entries. Never handed out itself: each read gets an object of its own on top of it.
   */
  private readonly written = new Map<string, { revision: Revision; parsed: ParsedMachineConfig }>();
  private readonly givenFsOps: DurableFsOps | undefined;
  private resolvedFsOps: DurableFsOps | undefined;
  private readonly loadConcurrency: number;
  private readonly rememberWrites: boolean;
  /** Deadlines of every file system call, by machine directory (and the machines directory itself). */
  readonly calls: OverdueCalls;
  /** Writes to one file from this process queue up, so the conflict check and rename are not interleaved. */
  private readonly writeLocks = new Map<string, Promise<unknown>>();

  constructor(options: MachineStoreOptions) {
    this.dir = options.dir;
    this.givenFsOps = options.fs;
    this.loadConcurrency = Math.max(1, options.loadConcurrency ?? 16);
    this.rememberWrites = options.rememberWrites ?? true;
    this.calls = options.calls ?? new OverdueCalls();
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
   * Reads and validates one machine, through its directory opened as a descriptor. Throws
   * MachineNotFoundError (no directory or no config.toml; also for a name that breaks the name rule
   * once no entry of that name exists), InvalidNameError, InvalidConfigError (symlinked directory, a
   * directory that cannot be read, bad file: see readMachineConfig), StoreIoError.
   */
  async load(name: string): Promise<LoadedMachine> {
    return this.withMachine(name, (machine) => machine.load());
  }

  /**
   * Opens the directory of machine `name` once (never through a symlink) and runs `use` with a handle
   * whose reads and writes all go through that one descriptor, which is closed when `use` settles: a
   * read-modify-write spread over time (the reconciler's, with hooks in between) opens the directory
   * once and reads the file once. Throws as `load` when the directory cannot be opened, and whatever
   * `use` throws.
   */
  async withMachine<T>(name: string, use: (machine: MachineHandle) => Promise<T>): Promise<T> {
    // A single path component inside the machines directory may be looked at to tell the two apart.
    if (machineNameProblem(name) !== undefined && isEntryName(name) && !(await isMachineEntry(this.dir, name))) {
      throw new MachineNotFoundError(name, join(this.dir, name));
    }
    return this.withMachineDir(name, (dir) =>
      use({
        name,
        load: async () => this.loaded(await this.readIn(dir, name)),
        update: (mutate, options = {}) => this.updateIn(dir, name, mutate, options),
        updateState: (state, options) => this.updateIn(dir, name, stateSetter(state), options ?? {}),
      }),
    );
  }

  /**
   * Sorted names of the machines, as arcbox-core's `list()` returns them: every directory holding a
   * config.toml, names that break the controller's name rule included (they load as invalid).
   */
  async list(): Promise<string[]> {
    return listMachineEntryNames(this.dir, { calls: this.calls });
  }

  /**
   * Reads every entry of the machines directory (but the controller's lock file): each machine
   * arcbox-core's `list()` would load is valid or an InvalidMachine with its error (name rule,
   * symlinked directory, bad file); every other entry is a NotAMachine (no config.toml, not a
   * directory, a name that is not UTF-8). An entry removed while it is read is left out. Throws only
   * when the machines directory itself cannot be read.
   */
  async loadAll(): Promise<{ machines: LoadedMachine[]; invalid: InvalidMachine[]; notMachines: NotAMachine[] }> {
    const entries = await listDirectoryEntries(this.dir, { calls: this.calls });
    const machines: LoadedMachine[] = [];
    const invalid: InvalidMachine[] = [];
    const notMachines: NotAMachine[] = [];
    const pool = new PQueue({ concurrency: this.loadConcurrency });
    await pool.addAll(
      entries.map((entry) => async () => {
        if (entry.kind === "noConfig") {
          notMachines.push({ name: entry.name, path: entryPath(this.dir, entry.name), reason: entry.reason });
          return;
        }
        const outcome = await this.loadEntry(entry.name, entry.symlink);
        if (outcome === undefined) return;
        if (outcome instanceof StoreError) invalid.push({ name: entry.name, path: join(this.dir, entry.name), error: outcome });
        else machines.push(outcome);
      }),
    );
    const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    machines.sort((a, b) => byName(a.machine, b.machine));
    invalid.sort(byName);
    notMachines.sort((a, b) => compareEntryNames(a.name, b.name));
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
    const path = this.machineDir(machine.name);
    await this.ensureMachineDir(path);
    return this.withMachineDir(machine.name, async (dir) => {
      let existing: ReadResult | undefined;
      try {
        existing = await this.readIn(dir, machine.name);
      } catch (error) {
        if (!(error instanceof MachineNotFoundError)) throw error;
      }
      const { text } = serializeMachine(orderMachineKeys(machine), join(path, CONFIG_FILE_NAME), existing?.document);
      const bytes = Buffer.from(text, "utf8");
      if (existing && existing.snapshot.bytes.equals(bytes)) return existing.snapshot.revision;
      await this.writeChecked(dir, bytes, existing?.snapshot);
      return revisionOf(bytes);
    });
  }

  /**
   * Removes the machine directory and everything in it, working through directory descriptors so
   * that nothing outside it is touched even if a path in it is swapped meanwhile (symlinks are
   * removed, never followed). A missing machine is not an error. Throws InvalidNameError, StoreIoError.
   */
  async remove(name: string): Promise<void> {
    const path = this.machineDir(name);
    let fd: number;
    try {
      fd = await this.fsOps.openDirectory(path);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") return;
      // A symlink or a file in the machine's place: remove that entry itself.
      if (code === "ENOTDIR" || code === "ELOOP") return removeEntry(() => fsp.unlink(path), path);
      throw new StoreIoError(path, "open directory", error);
    }
    try {
      await this.removeContents({ fd, path });
    } finally {
      await this.fsOps.close(fd).catch(() => undefined);
    }
    await removeEntry(() => fsp.rmdir(path), path);
  }

  /**
   * One read-modify-write. `mutate` gets a copy of the machine and changes it (or returns a new
   * one); when nothing changed nothing is written. Only `state`/`ip_address` changed → those bytes
   * are edited in place, or nothing is written (StoreError) when that cannot be done; otherwise the
   * file is re-serialised with its unknown keys. A result over 1 MiB is never written. A write by
   * someone else since the read is never overwritten, not even one landing during the commit (see
   * durable-write.ts; on a file system that cannot swap two names, one landing in the microseconds
   * before the rename can be). Throws ConflictError (file changed, or not at
   * `ifRevision`), MachineNotFoundError, InvalidConfigError (file or result invalid), StoreIoError.
   */
  async update(
    name: string,
    mutate: (machine: Machine) => Machine | void,
    options: UpdateOptions = {},
  ): Promise<LoadedMachine> {
    return this.withMachineDir(name, (dir) => this.updateIn(dir, name, mutate, options));
  }

  /** `update` in the opened machine directory. */
  private async updateIn(
    dir: OpenDirectory,
    name: string,
    mutate: (machine: Machine) => Machine | void,
    options: UpdateOptions,
  ): Promise<LoadedMachine> {
    const basis = options.basis && this.reads.get(options.basis);
    const current = basis?.machine.name === name ? basis : await this.readIn(dir, name);
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
    const { text, parsed } = this.render(current, next, changed);
    const bytes = Buffer.from(text, "utf8");
    await this.stillAtItsPath(dir, name, path);
    await this.writeChecked(dir, bytes, current.snapshot);
    const revision = revisionOf(bytes);
    this.remember(name, revision, parsed);
    return { machine: parsed.machine, revision, path, unknownKeys: parsed.unknownKeys, mtimeMs: Date.now() };
  }

  /**
   * Makes sure the directory open as `dir` is still the machine's: one moved away or removed since it
   * was opened (a hook that rebuilt the machine directory, a restore) would take a write that nobody
   * reads any more. Throws MachineNotFoundError when nothing is at its path now, ConflictError when
   * another directory is.
   */
  private async stillAtItsPath(dir: OpenDirectory, name: string, configPath: string): Promise<void> {
    const opened = await this.fsOps.fstat(dir.fd);
    const atPath = await this.calls.run(dir.path, `lstat of ${dir.path}`, () => fsp.lstat(dir.path, { bigint: true })).catch((error: unknown) => {
      if (errnoCode(error) === "ENOENT") throw new MachineNotFoundError(name, dir.path);
      throw new StoreIoError(dir.path, "lstat", error);
    });
    if (atPath.ino !== opened.ino || atPath.dev !== opened.dev) {
      throw new ConflictError(configPath, "its directory was replaced since it was read");
    }
  }

  /** Sets the persisted state (`starting` → `running`, `stopping` → `stopped`); see `update` for errors. */
  updateState(name: string, state: MachineState, options?: UpdateOptions): Promise<LoadedMachine> {
    return this.update(name, stateSetter(state), options);
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
   * from every machine directory; nothing else is touched. A machine directory that cannot be read,
   * or a temp file that cannot be removed, does not stop the sweep: it is passed to `onProblem` as a
   * StoreIoError naming it, and the sweep goes on. With `keepOwn`, the temp files of this process
   * (writes in flight) are kept. Returns the removed paths. Throws StoreIoError only when the machines
   * directory itself cannot be read.
   */
  async sweepTempFiles(options: { onProblem?: (problem: StoreIoError) => void; keepOwn?: boolean } = {}): Promise<string[]> {
    const ops = this.fsOps;
    const report = options.onProblem ?? (() => undefined);
    const removed: string[] = [];
    for (const entry of await this.readMachinesDir()) {
      if (!entry.isDirectory() || machineNameProblem(entry.name) !== undefined) continue;
      const path = join(this.dir, entry.name);
      // Listed by path first (one call): only a directory that holds a temp file is opened, and the
      // removal goes through its descriptor.
      // Gone, or replaced by a symlink or a file since it was listed: nothing of ours in there.
      const skip = (error: unknown) => {
        if (!["ENOENT", "ENOTDIR", "ELOOP"].includes(errnoCode(error) ?? "")) report(new StoreIoError(path, "open directory", error));
      };
      let names: string[];
      try {
        names = (await this.calls.run(path, `readdir of ${path}`, () => fsp.readdir(path))).filter(isTempFileName);
      } catch (error) {
        skip(error);
        continue;
      }
      if (names.length === 0) continue;
      let fd: number;
      try {
        fd = await ops.openDirectory(path);
      } catch (error) {
        skip(error);
        continue;
      }
      try {
        let files: Dirent[];
        try {
          files = await ops.readDir(fd, path);
        } catch (error) {
          report(new StoreIoError(path, "read directory", error));
          continue;
        }
        for (const file of files) {
          if (!file.isFile() || !isTempFileName(file.name) || (options.keepOwn && isOwnTempFileName(file.name))) continue;
          try {
            await ops.unlinkAt(fd, file.name);
            removed.push(join(path, file.name));
          } catch (error) {
            if (errnoCode(error) !== "ENOENT") report(new StoreIoError(join(path, file.name), "remove temp file", error));
          }
        }
      } finally {
        await ops.close(fd).catch(() => undefined);
      }
    }
    return removed.sort();
  }

  /**
   * The new text: a change of `state`/`ip_address` only is an edit in place or nothing (an
   * InvalidConfigError for an invalid value, else a StoreError); any other change re-serialises.
   */
  private render(current: ReadResult, next: Machine, changed: string[]): CheckedText {
    const { snapshot, document } = current;
    if (!changed.every((k) => k === "state" || k === "ip_address")) return serializeMachine(next, snapshot.path, document);
    const change: MinimalChange = {};
    if (changed.includes("state")) change.state = next.state;
    if (changed.includes("ip_address")) change.ip_address = next.ip_address ?? null;
    const edited = editInPlace(snapshot.text, current, change, snapshot.path, next.name);
    if (edited !== undefined) return edited;
    checkMachine(next, snapshot.path);
    throw new StoreError(
      `${snapshot.path}: cannot change ${changed.join(" and ")} of machine "${next.name}" by editing the file in place, ` +
        "and it is never rewritten whole for that; nothing was written",
      snapshot.path,
    );
  }

  /** The file operations: those given, else this system's (chosen on first use). */
  private get fsOps(): DurableFsOps {
    return (this.resolvedFsOps ??= guardedFsOps(this.givenFsOps ?? defaultFsOps(), this.calls));
  }

  /** Reads and validates `config.toml` in the opened machine directory. */
  private async readIn(dir: OpenDirectory, name: string): Promise<ReadResult> {
    const path = join(dir.path, CONFIG_FILE_NAME);
    let raw;
    try {
      raw = await readConfigAt(this.fsOps, dir.fd, CONFIG_FILE_NAME, path);
    } catch (error) {
      if (error instanceof StoreIoError && error.code === "ENOENT") throw new MachineNotFoundError(name, path);
      throw error;
    }
    const text = decodeUtf8(raw.bytes, path);
    const mine = this.written.get(name);
    // The very bytes this store wrote (and checked) need no second parse. The cached parse is the
    // prototype of what is returned, not a copy: a parse from a minimal edit makes its source map
    // only on demand, and each read's own `snapshot` stays off the shared object.
    let parsed: ParsedMachineConfig;
    if (mine?.revision === raw.revision) {
      parsed = ownCopy(mine.parsed);
    } else {
      if (mine !== undefined) this.written.delete(name);
      parsed = parseMachineConfig(text, path, name);
    }
    return Object.assign(parsed, { snapshot: { ...raw, text } });
  }

  private remember(name: string, revision: Revision, parsed: ParsedMachineConfig): void {
    if (!this.rememberWrites) return;
    // Shared by every read of these bytes (each gets its own machine): frozen, so that no reader
    // can change what another sees. The machine the write's caller got back is not the cache's.
    deepFreeze(parsed.document);
    this.written.delete(name);
    this.written.set(name, { revision, parsed: ownCopy(parsed) });
    if (this.written.size > WRITTEN_CACHE_SIZE) this.written.delete(this.written.keys().next().value as string);
  }

  /**
   * Opens the directory of machine `name` as a descriptor (never through a symlink), runs `use` with
   * it and closes it. Everything `use` does inside goes through the descriptor. Throws
   * MachineNotFoundError, InvalidNameError, InvalidConfigError (a symlink, not a directory, no
   * permission), StoreIoError.
   */
  private async withMachineDir<T>(name: string, use: (dir: OpenDirectory) => Promise<T>): Promise<T> {
    const path = await this.existingMachineDir(name);
    let fd: number;
    try {
      fd = await this.fsOps.openDirectory(path);
    } catch (error) {
      throw await machineDirError(name, path, error);
    }
    try {
      return await use({ fd, path });
    } finally {
      await this.fsOps.close(fd).catch(() => undefined);
    }
  }

  /**
   * `<dir>/<name>` for a valid name. An invalid name is InvalidNameError while an entry of that name
   * exists, and MachineNotFoundError once it is gone (so that whoever tracks it can forget it). Only
   * a name that can be an entry of the machines directory (no `/`, not `.` or `..`) is looked up.
   */
  private async existingMachineDir(name: string): Promise<string> {
    const problem = machineNameProblem(name);
    if (problem === undefined) return join(this.dir, name);
    const path = join(this.dir, String(name));
    const entryName = typeof name === "string" && name !== "" && name !== "." && name !== ".." && !/[/\0]/.test(name);
    if (entryName && (await fsp.lstat(path).then(() => false, (error: unknown) => errnoCode(error) === "ENOENT"))) {
      throw new MachineNotFoundError(name, path);
    }
    throw new InvalidNameError(String(name), problem, path);
  }

  /** Removes everything inside the opened directory, through descriptors only. */
  private async removeContents(dir: OpenDirectory): Promise<void> {
    const ops = this.fsOps;
    let entries: Dirent[];
    try {
      entries = await ops.readDir(dir.fd, dir.path);
    } catch (error) {
      throw new StoreIoError(dir.path, "read directory", error);
    }
    for (const entry of entries) {
      const path = join(dir.path, entry.name);
      const unlink = () => ops.unlinkAt(dir.fd, entry.name);
      if (!entry.isDirectory()) {
        const failure = await unlink().then(() => undefined, (error: unknown) => error);
        const code = errnoCode(failure);
        if (failure === undefined || code === "ENOENT") continue;
        // EISDIR (Linux) or EPERM (macOS): it became a directory since it was listed.
        if (code !== "EISDIR" && code !== "EPERM") throw new StoreIoError(path, "remove", failure);
      }
      let fd: number;
      try {
        fd = await ops.openAt(dir.fd, entry.name, SUBDIRECTORY_FLAGS);
      } catch (error) {
        const code = errnoCode(error);
        if (code === "ENOENT") continue;
        // It became a symlink or a file since it was listed.
        if (code === "ENOTDIR" || code === "ELOOP") {
          await removeEntry(unlink, path);
          continue;
        }
        throw new StoreIoError(path, "open directory", error);
      }
      try {
        await this.removeContents({ fd, path });
      } finally {
        await ops.close(fd).catch(() => undefined);
      }
      await removeEntry(() => ops.rmdirAt(dir.fd, entry.name), path);
    }
  }

  private loaded(read: ReadResult): LoadedMachine {
    const loaded: LoadedMachine = {
      machine: read.machine,
      revision: read.snapshot.revision,
      path: read.snapshot.path,
      unknownKeys: read.unknownKeys,
      mtimeMs: read.snapshot.mtimeMs,
    };
    this.reads.set(loaded, read);
    return loaded;
  }

  /**
   * Durable write of `bytes` as `config.toml` in the opened machine directory, unless the file no
   * longer is the one `basis` read (or, without a basis, exists by now): then ConflictError. Keeps
   * the basis's mode and owner; a new file gets 0600.
   */
  private async writeChecked(dir: OpenDirectory, bytes: Uint8Array, basis: ConfigSnapshot | undefined): Promise<void> {
    const path = join(dir.path, CONFIG_FILE_NAME);
    if (bytes.length > MAX_CONFIG_BYTES) {
      // The store's own reader would refuse it: such a write would turn a valid machine invalid.
      const limit = `config files are limited to 1 MiB (${MAX_CONFIG_BYTES} bytes)`;
      throw new InvalidConfigError(path, { reason: `refusing to write ${bytes.length} bytes: ${limit}; nothing was written` });
    }
    const precondition: WritePrecondition = basis ? { basis: { revision: basis.revision, identity: basis.identity } } : { absent: true };
    const previous = this.writeLocks.get(path) ?? Promise.resolve();
    const write = previous.then(() =>
      writeFileDurably(dir, CONFIG_FILE_NAME, bytes, {
        mode: basis?.mode ?? 0o600,
        owner: basis && { uid: basis.uid, gid: basis.gid },
        fs: this.fsOps,
        precondition,
      }),
    );
    const settled = write.catch(() => undefined);
    this.writeLocks.set(path, settled);
    try {
      await write;
    } catch (error) {
      // The directory was removed while it was open (its machine deleted): that is "not found".
      if (error instanceof StoreIoError && error.code === "ENOENT" && (await this.fsOps.fstat(dir.fd).catch(() => undefined))?.nlink === 0n) {
        throw new MachineNotFoundError(basename(dir.path), path);
      }
      throw error;
    } finally {
      if (this.writeLocks.get(path) === settled) this.writeLocks.delete(path);
    }
  }

  /** Creates the machines directory and the machine's directory (0700) unless they exist. */
  private async ensureMachineDir(dir: string): Promise<void> {
    try {
      await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await fsp.mkdir(dir, { mode: 0o700 });
    } catch (error) {
      // Whatever exists there is looked at when it is opened (a symlink or a file is refused then).
      if (errnoCode(error) !== "EEXIST") throw new StoreIoError(dir, "create directory", error);
    }
  }

  private async readMachinesDir(): Promise<Dirent[]> {
    try {
      return await this.calls.run(this.dir, `readdir of ${this.dir}`, () => fsp.readdir(this.dir, { withFileTypes: true }));
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

const SUBDIRECTORY_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * `parsed` with a machine and unknown keys of its own; the rest (the document, the source map that a
 * minimal edit's parse makes only on demand) is inherited, not copied.
 */
function ownCopy(parsed: ParsedMachineConfig): ParsedMachineConfig {
  return Object.assign(Object.create(parsed) as ParsedMachineConfig, {
    machine: structuredClone(parsed.machine),
    unknownKeys: [...parsed.unknownKeys],
  });
}

function deepFreeze(value: unknown): void {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const member of Object.values(value)) deepFreeze(member);
}

/** How many just-written parses the store keeps for the reads that usually follow (see `written`). */
const WRITTEN_CACHE_SIZE = 1024;

/** The store's error for a machine directory that could not be opened. */
async function machineDirError(name: string, path: string, error: unknown): Promise<StoreError> {
  const code = errnoCode(error);
  if (code === "ENOENT") return new MachineNotFoundError(name, path);
  if (code === "EACCES" || code === "EPERM") return new InvalidConfigError(path, { reason: `cannot be read: permission denied (${code})` });
  if (code === "ENOTDIR" || code === "ELOOP") {
    // O_NOFOLLOW | O_DIRECTORY refuses both a symlink and a file: tell which.
    const stat = await fsp.lstat(path).catch(() => undefined);
    if (stat === undefined) return new MachineNotFoundError(name, path);
    if (stat.isSymbolicLink()) return symlinkedDirectory(path);
    if (!stat.isDirectory()) return new InvalidConfigError(path, { reason: "is not a directory (machine entries are directories holding config.toml)" });
  }
  return new StoreIoError(path, "open directory", error);
}

/** Runs a removal of `path`; a missing entry is fine, anything else is a StoreIoError. */
async function removeEntry(remove: () => Promise<void>, path: string): Promise<void> {
  try {
    await remove();
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw new StoreIoError(path, "remove", error);
  }
}

/** The mutation of `updateState`: `starting` persists as `running`, `stopping` as `stopped`. */
function stateSetter(state: MachineState): (machine: Machine) => void {
  const persisted = toPersistedState(state);
  return (machine) => {
    machine.state = persisted;
  };
}

/** Keys whose values differ between two machines (absent and `undefined` are the same). */
function changedKeys(before: Machine, after: Machine): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter(
    (k) => !isDeepStrictEqual((before as unknown as Record<string, unknown>)[k], (after as unknown as Record<string, unknown>)[k]),
  );
}
