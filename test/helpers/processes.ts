/**
 * Test helpers for real child processes and temp directories: spawn, wait for a condition by
 * polling (never by asserting how long something took), and clean up.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";

/**
 * Polls `condition` until it returns a truthy value and returns that value. Fails with `description`
 * after `timeoutMs` (generous by default: the test machine is shared and slow).
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  description: string,
  { timeoutMs = 20_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
    await delay(intervalMs);
  }
}

/** Creates a temp directory under os.tmpdir(); remove it with {@link removeTempDir}. */
export function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `arcbox-${prefix}-`));
}

export function removeTempDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/** Starts `command` with stdio ignored and waits until it has been spawned. */
export async function startProcess(command: string, args: string[]): Promise<ChildProcess & { pid: number }> {
  const child = spawn(command, args, { stdio: "ignore" });
  await once(child, "spawn");
  if (child.pid === undefined) throw new Error(`${command} has no pid after spawning`);
  return child as ChildProcess & { pid: number };
}

/** Kills a child started by these helpers (SIGKILL) and waits until Node has reaped it. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

/** Runs a process to completion and returns its pid (now the pid of no process, barring reuse). */
export async function runToCompletion(command: string, args: string[]): Promise<number> {
  const child = await startProcess(command, args);
  await once(child, "exit");
  return child.pid;
}

/** The state letter of /proc/<pid>/stat (R, S, Z, ...), or undefined when there is no such process. */
export async function processState(pid: number): Promise<string | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 1).trim().split(/\s+/)[0];
  } catch {
    return undefined;
  }
}

/**
 * True when `pid` no longer runs: no such process, or a zombie. Orphaned zombies count as gone because
 * an init that does not reap (as in some containers) keeps them around for ever.
 */
export async function isProcessGone(pid: number): Promise<boolean> {
  const state = await processState(pid);
  return state === undefined || state === "Z";
}

/** Reads a file holding a pid (as written by `echo $! > file`), or undefined while it is absent or empty. */
export async function readPidFileIfPresent(file: string): Promise<number | undefined> {
  try {
    const text = (await readFile(file, "utf8")).trim();
    return text === "" ? undefined : Number(text);
  } catch {
    return undefined;
  }
}
