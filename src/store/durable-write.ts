/**
 * Atomic, durable replacement of a file: a crash at any instant leaves the old or the new content,
 * byte for byte. Temp file in the same directory (hidden, recognisably ours, created exclusively),
 * mode set with fchmod (umask-proof), write all, fsync, close, rename over the target, fsync the
 * directory. On failure the temp file is removed and the target is untouched.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { StoreIoError } from "./errors.js";

/** The low-level operations the writer uses; injectable so tests can make one of them fail. */
export interface DurableFsOps {
  open(path: string, flags: number, mode?: number): Promise<number>;
  write(fd: number, data: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  fchmod(fd: number, mode: number): Promise<void>;
  fchown(fd: number, uid: number, gid: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

const writeAsync = promisify(fs.write);

/** The real file system. */
export const nodeFsOps: DurableFsOps = {
  open: promisify(fs.open) as DurableFsOps["open"],
  write: async (fd, data, offset, length, position) =>
    (await writeAsync(fd, data, offset, length, position)).bytesWritten,
  fchmod: promisify(fs.fchmod),
  fchown: promisify(fs.fchown),
  fsync: promisify(fs.fsync),
  close: promisify(fs.close),
  rename: promisify(fs.rename),
  unlink: promisify(fs.unlink),
};

const TEMP_MARKER = ".arcbox-tmp-";
const TEMP_NAME = /^\..+\.arcbox-tmp-\d+-[0-9a-f]{12}$/;

/** True for names of this writer's temp files (`.config.toml.arcbox-tmp-<pid>-<12 hex>`). */
export function isTempFileName(name: string): boolean {
  return TEMP_NAME.test(name);
}

function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString("hex")}`);
}

export interface DurableWriteOptions {
  /** Permission bits of the new file (those of the file it replaces; 0o600 for a new one). */
  mode: number;
  /** Owner to give the new file (only applied when it differs from the process's own). */
  owner?: { uid: number; gid: number };
  fs?: DurableFsOps;
  /**
   * Runs after the temp file is durable and right before the rename; throwing aborts the write
   * (the temp file is removed and the error passed on as it is). Used for the conflict check.
   */
  beforeRename?: () => Promise<void>;
}

/**
 * Replaces `target` with `data` atomically and durably. Throws StoreIoError (naming the file, the
 * step and the errno) when any step fails; then the target still has its old content and no
 * temp file is left. A failure of the final directory fsync is reported too, although the new
 * content is then already in place.
 */
export async function writeFileDurably(target: string, data: Uint8Array, options: DurableWriteOptions): Promise<void> {
  const ops = options.fs ?? nodeFsOps;
  const temp = tempPathFor(target);
  const step = (operation: string) => `${operation} (temp file ${basename(temp)})`;
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = await ops.open(temp, flags, 0o600);
  } catch (error) {
    throw new StoreIoError(target, step("create"), error);
  }
  let open = true;
  const discard = async () => {
    if (open) await ops.close(fd).catch(() => undefined);
    open = false;
    await ops.unlink(temp).catch(() => undefined);
  };
  let operation = "fchmod";
  try {
    await ops.fchmod(fd, options.mode);
    const owner = options.owner;
    if (owner && (owner.uid !== process.geteuid?.() || owner.gid !== process.getegid?.())) {
      operation = "fchown";
      await ops.fchown(fd, owner.uid, owner.gid);
    }
    operation = "write";
    for (let offset = 0; offset < data.length; ) {
      offset += await ops.write(fd, data, offset, data.length - offset, offset);
    }
    operation = "fsync";
    await ops.fsync(fd);
    operation = "close";
    open = false;
    await ops.close(fd);
  } catch (error) {
    await discard();
    throw new StoreIoError(target, step(operation), error);
  }
  try {
    await options.beforeRename?.();
  } catch (error) {
    await discard();
    throw error;
  }
  try {
    await ops.rename(temp, target);
  } catch (error) {
    await discard();
    throw new StoreIoError(target, step("rename"), error);
  }
  await fsyncDirectory(dirname(target), ops);
}

async function fsyncDirectory(dir: string, ops: DurableFsOps): Promise<void> {
  let fd: number;
  try {
    fd = await ops.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (error) {
    throw new StoreIoError(dir, "open directory for fsync", error);
  }
  try {
    await ops.fsync(fd);
  } catch (error) {
    throw new StoreIoError(dir, "fsync directory", error);
  } finally {
    await ops.close(fd).catch(() => undefined);
  }
}
