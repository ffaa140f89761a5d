/**
 * What `get` and `validate` say about the machines directory itself, on stderr: why it could not be
 * listed, or that it does not exist (arcbox-core lists no machines there, so neither command fails,
 * but a mistyped path should not pass for an empty host).
 */
import { stat } from "node:fs/promises";
import { MachinesDirMissingError } from "../controller/reconcile-pass.js";
import { StoreError } from "../store/index.js";

/** The line for a listing that failed; a StoreError's message already starts with the path it names. */
export function listingFailure(machinesDir: string, error: unknown): string {
  const message = (error as Error).message;
  return error instanceof StoreError && error.path !== undefined
    ? `arcbox-controller: cannot list machines: ${message}\n`
    : `arcbox-controller: cannot list ${machinesDir}: ${message}\n`;
}

/** The note for a machines directory that does not exist, or null when it exists (or cannot be checked). */
export async function missingDirectoryNote(machinesDir: string): Promise<string | null> {
  try {
    await stat(machinesDir);
    return null;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT" ? `arcbox-controller: ${new MachinesDirMissingError(machinesDir).message}: no machines\n` : null;
  }
}
