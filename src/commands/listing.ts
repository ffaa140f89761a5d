/**
 * What `get` and `validate` say about the machines directory itself, on stderr: why it could not be
 * listed, or that it does not exist (arcbox-core lists no machines there, so neither command fails,
 * but a mistyped path should not pass for an empty host). Each is one line, escaped (message-line.ts).
 */
import { stat } from "node:fs/promises";
import type { ControllerConfig } from "../controller/config.js";
import { MachinesDirMissingError } from "../controller/machines-dir.js";
import { checkHooksDirectoryTrust, HooksDirectoryError } from "../host/hooks.js";
import { StoreError } from "../store/index.js";
import { messageLine } from "./message-line.js";

/** The line for a listing that failed; a StoreError's message already starts with the path it names. */
export function listingFailure(machinesDir: string, error: unknown): string {
  const message = (error as Error).message;
  return error instanceof StoreError && error.path !== undefined
    ? messageLine(`cannot list machines: ${message}`)
    : messageLine(`cannot list ${machinesDir}: ${message}`);
}

/** The note for a machines directory that does not exist, or null when it exists (or cannot be checked). */
export async function missingDirectoryNote(machinesDir: string): Promise<string | null> {
  try {
    await stat(machinesDir);
    return null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return null;
    return messageLine(`${new MachinesDirMissingError(machinesDir).message}: no machines`);
  }
}

/**
 * The note for a hooks directory that recoveries could not use as configured, or null: the default
 * one missing (recoveries would run no hook), or a named or untrusted one (`run` and `reconcile`
 * would refuse to start). Never throws.
 */
export async function hooksNote(config: ControllerConfig): Promise<string | null> {
  if (config.hooksDir === null) return null;
  try {
    await checkHooksDirectoryTrust(config.hooksDir);
    return null;
  } catch (error) {
    if (!(error instanceof HooksDirectoryError)) return null;
    if (error.code === "ENOENT" && config.hooksDirSource === null) {
      const consequence = "so a recovery would run no network hook";
      return messageLine(`note: no hooks directory: the default ${config.hooksDir} does not exist, ${consequence}`);
    }
    const named = config.hooksDirSource === null ? "" : ` (named by ${config.hooksDirSource})`;
    return messageLine(`note: ${error.message}${named}: run and reconcile refuse to start`);
  }
}
