/** Finding the networking hooks in `hooks_dir` (DESIGN §4). */
import { constants as fsConstants } from "node:fs";
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
