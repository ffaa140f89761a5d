/**
 * Test helpers for machines directories: config files in arcbox-core's toml 0.8 layout, hook
 * scripts, an in-memory log and a controller configuration for temp directories.
 */
import { chmod, mkdir, rename, writeFile, utimes } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { defaultConfig, defaultDaemonLock, type ControllerConfig } from "../../src/controller/config.js";

export interface MachineFields {
  state?: string;
  cpus?: number;
  ip?: string | null;
  extra?: string;
}

/** The text of a valid config for `name`, as arcbox-core's toml 0.8 writer lays it out. */
export function machineToml(name: string, fields: MachineFields = {}): string {
  const ip = fields.ip === undefined ? "10.0.2.15" : fields.ip;
  return [
    `name = "${name}"`,
    `cpus = ${fields.cpus ?? 2}`,
    "memory_mb = 4096",
    "disk_gb = 20",
    "block_devices = []",
    'distro = "ubuntu"',
    ...(ip === null ? [] : [`ip_address = "${ip}"`]),
    `state = "${fields.state ?? "running"}"`,
    `vm_id = "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48"`,
    'created_at = "2026-04-27T05:01:09.120004Z"',
    ...(fields.extra ? [fields.extra] : []),
    "",
  ].join("\n");
}

/**
 * Writes `<dir>/<name>/config.toml` as arcbox does (a temp file renamed over it, so a watcher never
 * sees it half-written) and returns its path. Its mtime is set an hour back unless `fresh`, so the
 * startup grace period does not apply.
 */
export async function writeMachine(dir: string, name: string, text: string, { fresh = false } = {}): Promise<string> {
  const file = path.join(dir, name, "config.toml");
  await mkdir(path.dirname(file), { recursive: true });
  // An hour old unless fresh, set before the file appears: a controller watching must never see it
  // change after (a later utimes would be a change by another writer, and rightly a conflict).
  await replaceFile(file, text, fresh ? undefined : new Date(Date.now() - 3_600_000));
  return file;
}

/** Writes an executable `/bin/sh` hook script (mode 0755 unless given). */
export async function writeHook(dir: string, name: string, body: string, mode = 0o755): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, mode);
  return file;
}

/** A pino logger writing into memory; `lines()` returns the parsed JSON log lines so far. */
export function memoryLogger(level: "trace" | "debug" | "info" = "debug"): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const logger = pino({ level, formatters: { level: (label) => ({ level: label }) } }, sink);
  return {
    logger,
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/**
 * A controller configuration for temp directories: fast, loopback, no grace unless asked. The
 * liveness is the product's default (`daemon`), with the daemon's lock beside the machines directory
 * as on a real host (`<root>/run/daemon.lock`, absent unless a test starts a stand-in daemon).
 */
export function testConfig(machinesDir: string, hooksDir: string, overrides: Partial<ControllerConfig> = {}): ControllerConfig {
  return {
    ...defaultConfig(),
    machinesDir,
    hooksDir,
    daemonLock: defaultDaemonLock(machinesDir),
    daemonPollIntervalMs: 50,
    listen: "127.0.0.1:0",
    startupGraceMs: 0,
    hookTimeoutMs: 10_000,
    shutdownTimeoutMs: 10_000,
    ...overrides,
  };
}

/**
 * Replaces `file` with `text` the way arcbox does (a temp file renamed over it), so that no reader
 * ever sees it empty or half-written; with `mtime` as its modification time when given.
 */
export async function replaceFile(file: string, text: string, mtime?: Date): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, text, { mode: 0o644 });
  if (mtime) await utimes(temp, mtime, mtime);
  await rename(temp, file);
}
