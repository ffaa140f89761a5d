// The peer baseline: arcbox-core's own Rust loop (`arcbox-core-loader recover DIR`: `load_all`, then
// `update_state(Stopped)` for every persisted `running` machine, as its daemon does at start; no fsync).
// Built once from a writable copy of ../shared/arcbox-core-loader into a cache directory outside the
// repository (cargo, offline, with the crates Debian packages), and reused while its sources are the same.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
/** The loader's sources (ARCBOX_CORE_LOADER_DIR overrides). */
export const LOADER_SOURCE = process.env.ARCBOX_CORE_LOADER_DIR ?? resolve(REPO, "../shared/arcbox-core-loader");
/** Where built loaders are kept between runs (BENCH_CACHE_DIR overrides). */
export const CACHE_DIR = process.env.BENCH_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "arcbox-controller-bench");

/**
 * The path of a built `arcbox-core-loader`, building it first when no build of the current sources
 * is cached. Resolves `{ binary, built_ms? }`, or `{ binary: null, reason }` when it cannot be had
 * (no sources, no cargo, the build failed: `reason` says which, with the end of cargo's output).
 * BENCH_RUST=0 skips it.
 */
export async function rustLoader(log = (line) => console.log(line)) {
  if (process.env.BENCH_RUST === "0") return { binary: null, reason: "skipped (BENCH_RUST=0)" };
  if (!existsSync(join(LOADER_SOURCE, "Cargo.toml"))) return { binary: null, reason: `no arcbox-core-loader sources at ${LOADER_SOURCE}` };
  const cargo = findCargo();
  if (cargo === null) return { binary: null, reason: "cargo not found (install Rust to measure arcbox-core's loop)" };
  const target = join(CACHE_DIR, `arcbox-core-loader-${sourceHash(LOADER_SOURCE)}`);
  const binary = join(target, "target", "release", "arcbox-core-loader");
  if (existsSync(binary)) return { binary };

  mkdirSync(CACHE_DIR, { recursive: true });
  const work = `${target}.building-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  cpSync(LOADER_SOURCE, work, { recursive: true });
  makeWritable(work);
  log(`building arcbox-core-loader once into ${target} (cargo build --release --offline) …`);
  const started = performance.now();
  const build = await run(cargo, ["build", "--release", "--offline"], work);
  if (build.code !== 0) {
    rmSync(work, { recursive: true, force: true });
    const lines = build.output.trim().split("\n");
    // cargo's first `error` line names the problem (a missing crate, a compile error); else its last words.
    const why = lines.find((line) => line.startsWith("error")) ?? lines.slice(-3).join(" / ");
    return { binary: null, reason: `cargo build failed (exit ${build.code}): ${why}` };
  }
  try {
    renameSync(work, target);
  } catch {
    // Another run finished the same build first: use that one.
    rmSync(work, { recursive: true, force: true });
  }
  return { binary, built_ms: Math.round(performance.now() - started) };
}

/** Runs `loader recover DIR`; resolves its wall time (ms, as a process) and its own report `{ recovered, ms }`. */
export async function rustRecover(binary, dir) {
  const started = performance.now();
  const result = await run(binary, ["recover", dir]);
  const wall = performance.now() - started;
  if (result.code !== 0) throw new Error(`arcbox-core-loader recover failed (exit ${result.code}): ${result.output}`);
  return { wall, ...JSON.parse(result.stdout.trim().split("\n").pop()) };
}

function findCargo() {
  for (const candidate of ["cargo", join(homedir(), ".cargo", "bin", "cargo")]) {
    if (spawnSync(candidate, ["--version"]).status === 0) return candidate;
  }
  return null;
}

/** A digest of every file of the loader's sources (not of its build output). */
function sourceHash(dir) {
  const hash = createHash("sha256");
  const walk = (current) => {
    for (const entry of readdirSync(current, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (entry.name === "target") continue;
      const path = join(current, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) hash.update(path.slice(dir.length)).update(readFileSync(path));
    }
  };
  walk(dir);
  return hash.digest("hex").slice(0, 16);
}

/** The shared sources are read-only; the copy must let cargo write its lock and target. */
function makeWritable(path) {
  const info = statSync(path);
  chmodSync(path, info.mode | 0o200);
  if (info.isDirectory()) for (const entry of readdirSync(path)) makeWritable(join(path, entry));
}

function run(command, args, cwd) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let output = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      output += chunk;
    });
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout, output }));
  });
}
