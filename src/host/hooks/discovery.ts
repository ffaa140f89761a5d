/** Finding the networking hooks in `hooks_dir` (docs/design.md#hooks-directory). */
import { constants as fsConstants } from "node:fs";
import { access, lstat, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { controllingAncestors, formatMode, untrustedDirectoryReason } from "../../platform/dir-trust.js";
import { ExecutableHook, type ExecutableHookOptions } from "./executable-hook.js";
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

/**
 * The hooks directory cannot be used: it does not exist (`code` ENOENT), is not a directory
 * (ENOTDIR), is not trusted (`UNTRUSTED`: someone else could put a hook in it) or cannot be read.
 * A recovery never runs without the hooks of a directory it was given.
 */
export class HooksDirectoryError extends HostFileError {
  constructor(path: string, code: string | undefined, detail?: string, options?: { cause?: unknown }) {
    super(path, code, `hooks directory ${path} ${detail ?? describeDirectoryCode(code)}`, options);
  }
}

function describeDirectoryCode(code: string | undefined): string {
  if (code === "ENOENT") return "does not exist";
  if (code === "ENOTDIR") return "is not a directory";
  return `cannot be read (${code ?? "unknown error"})`;
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
 * Throws {@link HooksDirectoryError} when `hooksDir` does not exist, is not a directory or cannot be
 * listed: a missing directory is never taken for "no hooks". Trust is {@link checkHooksDirectoryTrust}'s.
 */
export async function discoverHooks(hooksDir: string, options: ExecutableHookOptions = {}): Promise<DiscoveredHooks> {
  let names: Buffer[];
  try {
    names = await readdir(hooksDir, { encoding: "buffer" });
  } catch (error) {
    throw new HooksDirectoryError(hooksDir, (error as NodeJS.ErrnoException).code, undefined, { cause: error });
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
 * Throws {@link HooksDirectoryError} (code `UNTRUSTED`) when a user other than root or this process's
 * own could change which hooks run: the directory (its target, when it is a symbolic link) must be
 * owned by one of them and not be writable by group or others; so must every directory above it,
 * along the path as given and as resolved, except that those may be writable by others when their
 * sticky bit is set (as /tmp is). Also throws HooksDirectoryError when the directory does not exist
 * or is not a directory, and `effectiveUid` defaults to this process's.
 */
export async function checkHooksDirectoryTrust(hooksDir: string, effectiveUid = process.geteuid?.()): Promise<void> {
  const trustedUids = new Set([0, ...(effectiveUid === undefined ? [] : [effectiveUid])]);
  const problem = async (dir: string, stickyAllowed: boolean): Promise<string | undefined> => {
    let info;
    try {
      info = await stat(dir);
    } catch (error) {
      throw new HooksDirectoryError(hooksDir, (error as NodeJS.ErrnoException).code, undefined, { cause: error });
    }
    if (!info.isDirectory()) throw new HooksDirectoryError(hooksDir, "ENOTDIR");
    const reason = untrustedDirectoryReason(info, { trustedUids, stickyAllowed });
    return reason === undefined ? undefined : `${dir} is ${reason}`;
  };
  const own = await problem(hooksDir, false);
  const found = own ?? (await firstProblem(await controllingAncestors(path.resolve(hooksDir)), (dir) => problem(dir, true)));
  if (found === undefined) return;
  throw new HooksDirectoryError(
    hooksDir,
    "UNTRUSTED",
    `is not trusted: ${found}, so someone other than root or the controller's user could make it run their code; ` +
      `make it owned by root or that user and not writable by group or others (chown, chmod go-w)`,
  );
}

async function firstProblem(dirs: string[], check: (dir: string) => Promise<string | undefined>): Promise<string | undefined> {
  for (const dir of dirs) {
    const found = await check(dir);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * `checkHooksDirectoryTrust` and `discoverHooks` for every recovery, without doing them each time: the
 * last result is reused while the directory, every entry it found and every directory above it are
 * unchanged (device, inode, owner, mode, and for the directory and its entries the modification and
 * change times: adding, removing, renaming, editing or chmod-ing a hook changes one of them). That
 * costs a few `lstat`s instead of a listing, two calls per entry and the trust check. Resolves with
 * `changed: true` when the hooks were discovered afresh (then skipped entries are worth reporting
 * again). Rejects as `checkHooksDirectoryTrust` and `discoverHooks`; a failure is never reused.
 */
export function cachedHookDiscovery(hooksDir: string, options: ExecutableHookOptions = {}): () => Promise<DiscoveredHooks & { changed: boolean }> {
  let last: { key: string; found: DiscoveredHooks; ancestors: string[] } | undefined;
  const entriesOf = (found: DiscoveredHooks) => [...found.hooks.map((hook) => hook.path), ...found.skipped.map((skip) => skip.file)];
  return async () => {
    if (last && (await discoveryKey(hooksDir, entriesOf(last.found), last.ancestors)).key === last.key) return { ...last.found, changed: false };
    last = undefined;
    const ancestors = await controllingAncestors(path.resolve(hooksDir));
    await checkHooksDirectoryTrust(hooksDir);
    const found = await discoverHooks(hooksDir, options);
    const { key, newestMs } = await discoveryKey(hooksDir, entriesOf(found), ancestors);
    // A change within the file system's timestamp granularity of the last one would leave the same
    // times behind: a discovery is reused only once everything it saw is older than that.
    if (Date.now() - newestMs > RACY_TIMESTAMP_MS) last = { key, found, ancestors };
    return { ...found, changed: true };
  };
}

/** Times closer to now than this may still be followed by a change that leaves them as they are. */
const RACY_TIMESTAMP_MS = 2_000;

/**
 * What must not change for a discovery to stay valid: the directory's and each entry's identity and
 * times, and the identity, owner and mode of each directory above it (not their times: /tmp's change
 * all the time). Also the newest of the times.
 */
async function discoveryKey(hooksDir: string, entries: string[], ancestors: string[]): Promise<{ key: string; newestMs: number }> {
  let newestMs = 0;
  const identity = async (path: string, follow: boolean, times = true): Promise<string> => {
    try {
      const info = follow ? await stat(path, { bigint: true }) : await lstat(path, { bigint: true });
      const id = `${info.dev}:${info.ino}:${info.mode}:${info.uid}`;
      if (!times) return id;
      newestMs = Math.max(newestMs, Number(info.mtimeNs / 1_000_000n), Number(info.ctimeNs / 1_000_000n));
      return `${id}:${info.mtimeNs}:${info.ctimeNs}`;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? "error";
    }
  };
  // The directory and each entry are looked at both as themselves and as what a symlink leads to.
  // One call at a time: on a mount that stops answering, only one thread is held.
  const parts: string[] = [];
  for (const dir of ancestors) parts.push(await identity(dir, false, false));
  for (const path of [hooksDir, ...entries]) parts.push(`${await identity(path, false)}>${await identity(path, true)}`);
  return { key: parts.join("|"), newestMs };
}
