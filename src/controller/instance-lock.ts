/**
 * Single-instance lock on a machines directory (DESIGN §2): `<machines-dir>/.arcbox-controller.lock`
 * holds the owner's pid and process start time. A lock whose owner is gone, or whose pid now belongs
 * to a process that started later (pid reuse), is stale and taken over.
 */
import { readFile, rename, unlink, writeFile, link } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { processStartTime } from "./liveness.js";

export const LOCK_FILE_NAME = ".arcbox-controller.lock";

/** Another live controller holds the lock. */
export class LockHeldError extends Error {
  override readonly name = "LockHeldError";
  constructor(
    readonly lockPath: string,
    readonly ownerPid: number,
  ) {
    super(
      `another arcbox-controller (pid ${ownerPid}) is already managing ${lockPath.slice(0, -LOCK_FILE_NAME.length - 1)}; ` +
        `stop it first (lock file ${lockPath})`,
    );
  }
}

/** A reused pid belongs to a process started at least this much later than the lock's owner. */
const START_TIME_TOLERANCE_MS = 2000;

interface LockContent {
  pid: number;
  /** Process start time as reported by `processStartTime` (null where unknown). */
  started: number | null;
  host: string;
}

export interface InstanceLock {
  readonly path: string;
  /** Removes the lock file if it is still ours. Never throws. */
  release(): Promise<void>;
}

/**
 * Takes the lock on `machinesDir`. Throws `LockHeldError` naming the live owner's pid, or the
 * filesystem error when the directory is not writable.
 */
export async function acquireInstanceLock(machinesDir: string): Promise<InstanceLock> {
  const path = join(machinesDir, LOCK_FILE_NAME);
  const mine: LockContent = { pid: process.pid, started: await processStartTime(process.pid), host: hostname() };
  const text = `${JSON.stringify(mine)}\n`;
  // Written aside and hard-linked into place: link() fails if the lock exists, and a reader never
  // sees a half-written lock.
  const staging = join(machinesDir, `.arcbox-controller.lock.${randomBytes(6).toString("hex")}`);
  await writeFile(staging, text, { mode: 0o644, flag: "wx" });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(staging, path);
        return { path, release: () => releaseLock(path, text) };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const owner = await readLock(path);
      if (owner && (await isLive(owner))) throw new LockHeldError(path, owner.pid);
      // Stale: move it aside under a unique name (atomic), so two starters cannot both remove a fresh lock.
      const aside = `${staging}.stale`;
      try {
        await rename(path, aside);
        const moved = await readFile(aside, "utf8").catch(() => "");
        if (owner && moved !== "" && parseLock(moved)?.pid !== owner.pid) {
          // Someone replaced the stale lock with a live one between our read and rename: put it back.
          await link(aside, path).catch(() => undefined);
        }
        await unlink(aside).catch(() => undefined);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
    }
    throw new Error(`could not take the lock ${path}: it kept changing`);
  } finally {
    await unlink(staging).catch(() => undefined);
  }
}

async function releaseLock(path: string, expected: string): Promise<void> {
  try {
    if ((await readFile(path, "utf8")) === expected) await unlink(path);
  } catch {
    // Already gone or unreadable: nothing of ours to remove.
  }
}

async function readLock(path: string): Promise<LockContent | null> {
  try {
    return parseLock(await readFile(path, "utf8"));
  } catch {
    return null;
  }
}

function parseLock(text: string): LockContent | null {
  try {
    const value = JSON.parse(text) as Partial<LockContent>;
    if (typeof value.pid === "number" && Number.isSafeInteger(value.pid) && value.pid > 0) {
      return { pid: value.pid, started: typeof value.started === "number" ? value.started : null, host: String(value.host ?? "") };
    }
  } catch {
    // Unparseable: treated as stale.
  }
  return null;
}

async function isLive(owner: LockContent): Promise<boolean> {
  if (owner.host !== "" && owner.host !== hostname()) return true; // another host's pid cannot be checked: respect it
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (owner.started === null) return true;
  const started = await processStartTime(owner.pid);
  // Start times read at different moments differ by up to a second or two (whole-second boot time).
  return started === null || Math.abs(started - owner.started) <= START_TIME_TOLERANCE_MS;
}
