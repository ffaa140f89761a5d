/**
 * Who can change what is in a directory: the owner of the directory and anyone it is writable by,
 * and the same for every directory above it (a writer there can rename the whole subtree away and
 * put another in its place). The store's and the hooks' trust rules are built from these.
 */
import { realpath } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** The sticky bit: in such a directory only an entry's owner can rename or remove it (as in /tmp). */
const STICKY = 0o1000;

/** The owner and permission bits of a directory, as `stat` gives them. */
export interface DirectoryStats {
  mode: number;
  uid: number;
}

/** Permission bits as four octal digits, e.g. `0755`. */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/**
 * Why a directory with these stats is not trusted, or undefined when it is: it must be owned by one
 * of `trustedUids` and not be writable by group or others. With `stickyAllowed` (for the directories
 * above the one that matters) a directory writable by others is trusted when its sticky bit is set.
 */
export function untrustedDirectoryReason(
  stats: DirectoryStats,
  { trustedUids, stickyAllowed }: { trustedUids: ReadonlySet<number>; stickyAllowed: boolean },
): string | undefined {
  if (!trustedUids.has(stats.uid)) return `owned by uid ${stats.uid}`;
  if (stickyAllowed && (stats.mode & STICKY) !== 0) return undefined;
  const writableBy = [stats.mode & 0o020 ? "group" : "", stats.mode & 0o002 ? "others" : ""].filter(Boolean);
  if (writableBy.length === 0) return undefined;
  return `writable by ${writableBy.join(" and ")} (mode ${formatMode(stats.mode)})`;
}

/** Every directory above `path`, outermost first: `/`, `/var`, `/var/lib` for `/var/lib/x`. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    out.unshift(dir);
    if (dir === dirname(dir)) return out;
  }
}

/** `path` with its symbolic links resolved, as far as it exists (a missing tail is kept as it is). Never throws. */
export async function resolvedPath(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(await resolvedPath(parent), basename(path));
  }
}

/**
 * The directories whose owners and permissions decide who controls `path`: those above it along the
 * path as given and along the path it resolves to, outermost first, without repeats.
 */
export async function controllingAncestors(path: string): Promise<string[]> {
  return [...new Set([...ancestorsOf(path), ...ancestorsOf(await resolvedPath(path))])];
}
