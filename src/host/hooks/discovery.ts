/** Finding the networking hooks in `hooks_dir` (DESIGN §4). */
import { constants as fsConstants, lstatSync, statSync } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { ExecutableHook, formatMode, type ExecutableHookOptions } from "./executable-hook.js";
import { HostFileError } from "../host-file-error.js";

export interface SkippedHookFile {
  /** Path of the skipped entry. */
  file: string;
  reason: string;
}

export interface DiscoveredHooks {
  hooks: ExecutableHook[];
  /** Entries that are not run. Those skipped for a reason a person should fix deserve a warning. */
  skipped: SkippedHookFile[];
}

/** The hooks directory exists but cannot be listed (not a directory, permissions). */
export class HooksDirectoryError extends HostFileError {
  constructor(path: string, code: string | undefined, options?: { cause?: unknown }) {
    super(path, code, `cannot read hooks directory ${path}: ${code ?? "unknown error"}`, options);
  }
}

/** Package-manager and editor leftovers that run-parts also ignores. */
const LEFTOVER_SUFFIXES = ["~", ".swp", ".rpmnew", ".rpmsave", ".rpmorig"];

/** Why a file name is not a hook, or undefined when it may be one. */
export function skipReasonForName(name: string): string | undefined {
  if (name.startsWith(".")) return "hidden file (name starts with '.')";
  if (/\.dpkg-[^/]*$/.test(name)) return "package manager leftover (.dpkg-*)";
  const suffix = LEFTOVER_SUFFIXES.find((s) => name.endsWith(s));
  if (suffix !== undefined) return `editor or package manager leftover (${suffix})`;
  return undefined;
}

/**
 * Lists the hooks of `hooksDir`, sorted by file name in byte order, as {@link ExecutableHook}s
 * built with `options`. Skipped (and listed in `skipped` with the reason): hidden and leftover
 * names (`.*`, `*~`, `*.swp`, `*.dpkg-*`, `*.rpmnew`, `*.rpmsave`, `*.rpmorig`), directories,
 * other non-regular files, non-executable files, names that are not UTF-8, and symlinks whose
 * target is missing or not an executable regular file. A symlink is judged by its target: the
 * run-time safety checks (owner, mode) also apply to the target.
 *
 * Discovery does not check ownership or permissions for safety: {@link ExecutableHook.recover} does
 * that right before each run, so a file replaced after discovery is still checked.
 *
 * A missing `hooksDir` gives no hooks. Throws {@link HooksDirectoryError} when it exists but cannot
 * be listed.
 */
export async function discoverHooks(hooksDir: string, options: ExecutableHookOptions = {}): Promise<DiscoveredHooks> {
  let names: Buffer[];
  try {
    names = await readdir(hooksDir, { encoding: "buffer" });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { hooks: [], skipped: [] };
    throw new HooksDirectoryError(hooksDir, code, { cause: error });
  }
  names.sort(Buffer.compare);

  const hooks: ExecutableHook[] = [];
  const skipped: SkippedHookFile[] = [];
  for (const rawName of names) {
    const name = rawName.toString("utf8");
    const file = path.join(hooksDir, name);
    if (!Buffer.from(name, "utf8").equals(rawName)) {
      skipped.push({ file, reason: "file name is not valid UTF-8" });
      continue;
    }
    const reason = skipReasonForName(name) ?? (await skipReasonForFile(file));
    if (reason === undefined) hooks.push(new ExecutableHook(file, options));
    else skipped.push({ file, reason });
  }
  return { hooks, skipped };
}

async function skipReasonForFile(file: string): Promise<string | undefined> {
  let stats;
  try {
    stats = await stat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "broken symbolic link";
    return `cannot be inspected (${code ?? String(error)})`;
  }
  if (stats.isDirectory()) return "directory";
  if (!stats.isFile()) return "not a regular file";
  try {
    await access(file, fsConstants.X_OK);
  } catch {
    return `not executable (mode ${formatMode(stats.mode)}); fix with chmod +x`;
  }
  return undefined;
}

/**
 * `discoverHooks` for every recovery, without listing the directory each time: the last discovery is
 * reused while the directory and every entry it found are unchanged (device, inode, modification and
 * change times: adding, removing, renaming, editing or chmod-ing a hook changes one of them). That
 * costs one `stat` of the directory and one per entry instead of a listing and two calls per entry.
 * Resolves with `changed: true` when the hooks were discovered afresh (then skipped entries are worth
 * reporting again). Rejects as `discoverHooks`.
 */
export function cachedHookDiscovery(hooksDir: string, options: ExecutableHookOptions = {}): () => Promise<DiscoveredHooks & { changed: boolean }> {
  let last: { key: string; found: DiscoveredHooks } | undefined;
  const entriesOf = (found: DiscoveredHooks) => [...found.hooks.map((hook) => hook.path), ...found.skipped.map((skip) => skip.file)];
  return async () => {
    if (last && discoveryKey(hooksDir, entriesOf(last.found)).key === last.key) return { ...last.found, changed: false };
    const found = await discoverHooks(hooksDir, options);
    const { key, newestMs } = discoveryKey(hooksDir, entriesOf(found));
    // A change within the file system's timestamp granularity of the last one would leave the same
    // times behind: a discovery is reused only once everything it saw is older than that.
    last = Date.now() - newestMs > RACY_TIMESTAMP_MS ? { key, found } : undefined;
    return { ...found, changed: true };
  };
}

/** Times closer to now than this may still be followed by a change that leaves them as they are. */
const RACY_TIMESTAMP_MS = 2_000;

/** What must not change for a discovery to stay valid (the directory's and each entry's identity and times), and the newest of those times. */
function discoveryKey(hooksDir: string, entries: string[]): { key: string; newestMs: number } {
  let newestMs = 0;
  const identity = (path: string, follow: boolean): string => {
    try {
      // throwIfNoEntry: a missing hooks directory is the usual case, and an exception costs more than the stat.
      const stat = follow ? statSync(path, { bigint: true, throwIfNoEntry: false }) : lstatSync(path, { bigint: true, throwIfNoEntry: false });
      if (stat === undefined) return "ENOENT";
      newestMs = Math.max(newestMs, Number(stat.mtimeNs / 1_000_000n), Number(stat.ctimeNs / 1_000_000n));
      return `${stat.dev}:${stat.ino}:${stat.mode}:${stat.mtimeNs}:${stat.ctimeNs}`;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? "error";
    }
  };
  // An entry is looked at both as itself and as what a symlink leads to (the hook that runs).
  const key = [identity(hooksDir, false), ...entries.map((entry) => `${identity(entry, false)}>${identity(entry, true)}`)].join("|");
  return { key, newestMs };
}
