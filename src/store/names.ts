/**
 * Machine names. A name becomes a path component under the machines directory, so it is checked
 * before it touches any path: the pattern admits no `/`, no leading `.` (so neither `.` nor `..`),
 * and nothing hidden.
 */
import { InvalidNameError } from "./errors.js";

const MACHINE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Why `name` is not a valid machine name, or `undefined` when it is. */
export function machineNameProblem(name: string): string | undefined {
  if (typeof name !== "string") return "not a string";
  if (name.length === 0) return "it is empty";
  if (name.length > 128) return `it has ${name.length} characters (at most 128)`;
  if (!/^[A-Za-z0-9]/.test(name)) return "it must start with a letter or digit";
  if (!MACHINE_NAME.test(name)) return "only letters, digits, '.', '_' and '-' are allowed";
  if (name.endsWith(".")) return "it must not end in '.'";
  return undefined;
}

/** True when `name` is a valid machine name (`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, not ending in `.`). */
export function isValidMachineName(name: string): boolean {
  return machineNameProblem(name) === undefined;
}

/**
 * Checks a machine name; throws InvalidNameError (naming `path` when given) when it is not valid.
 */
export function validateMachineName(name: string, path?: string): void {
  const problem = machineNameProblem(name);
  if (problem !== undefined) throw new InvalidNameError(String(name), problem, path);
}
