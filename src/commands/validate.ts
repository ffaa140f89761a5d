/**
 * `arcbox-controller validate [PATH...]`: checks config files or machine directories (default:
 * every machine of the machines directory, as arcbox-core's `list()` finds them) and prints
 * `path:line:col: message` per problem, one line each: spelled by escapeText, since a path or name in
 * it may hold a newline or a terminal escape. Read-only.
 */
import { lstat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { ControllerConfig } from "../controller/config.js";
import { listMachineNames } from "../controller/sources.js";
import { escapeText } from "../platform/escape-text.js";
import { controllerRule, isValidMachineName, readMachineConfig, StoreError } from "../store/index.js";
import { listingFailure, missingDirectoryNote } from "./listing.js";

/** Runs `validate`; exit code 0 when every target is valid, 1 otherwise, 2 when nothing could be listed. */
export async function runValidate(config: ControllerConfig, paths: string[]): Promise<number> {
  let targets: string[];
  if (paths.length > 0) {
    targets = paths.map((path) => resolve(path));
  } else {
    try {
      targets = (await listMachineNames(config.machinesDir)).map((name) => join(config.machinesDir, name));
    } catch (error) {
      process.stderr.write(listingFailure(config.machinesDir, error));
      return 2;
    }
    const note = targets.length === 0 ? await missingDirectoryNote(config.machinesDir) : null;
    if (note !== null) process.stderr.write(note);
  }
  let problems = 0;
  for (const target of targets) {
    const problem = await validateTarget(target);
    if (problem !== null) {
      problems++;
      process.stdout.write(`${escapeText(problem)}\n`);
    }
  }
  const noun = targets.length === 1 ? "config" : "configs";
  process.stderr.write(
    problems === 0 ? `${targets.length} ${noun} valid\n` : `${problems} of ${targets.length} ${noun} invalid\n`,
  );
  return problems === 0 ? 0 : 1;
}

/**
 * Checks one target: a machine directory (its name, then its `config.toml`) or a config file (its
 * name must match its directory). Returns the problem as `path[:line:col]: message` (as it is, not
 * yet escaped), or null.
 */
export async function validateTarget(target: string): Promise<string | null> {
  let configPath = target;
  try {
    const info = await lstat(target);
    if (info.isSymbolicLink()) return `${target}: ${controllerRule("is a symbolic link; machine directories and configs must be real")}`;
    if (info.isDirectory()) configPath = join(target, "config.toml");
  } catch (error) {
    return `${target}: ${describeFsError(error)}`;
  }
  const machineDir = dirname(configPath);
  const name = basename(machineDir);
  if (!isValidMachineName(name)) {
    return `${machineDir}: ${controllerRule(`invalid machine name "${name}" (allowed: letters, digits, '.', '_', '-'; must start with a letter or digit, not end with '.', at most 128 characters)`)}`;
  }
  try {
    await readMachineConfig(configPath, { expectedName: name });
    return null;
  } catch (error) {
    if (error instanceof StoreError) return error.message;
    return `${configPath}: ${describeFsError(error)}`;
  }
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file or directory";
  if (code === "EACCES") return "permission denied";
  return (error as Error).message;
}
