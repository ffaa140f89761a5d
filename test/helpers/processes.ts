/**
 * Test helpers for real child processes and temp directories: spawn, wait for a condition by
 * polling (never by asserting how long something took), and clean up.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";

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

/** The unprivileged user that tests run code as, to meet EACCES and EPERM for real while root. */
export const NOBODY = 65534;

/**
 * Runs `script` (an ES module body) as user nobody, placed in `dist/<distDir>` of a copy of the built
 * modules (so it can `import … from "./liveness.js"`, which imports its own neighbours), and returns
 * what it wrote to stdout parsed as JSON. The code goes into a new directory in `workDir` (a temp directory, which nobody must be able
 * to enter); whatever else the script reads, the test makes readable. Throws with stderr when the
 * script fails.
 */
export async function runBuiltAsNobody<T>(workDir: string, distDir: string, script: string, args: string[] = []): Promise<T> {
  const builtDir = path.join(workDir, "built");
  const codeDir = path.join(builtDir, distDir);
  await cp(fileURLToPath(new URL("../../dist/", import.meta.url)), builtDir, { recursive: true });
  await writeFile(path.join(builtDir, "package.json"), '{"type":"module"}');
  await writeFile(path.join(codeDir, "main.mjs"), script);
  await new Promise<void>((resolve, reject) => execFile("chmod", ["-R", "a+rX", builtDir], (error) => (error ? reject(error) : resolve())));
  return new Promise<T>((resolve, reject) => {
    execFile(process.execPath, [path.join(codeDir, "main.mjs"), ...args], { uid: NOBODY, gid: NOBODY, cwd: "/" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`script run as nobody failed: ${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as T);
    });
  });
}
