/**
 * Which entries of the machines directory are machines: exactly those arcbox-core's
 * `MachinePersistence::list()` returns — a directory (a symlink to one counts) holding a
 * `config.toml` (anything by that name that exists, links followed), whose name is UTF-8. Every
 * command lists through here. Everything else is not a machine (arcbox creates a machine's directory
 * a moment before its file), and only the controller's own lock file is left out altogether.
 */
import { promises as fsp, type Dirent } from "node:fs";
import { join, sep } from "node:path";
import { isLockFileName } from "../host/instance-lock.js";
import { NoAnswerError, OverdueCalls } from "../platform/deadline.js";
import { StoreIoError, errnoCode } from "./errors.js";

/** An entry arcbox-core's `list()` returns: it loads it as a machine (valid or not). */
export interface MachineEntry {
  kind: "machine";
  name: string;
  /** The entry is a symbolic link (to a directory); arcbox-core follows it, the controller refuses it. */
  symlink: boolean;
}

/** An entry that is not a machine, and why (shown as `NoConfig` by `get`, counted nowhere). */
export interface NoConfigEntry {
  kind: "noConfig";
  /**
   * The entry's name; its bytes as they are when they are not UTF-8, since no string can stand for
   * them without two names collapsing into one (a decoder turns each bad byte into U+FFFD).
   */
  name: string | Buffer;
  reason: string;
}

export type DirectoryEntry = MachineEntry | NoConfigEntry;

/** The file that makes a directory a machine. */
export const CONFIG_FILE_NAME = "config.toml";
const utf8 = new TextDecoder("utf-8", { fatal: true });

export interface ListOptions {
  /** Names to leave out, before anything is looked up about them (those the caller already has). */
  except?: ReadonlySet<string>;
  /**
   * Deadlines of the calls, keyed by the path they touch (a machine directory's is the store's key
   * for it too): an entry whose directory does not answer counts as a machine, whose reconcile then
   * says why it cannot be read. Default: a new OverdueCalls.
   */
  calls?: OverdueCalls;
}

/**
 * Every entry of `dir` but the controller's lock file (and `except`), sorted by name (its bytes), each
 * a machine or not as arcbox-core's `list()` decides. A missing directory has no entries; any other
 * failure to read it throws StoreIoError.
 */
export async function listDirectoryEntries(dir: string, options: ListOptions = {}): Promise<DirectoryEntry[]> {
  const calls = options.calls ?? new OverdueCalls();
  let dirents: Dirent<Buffer>[];
  try {
    dirents = await calls.run(dir, `readdir of ${dir}`, () => fsp.readdir(dir, { withFileTypes: true, encoding: "buffer" }));
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return [];
    throw new StoreIoError(dir, "read directory", error);
  }
  // By the names' bytes: code point order for UTF-8 names, and a place for those that are not.
  dirents.sort((a, b) => Buffer.compare(a.name, b.name));
  const entries = await Promise.all(
    dirents.map(async (dirent): Promise<DirectoryEntry | undefined> => {
      let name: string;
      try {
        name = utf8.decode(dirent.name);
      } catch {
        return { kind: "noConfig", name: dirent.name, reason: "its name is not UTF-8, so arcbox-core cannot list it" };
      }
      if (isLockFileName(name) || options.except?.has(name)) return undefined;
      // A directory needs no stat of its own; a symlink is judged by what it leads to.
      const why = await notAMachine(dir, name, dirent.isDirectory(), calls);
      return why === undefined ? { kind: "machine", name, symlink: dirent.isSymbolicLink() } : { kind: "noConfig", name, reason: why };
    }),
  );
  return entries.filter((e): e is DirectoryEntry => e !== undefined);
}

/** Orders entry names by their bytes (UTF-8 for a string): names that are not UTF-8 sort among the others. */
export function compareEntryNames(a: string | Buffer, b: string | Buffer): number {
  return Buffer.compare(typeof a === "string" ? Buffer.from(a) : a, typeof b === "string" ? Buffer.from(b) : b);
}

/** The path of the entry `name` of `dir`: bytes when the name is bytes (then `dir` is taken as UTF-8). */
export function entryPath(dir: string, name: string | Buffer): string | Buffer {
  return typeof name === "string" ? join(dir, name) : Buffer.concat([Buffer.from(join(dir, sep)), name]);
}

/** Names of the entries of `dir` that arcbox-core's `list()` returns (but `except`), sorted. Throws as listDirectoryEntries. */
export async function listMachineEntryNames(dir: string, options: ListOptions = {}): Promise<string[]> {
  return (await listDirectoryEntries(dir, options)).filter((e) => e.kind === "machine").map((e) => e.name);
}

/**
 * Whether arcbox-core's `list()` would return `name`: a directory (links followed) holding an
 * existing `config.toml`. `name` must be a single path component (checked: anything else is false).
 */
export async function isMachineEntry(dir: string, name: string): Promise<boolean> {
  return isEntryName(name) && (await notAMachine(dir, name, false, new OverdueCalls())) === undefined;
}

/** Whether `name` can be an entry of a directory: one path component, not `.` or `..`. */
export function isEntryName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

/**
 * Why `dir/name` is not a machine, or undefined when it is one. Like Rust's `is_dir()`/`exists()`,
 * except that a `config.toml` hidden by an error other than "does not exist" (EACCES on a directory
 * the controller may not enter, or one that does not answer) counts as present: arcbox-core would
 * silently skip such a machine, while the controller loads it and reports why it cannot be read.
 */
async function notAMachine(dir: string, name: string, knownDirectory: boolean, calls: OverdueCalls): Promise<string | undefined> {
  const path = join(dir, name);
  const stat = (of: string) => calls.run(path, `stat of ${of}`, () => fsp.stat(of));
  if (!knownDirectory) {
    const entry = await stat(path).catch((error: unknown) => (error instanceof NoAnswerError ? "no answer" : undefined));
    if (entry !== "no answer" && !entry?.isDirectory()) return "not a directory; arcbox-core lists only directories holding config.toml";
  }
  const problem = await stat(join(path, CONFIG_FILE_NAME)).then(
    () => undefined,
    (error: unknown) => errnoCode(error) ?? "error",
  );
  if (problem === undefined || (problem !== "ENOENT" && problem !== "ENOTDIR")) return undefined;
  return "no config.toml in this directory; arcbox-core does not list it as a machine";
}
