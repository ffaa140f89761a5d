/**
 * Reading one config file safely: never through a symlink, never blocking on a fifo, never more
 * than 1 MiB, UTF-8 checked with the position of the first bad byte.
 */
import { createHash } from "node:crypto";
import { constants, openSync, type BigIntStats } from "node:fs";
import { defaultFsOps, type DurableFsOps } from "./dir-ops.js";
import { InvalidConfigError, StoreError, StoreIoError, controllerRule, errnoCode } from "./errors.js";
import { validateMachineName } from "./names.js";
import { parseMachineConfig, type ParsedMachineConfig } from "./toml-codec.js";

/** Opaque token for one exact content of a config file (its SHA-256). */
export type Revision = string & { readonly __revision: unique symbol };

/** Largest config file the store reads. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Which file, in which state, a read saw: a write by rename changes `ino`, a write in place changes
 * `ctimeNs` (and usually `size` or `mtimeNs`). Compared before a rewrite, to notice cheaply that the
 * file changed; the content itself is compared afterwards (see durable-write.ts).
 */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** The bytes of a config file as read, with what a rewrite needs to keep (mode, owner). */
export interface ConfigSnapshot {
  path: string;
  bytes: Buffer;
  text: string;
  revision: Revision;
  mode: number;
  uid: number;
  gid: number;
  /** Last modification, ms since the epoch (from the same fstat as the bytes). */
  mtimeMs: number;
  identity: FileIdentity;
}

/** The revision of some file content. */
export function revisionOf(bytes: Uint8Array): Revision {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}` as Revision;
}

/** The identity fields of an fstat. */
export function identityOf(stat: BigIntStats): FileIdentity {
  return { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs };
}

/** True when two identities describe the same file in the same state. */
export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** Flags for opening a config file: O_NOFOLLOW refuses a symlink; O_NONBLOCK makes a fifo open at once (then fstat tells). */
export const CONFIG_READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * The store's error for a failed open of the config file at `path`: InvalidConfigError for a
 * symlink, a socket or device, or missing permission; StoreIoError otherwise (code ENOENT when it
 * does not exist).
 */
export function configOpenError(path: string, error: unknown): StoreError {
  const code = errnoCode(error);
  if (code === "ELOOP") return invalid(path, controllerRule("is a symbolic link; the store reads only regular files", "arcbox-core would load the file it leads to"));
  if (code === "ENXIO") return invalid(path, "is not a regular file (a socket or device; arcbox-core cannot load it either)");
  if (code === "EACCES" || code === "EPERM") return invalid(path, `cannot be read: permission denied (${code})`);
  return new StoreIoError(path, "open", error);
}

/** What {@link readOpenedConfig} returns: a snapshot without the decoded text. */
export type RawConfig = Omit<ConfigSnapshot, "text">;

/**
 * Reads the config file open as `fd` (the caller closes it). Throws InvalidConfigError when it is not
 * a regular file or is larger than 1 MiB, StoreIoError when a read fails.
 */
export async function readOpenedConfig(ops: DurableFsOps, fd: number, path: string): Promise<RawConfig> {
  let stat: BigIntStats;
  try {
    stat = await ops.fstat(fd);
  } catch (error) {
    throw new StoreIoError(path, "fstat", error);
  }
  // arcbox-core cannot read a directory, a socket or a device either; a fifo it would wait on for ever.
  if (stat.isFIFO()) throw invalid(path, controllerRule("is not a regular file (a fifo)", "arcbox-core's read would wait for a writer for ever"));
  if (!stat.isFile()) throw invalid(path, `is not a regular file (${fileKind(stat)}; arcbox-core cannot load it either)`);
  if (stat.size > MAX_CONFIG_BYTES) {
    throw invalid(path, controllerRule(`is ${stat.size} bytes; config files are limited to 1 MiB (${MAX_CONFIG_BYTES} bytes)`));
  }
  const bytes = await readBounded(ops, fd, path, Number(stat.size));
  return {
    path,
    bytes,
    revision: revisionOf(bytes),
    mode: Number(stat.mode) & 0o7777,
    uid: Number(stat.uid),
    gid: Number(stat.gid),
    mtimeMs: Number(stat.mtimeNs / 1_000_000n),
    identity: identityOf(stat),
  };
}

/**
 * Reads the config file `name` in the opened directory `dir` (`path` is its path, for messages).
 * Throws as {@link configOpenError} and {@link readOpenedConfig}.
 */
export async function readConfigAt(ops: DurableFsOps, dir: number, name: string, path: string): Promise<RawConfig> {
  let fd: number;
  try {
    fd = await ops.openAt(dir, name, CONFIG_READ_FLAGS);
  } catch (error) {
    throw configOpenError(path, error);
  }
  try {
    return await readOpenedConfig(ops, fd, path);
  } finally {
    await ops.close(fd).catch(() => undefined);
  }
}

/**
 * Reads the raw bytes of a config file at any path. Throws InvalidConfigError when it is a symlink,
 * not a regular file, unreadable for permissions or larger than 1 MiB; StoreIoError (code ENOENT when
 * it does not exist) for other failures.
 */
export async function readConfigBytes(path: string): Promise<RawConfig> {
  let fd: number;
  try {
    fd = openSync(path, CONFIG_READ_FLAGS);
  } catch (error) {
    throw configOpenError(path, error);
  }
  const ops = defaultFsOps();
  try {
    return await readOpenedConfig(ops, fd, path);
  } finally {
    await ops.close(fd).catch(() => undefined);
  }
}

async function readBounded(ops: DurableFsOps, fd: number, path: string, expectedSize: number): Promise<Buffer> {
  let buffer = Buffer.alloc(Math.min(expectedSize, MAX_CONFIG_BYTES) + 1);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      // The file grew since fstat: keep reading, but never past the limit.
      if (buffer.length > MAX_CONFIG_BYTES) {
        throw invalid(path, controllerRule(`is larger than 1 MiB (${MAX_CONFIG_BYTES} bytes)`));
      }
      const bigger = Buffer.alloc(Math.min(buffer.length * 2, MAX_CONFIG_BYTES + 1));
      buffer.copy(bigger, 0, 0, length);
      buffer = bigger;
    }
    let bytesRead: number;
    const wanted = buffer.length - length;
    try {
      bytesRead = await ops.read(fd, buffer, length, wanted, length);
    } catch (error) {
      throw new StoreIoError(path, "read", error);
    }
    length += bytesRead;
    // A regular file gives fewer bytes than asked only at its end: no second read to learn that.
    if (bytesRead < wanted) return buffer.subarray(0, length);
  }
}

function fileKind(stat: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (stat.isDirectory()) return "a directory";
  if (stat.isFIFO()) return "a fifo";
  if (stat.isSocket()) return "a socket";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "a device";
  return "not a file";
}

function invalid(path: string, reason: string, line?: number, column?: number): InvalidConfigError {
  return new InvalidConfigError(path, { line, column, reason });
}

/**
 * Decodes UTF-8 strictly (a BOM is kept as text, so rewrites keep it). Throws InvalidConfigError
 * at the line and column of the first byte that is not UTF-8.
 */
export function decodeUtf8(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    const offset = firstInvalidUtf8Offset(bytes);
    const before = new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes.subarray(0, offset));
    const lines = before.split("\n");
    const line = lines.length;
    const column = [...(lines[lines.length - 1] ?? "")].length + 1;
    const byte = bytes[offset] ?? 0;
    throw invalid(path, `not UTF-8: invalid byte 0x${byte.toString(16).padStart(2, "0")} at offset ${offset}`, line, column);
  }
}

/** Offset of the first byte that makes `bytes` invalid UTF-8 (streaming decode is monotonic in the prefix). */
function firstInvalidUtf8Offset(bytes: Uint8Array): number {
  const decodesAsPrefix = (n: number) => {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, n), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0;
  let hi = bytes.length;
  if (decodesAsPrefix(hi)) {
    // Only the end is bad: a truncated sequence. Point at its lead byte.
    let i = bytes.length - 1;
    while (i > 0 && ((bytes[i] ?? 0) & 0xc0) === 0x80) i--;
    return i;
  }
  while (lo < hi - 1) {
    const mid = (lo + hi) >> 1;
    if (decodesAsPrefix(mid)) lo = mid;
    else hi = mid;
  }
  // The prefix of hi bytes fails at byte hi-1. If that byte could start a character (ASCII or a
  // lead byte), the fault is the unfinished sequence before it: point at that sequence's lead byte.
  const culprit = bytes[hi - 1] ?? 0;
  if (culprit < 0x80 || (culprit >= 0xc2 && culprit <= 0xf4)) {
    let i = hi - 2;
    while (i > 0 && ((bytes[i] ?? 0) & 0xc0) === 0x80) i--;
    return Math.max(i, 0);
  }
  return hi - 1;
}

/** A config file read and validated. */
export interface MachineConfigFile extends ParsedMachineConfig {
  revision: Revision;
  text: string;
  snapshot: ConfigSnapshot;
}

/**
 * Reads and validates one config file at any path, with every bad-input check (symlink, not a
 * regular file, fifo, > 1 MiB, not UTF-8, TOML syntax, schema, and `name` equal to
 * `options.expectedName` when given). Read-only. Throws InvalidConfigError / InvalidNameError for
 * bad input, StoreIoError for I/O failures (code ENOENT when the file does not exist).
 */
export async function readMachineConfig(
  path: string,
  options: { expectedName?: string } = {},
): Promise<MachineConfigFile> {
  if (options.expectedName !== undefined) validateMachineName(options.expectedName, path);
  const raw = await readConfigBytes(path);
  const text = decodeUtf8(raw.bytes, path);
  const parsed = parseMachineConfig(text, path, options.expectedName);
  return { ...parsed, revision: raw.revision, text, snapshot: { ...raw, text } };
}
