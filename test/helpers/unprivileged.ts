/**
 * Running the built code as user `nobody` (uid 65534), so that permission errors happen for real when
 * the tests run as root (as CI does): root reads everything, nobody does not.
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { cp, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const NOBODY = 65534;
export const isRoot = process.getuid?.() === 0;

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const execFileAsync = promisify(execFile);

/** Whether user nobody can read `file` (every directory above it must let it through). */
async function nobodyCanRead(file: string): Promise<boolean> {
  try {
    await execFileAsync(process.execPath, ["-e", `require("fs").accessSync(${JSON.stringify(file)}, require("fs").constants.R_OK)`], { uid: NOBODY, gid: NOBODY });
    return true;
  } catch {
    return false;
  }
}

/**
 * The repository root from which nobody can run `dist/`: this checkout when nobody can read it, else
 * a copy of `dist/`, `node_modules/` and `package.json` under `scratch` (which must be readable by
 * nobody; the copy is made readable).
 */
export async function codeReadableByNobody(scratch: string): Promise<string> {
  if (await nobodyCanRead(path.join(REPO, "dist", "cli.cjs"))) return REPO;
  const copy = path.join(scratch, "app");
  for (const part of ["dist", "node_modules", "package.json"]) await cp(path.join(REPO, part), path.join(copy, part), { recursive: true });
  await execFileAsync("chmod", ["-R", "a+rX", copy]);
  return copy;
}

/** Spawns `node args…` as nobody (as the current user when not root), with a clean environment. */
export function spawnNodeAsNobody(args: string[], options: SpawnOptions = {}): ChildProcess {
  const ids = isRoot ? { uid: NOBODY, gid: NOBODY } : {};
  return spawn(process.execPath, args, { env: { PATH: process.env.PATH }, cwd: "/", stdio: ["ignore", "pipe", "pipe"], ...ids, ...options });
}

/** Runs `node args…` as nobody to completion: exit code, stdout and stderr. */
export function runNodeAsNobody(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnNodeAsNobody(args);
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Writes an ES module script `name` into `dir` and returns its path. */
export async function writeScript(dir: string, name: string, source: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, source, { mode: 0o644 });
  return file;
}
