/**
 * Nothing is ever written outside the machines directory, even when another process swaps machine
 * directories for symlinks to elsewhere at random moments while the store reads and writes them
 * (the attack of a user who can write the machines directory on a controller running as root).
 * The tree around the machines directory is snapshot before and after and must not change.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DIR_ACCESS_KINDS, dirAccessAvailable, fsOpsFor } from "../../src/store/dir-ops.js";
import { InvalidConfigError, MachineStore, StoreError } from "../../src/store/index.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";
import { configText, sampleMachine } from "./temp-store.js";

const MACHINES = 8;
const OPERATIONS = 2_000;
const WRITERS = 4;

let root: string;
let machines: string;
let outside: string;
beforeEach(async () => {
  root = await makeTempDir("race");
  machines = path.join(root, "machines");
  outside = path.join(root, "outside");
  for (let i = 0; i < MACHINES; i++) {
    const name = `web-${i}`;
    for (const base of [machines, outside]) {
      await mkdir(path.join(base, name), { recursive: true });
      await writeFile(path.join(base, name, "config.toml"), configText(name));
    }
  }
  await writeFile(path.join(outside, "secret"), "root only\n", { mode: 0o600 });
});
afterEach(() => removeTempDir(root));

/** Every entry below `dir` (symlinks not followed) with its type, mode and content. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const file = path.join(dir, name);
    const info = await lstat(file);
    const mode = (info.mode & 0o7777).toString(8);
    if (info.isSymbolicLink()) out[name] = `link ${mode} -> ${await readlink(file)}`;
    else if (info.isFile()) out[name] = `file ${mode} ${createHash("sha256").update(await readFile(file)).digest("hex")}`;
    else out[name] = `${info.isDirectory() ? "dir" : "other"} ${mode}`;
  }
  return out;
}

/**
 * A separate process that, until its stdin closes, renames a random machine directory aside, puts a
 * symlink to the same name under `outside` in its place for a random few hundred microseconds, and
 * puts it back. Prints how many swaps it made.
 */
function startSwapper(seed: number): { stop(): Promise<number> } {
  const script = `
    const fs = require("fs"), path = require("path");
    const [machines, outside, count] = process.argv.slice(1, 4);
    let seed = Number(process.argv[4]);
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const spin = (us) => { const end = process.hrtime.bigint() + BigInt(Math.floor(us * 1000)); while (process.hrtime.bigint() < end); };
    let stop = false, swaps = 0;
    process.stdin.on("end", () => (stop = true)).resume();
    function swap() {
      const name = "web-" + Math.floor(random() * Number(count));
      const real = path.join(machines, name), held = path.join(machines, ".held-" + name);
      try { fs.renameSync(real, held); } catch { return; }
      try { fs.symlinkSync(path.join(outside, name), real); swaps++; spin(random() * 400); fs.unlinkSync(real); } catch {}
      try { fs.renameSync(held, real); } catch {}
    }
    (function loop() {
      for (let i = 0; i < 20 && !stop; i++) { swap(); spin(random() * 300); }
      if (stop) { process.stdout.write(String(swaps)); return; }
      setImmediate(loop);
    })();`;
  const child = spawn(process.execPath, ["-e", script, machines, outside, String(MACHINES), String(seed)], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  return {
    async stop() {
      const exited = once(child, "exit");
      child.stdin.end();
      await exited;
      return Number(out);
    },
  };
}

/** Puts back directories the swapper left aside (when the store had re-created the name meanwhile). */
async function restoreHeld(): Promise<void> {
  for (const name of await readdir(machines)) {
    if (!name.startsWith(".held-")) continue;
    const real = path.join(machines, name.slice(".held-".length));
    await rm(real, { recursive: true, force: true });
    await rename(path.join(machines, name), real);
  }
}

type Operation = (store: MachineStore, name: string, random: () => number) => Promise<unknown>;
const OPERATIONS_MIX: Operation[] = [
  (s, n, r) => s.updateState(n, r() < 0.5 ? "running" : "stopped"),
  (s, n, r) => s.updateIp(n, r() < 0.5 ? null : `10.0.0.${Math.floor(r() * 250)}`),
  (s, n, r) => s.update(n, (m) => void (m.cpus = 1 + Math.floor(r() * 8))),
  (s, n, r) => s.save(sampleMachine(n, { cpus: 1 + Math.floor(r() * 8) })),
  (s, n) => s.load(n),
  (s) => s.sweepTempFiles(),
  async (s, n) => {
    await s.remove(n);
    await s.save(sampleMachine(n));
  },
];

/** Runs OPERATIONS random store operations from WRITERS concurrent loops; returns how many saw a symlink. */
async function hammer(store: MachineStore, seed: number): Promise<{ sawSymlink: number; succeeded: number }> {
  let state = seed;
  const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  let sawSymlink = 0;
  let succeeded = 0;
  let left = OPERATIONS;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (left-- > 0) {
        const name = `web-${Math.floor(random() * MACHINES)}`;
        const operation = OPERATIONS_MIX[Math.floor(random() * OPERATIONS_MIX.length)]!;
        try {
          await operation(store, name, random);
          succeeded++;
        } catch (error) {
          if (!(error instanceof StoreError)) throw error;
          if (error instanceof InvalidConfigError && /symbolic link/.test(error.message)) sawSymlink++;
        }
      }
    }),
  );
  return { sawSymlink, succeeded };
}

describe.each(DIR_ACCESS_KINDS.filter(dirAccessAvailable))("names reached through %s", (kind) => {
  it(`${OPERATIONS} reads and writes while machine directories are swapped for symlinks: nothing outside changes`, async () => {
    const seed = Date.now() % 2 ** 31;
    console.log(`symlink race (${kind}): seed ${seed}`);
    const before = await snapshot(outside);
    const aroundBefore = (await readdir(root)).sort();
    const swapper = startSwapper(seed);
    const result = await hammer(new MachineStore({ dir: machines, fs: fsOpsFor(kind) }), seed);
    const swaps = await swapper.stop();
    await restoreHeld();
    console.log(`symlink race (${kind}): ${swaps} swaps, ${result.succeeded} operations succeeded, ${result.sawSymlink} met a symlink`);
    expect(swaps).toBeGreaterThan(100);
    expect(result.sawSymlink).toBeGreaterThan(0);
    expect(result.succeeded).toBeGreaterThan(OPERATIONS / 4);
    expect(await snapshot(outside)).toEqual(before);
    expect((await readdir(root)).sort()).toEqual(aroundBefore);
  });
});

describe("the race harness", () => {
  it("catches a writer that goes by path (what the store did before it used directory descriptors)", async () => {
    const seed = Date.now() % 2 ** 31;
    const before = await snapshot(outside);
    const swapper = startSwapper(seed);
    for (let i = 0; i < OPERATIONS; i++) {
      const dir = path.join(machines, `web-${i % MACHINES}`);
      const temp = path.join(dir, `.config.toml.tmp-${i}`);
      try {
        await writeFile(temp, configText(`web-${i % MACHINES}`, `round = ${i}\n`));
        await rename(temp, path.join(dir, "config.toml"));
      } catch {
        // The directory was aside for a moment.
      }
    }
    await swapper.stop();
    await restoreHeld();
    const after = await snapshot(outside);
    const changed = Object.keys(after).filter((name) => after[name] !== before[name]);
    console.log(`race harness control (seed ${seed}): a path-based writer changed ${changed.length} entries outside`);
    expect(changed.length).toBeGreaterThan(0);
  });
});
