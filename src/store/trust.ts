/**
 * Whether root may work in a machines directory. Root's writes go wherever the paths lead; a user who
 * can write in the machines directory, in a machine directory or above them can make paths lead
 * elsewhere (a symlink swapped in at the right moment). The store works through directory
 * descriptors, which closes that race for its own reads and writes, but a directory another user
 * controls stays a risk for everything else root does there (hooks run in it, tools an operator runs
 * in it). So a controller running as root refuses such a directory unless told otherwise.
 *
 * Trusted: owned by root, not writable by group or others. Directories above the machines directory
 * may be writable by others when their sticky bit is set (as /tmp is): nobody else can then rename or
 * remove what root owns in them.
 */
import { lstat, readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { NoAnswerError, OverdueCalls } from "../platform/deadline.js";
import { controllingAncestors, untrustedDirectoryReason } from "../platform/dir-trust.js";
import { StoreError, errnoCode } from "./errors.js";

/** A directory another user can write, and how. */
export interface UntrustedDirectory {
  path: string;
  /** `owned by uid 1000`, `writable by group (mode 0775)` … */
  reason: string;
}

/** A controller running as root was pointed at directories another user can write. */
export class UntrustedMachinesDirError extends StoreError {
  readonly problems: readonly UntrustedDirectory[];

  constructor(machinesDir: string, problems: readonly UntrustedDirectory[]) {
    const first = problems[0]!;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
    super(
      `refusing to run as root over ${machinesDir}: ${first.path} is ${first.reason}${more}; a user who can write there ` +
        `can redirect root's writes. Make it owned by root and not writable by group or others (chown root, chmod go-w), ` +
        `or accept the risk with --allow-untrusted-machines-dir (allow_untrusted_machines_dir = true)`,
      machinesDir,
    );
    this.problems = problems;
  }
}

/** Only root's own directories are trusted by a controller running as root. */
const ROOT_ONLY: ReadonlySet<number> = new Set([0]);

/** What to do about directories that do not answer (a hung mount). */
export interface NoAnswerOptions {
  /** The deadlines of the calls, keyed by directory; default a new OverdueCalls. */
  calls?: OverdueCalls;
  /** Told of each directory skipped because it did not answer. */
  onNoAnswer?: (path: string) => void;
}

/**
 * The directories that make `machinesDir` unsafe for root: the machines directory itself, each
 * machine directory in it (symlinks and files are not followed: the store refuses them anyway), and
 * every directory above it, along the path as given and along the path it resolves to. Empty when
 * `effectiveUid` (default: this process's) is not root, since then only that user's own files are
 * within reach. A machines directory that does not exist yet has only its ancestors checked. A
 * directory that does not answer within the deadline of `calls` (keyed by the directory; a hung
 * mount) is skipped and passed to `onNoAnswer`. Throws StoreError when a directory cannot be examined
 * otherwise.
 */
export async function findUntrustedDirectories(
  machinesDir: string,
  effectiveUid = process.geteuid?.(),
  { calls = new OverdueCalls(), onNoAnswer }: NoAnswerOptions = {},
): Promise<UntrustedDirectory[]> {
  if (effectiveUid !== 0) return [];
  const dir = resolve(machinesDir);
  const problems: UntrustedDirectory[] = [];
  const check = async (path: string, sticky: boolean, look = stat) => {
    let stats;
    try {
      stats = await calls.run(path, `stat of ${path}`, () => look(path));
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return false;
      // A machine directory on a mount that does not answer fails its own reconciles; it does not
      // keep the controller from starting.
      if (error instanceof NoAnswerError) {
        onNoAnswer?.(path);
        return false;
      }
      throw new StoreError(`${path}: cannot check who can write it: ${(error as Error).message}`, path, { cause: error });
    }
    const reason = stats.isDirectory() ? untrustedDirectoryReason(stats, { trustedUids: ROOT_ONLY, stickyAllowed: sticky }) : undefined;
    if (reason !== undefined) problems.push({ path, reason });
    return stats.isDirectory();
  };
  for (const ancestor of await controllingAncestors(dir)) await check(ancestor, true);
  if (!(await check(dir, false))) return problems;
  let entries;
  try {
    entries = await calls.run(dir, `readdir of ${dir}`, () => readdir(dir, { withFileTypes: true }));
  } catch (error) {
    throw new StoreError(`${dir}: cannot list it to check who can write the machine directories: ${(error as Error).message}`, dir, { cause: error });
  }
  for (const entry of entries) {
    if (entry.isDirectory()) await check(join(dir, entry.name), false, lstat);
  }
  return problems;
}

/**
 * The start-up check of a controller that writes: throws UntrustedMachinesDirError when running as
 * root over a machines directory another user can write (see {@link findUntrustedDirectories}),
 * unless `allowUntrusted`; then returns what it found, for a warning. Throws StoreError when a
 * directory cannot be examined.
 */
export async function checkMachinesDirTrust(
  machinesDir: string,
  options: { allowUntrusted: boolean; effectiveUid?: number } & NoAnswerOptions,
): Promise<UntrustedDirectory[]> {
  const problems = await findUntrustedDirectories(machinesDir, options.effectiveUid ?? process.geteuid?.(), options);
  if (problems.length > 0 && !options.allowUntrusted) throw new UntrustedMachinesDirError(resolve(machinesDir), problems);
  return problems;
}
