/**
 * The machines directory as the commands find it at start: a directory, missing (the service waits
 * for it; a pass cannot run), or something else at its path (a wrong setting).
 */
import { stat } from "node:fs/promises";

/**
 * The machines directory does not exist, or its path names something that is not a directory. A
 * usage error: nothing is created.
 */
export class MachinesDirMissingError extends Error {
  override readonly name = "MachinesDirMissingError";
  constructor(
    readonly path: string,
    readonly problem: "does not exist" | "is not a directory" = "does not exist",
  ) {
    super(`machines directory ${path} ${problem}`);
  }
}

/**
 * Whether a directory is at `path`: `directory`, or `missing` when nothing is there. Throws
 * MachinesDirMissingError ("is not a directory") when something else is (a file, or a path through
 * one), and the stat's error for anything else (EACCES …).
 */
export async function machinesDirState(path: string): Promise<"directory" | "missing"> {
  try {
    if ((await stat(path)).isDirectory()) return "directory";
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "missing";
    if (code !== "ENOTDIR") throw error;
  }
  throw new MachinesDirMissingError(path, "is not a directory");
}
