/**
 * Atomic, durable replacement of one file in an opened directory: a crash at any instant leaves the
 * old or the new content, byte for byte. Temp file in the same directory (hidden, recognisably ours,
 * created exclusively), mode set with fchmod (umask-proof), write all, fsync, close, then the commit,
 * then fsync of the directory. Every step goes through the directory's descriptor (dir-ops.ts), so
 * nothing lands outside it even if its path is swapped for a symlink meanwhile.
 *
 * The commit never overwrites a file that someone else wrote since it was read:
 * - a new file is renamed into place only if the name is still free (RENAME_NOREPLACE);
 * - a replacement first compares the file's identity (inode, size, times) with the read's, then
 *   swaps the two names atomically (RENAME_EXCHANGE) and looks at what came out: the very file that
 *   was read (same inode, size and modification time), or else the same content. If another
 *   writer's file had landed in between, it is swapped back.
 * Where the file system cannot do either rename, the content is compared right before a plain rename;
 * a write landing in the microseconds between the two can then be lost.
 */
import { randomBytes } from "node:crypto";
import { constants, type BigIntStats } from "node:fs";
import { join } from "node:path";
import { identityOf, readOpenedConfig, sameIdentity, CONFIG_READ_FLAGS, type FileIdentity, type Revision } from "./config-file.js";
import { isUnsupported, type DurableFsOps } from "./dir-ops.js";
import { ConflictError, StoreError, StoreIoError, errnoCode } from "./errors.js";

export { defaultFsOps, type DurableFsOps } from "./dir-ops.js";

const TEMP_MARKER = ".arcbox-tmp-";
const TEMP_NAME = /^\..+\.arcbox-tmp-\d+-[0-9a-f]{12}$/;

/** True for names of this writer's temp files (`.config.toml.arcbox-tmp-<pid>-<12 hex>`). */
export function isTempFileName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/** True for names of temp files this process made (its writes may still be in flight). */
export function isOwnTempFileName(name: string): boolean {
  return isTempFileName(name) && name.includes(`${TEMP_MARKER}${process.pid}-`);
}

/** A random start, then a counter: unique within this process (O_EXCL guards against the rest). */
let tempCounter = randomBytes(6).readUIntBE(0, 6);

function tempNameFor(name: string): string {
  tempCounter = (tempCounter + 1) % 2 ** 48;
  return `.${name}${TEMP_MARKER}${process.pid}-${tempCounter.toString(16).padStart(12, "0")}`;
}

/** A directory open as a descriptor, and the path it was opened at (for messages). */
export interface OpenDirectory {
  fd: number;
  path: string;
}

/**
 * What must still hold when the new file is put in place: no file by that name (`absent`), or the
 * very file that was read (`basis`: its identity and the revision of its content).
 */
export type WritePrecondition = { absent: true } | { basis: { revision: Revision; identity: FileIdentity } };

export interface DurableWriteOptions {
  /** Permission bits of the new file (those of the file it replaces; 0o600 for a new one). */
  mode: number;
  /** Owner to give the new file (only applied when it differs from the process's own). */
  owner?: { uid: number; gid: number };
  fs: DurableFsOps;
  precondition: WritePrecondition;
}

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** How often a swapped-out write of someone else is swapped back before giving up (each round takes microseconds). */
const MAX_RESTORE_ROUNDS = 8;

/**
 * Replaces `name` in `dir` with `data`, atomically and durably, if `precondition` still holds.
 * Throws ConflictError when it does not, StoreIoError (naming the file, the step and the errno) when
 * a step fails, including the final fsync of the directory. Either way the file then has the content
 * it had before (or another writer's newer one) and no temp file is left — except where the file
 * system cannot swap two names (see the module comment): there a failed directory fsync comes after
 * the rename and leaves the new content in place.
 */
export async function writeFileDurably(dir: OpenDirectory, name: string, data: Uint8Array, options: DurableWriteOptions): Promise<void> {
  const ops = options.fs;
  const target = join(dir.path, name);
  const temp = tempNameFor(name);
  const step = (operation: string) => `${operation} (temp file ${temp})`;
  let fd: number;
  try {
    fd = await ops.openAt(dir.fd, temp, CREATE_FLAGS, 0o600);
  } catch (error) {
    throw new StoreIoError(target, step("create"), error);
  }
  let open = true;
  const commit = new Commit(ops, dir, name, target, temp, step);
  const discard = async () => {
    if (open) await ops.close(fd).catch(() => undefined);
    open = false;
    if (!commit.tempHoldsForeignFile) await ops.unlinkAt(dir.fd, temp).catch(() => undefined);
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
    operation = "fstat";
    commit.ours = (await ops.fstat(fd)).ino;
    operation = "close";
    open = false;
    await ops.close(fd);
  } catch (error) {
    await discard();
    throw new StoreIoError(target, step(operation), error);
  }
  try {
    await commit.put(options.precondition);
  } catch (error) {
    await discard();
    throw error;
  }
  try {
    await ops.fsync(dir.fd);
  } catch (error) {
    await commit.undo().catch(() => undefined);
    await discard();
    throw new StoreIoError(dir.path, "fsync directory", error);
  }
  await commit.finish();
}

/**
 * Putting the finished temp file in place under the precondition (`put`), taking that back
 * (`undo`), or, once the directory is synced, removing the file it replaced (`finish`).
 */
class Commit {
  /** The inode of our new file. */
  ours = -1n;
  /** Set while the temp name holds someone else's file (then it must not simply be deleted). */
  tempHoldsForeignFile = false;
  private how: "created" | "exchanged" | "renamed" | undefined;

  constructor(
    private readonly ops: DurableFsOps,
    private readonly dir: OpenDirectory,
    private readonly name: string,
    private readonly target: string,
    private readonly temp: string,
    private readonly step: (operation: string) => string,
  ) {}

  async put(precondition: WritePrecondition): Promise<void> {
    if ("absent" in precondition) return this.create();
    const { revision, identity } = precondition.basis;
    // A file changed long ago is noticed here, without ever being swapped out.
    const current = await this.identityAt(this.name, "check");
    if (current === "missing") throw new ConflictError(this.target, "it was removed meanwhile");
    if (current === "other" || !sameIdentity(current, identity)) throw new ConflictError(this.target, "its content changed since it was read");
    try {
      await this.ops.renameAt(this.dir.fd, this.temp, this.name, "exchange");
    } catch (error) {
      if (errnoCode(error) === "ENOENT") throw new ConflictError(this.target, "it was removed meanwhile");
      if (!isUnsupported(error)) throw new StoreIoError(this.target, this.step("exchange"), error);
      return this.replaceChecked(revision);
    }
    // `name` is ours now; `temp` holds what was there an instant ago.
    this.how = "exchanged";
    this.tempHoldsForeignFile = true;
    let unchanged: boolean;
    try {
      // A rename updates the file's ctime, so ctime is left out; a write changes its mtime or size.
      const out = await this.identityAt(this.temp, "look at what the swap replaced");
      unchanged = (typeof out !== "string" && out.dev === identity.dev && out.ino === identity.ino && out.size === identity.size && out.mtimeNs === identity.mtimeNs) || (await this.revisionAt(this.temp)) === revision;
    } catch (error) {
      // Cannot tell what came out: put it back, as for a conflict.
      await this.restore().catch(() => undefined);
      throw error;
    }
    if (!unchanged) {
      await this.restore();
      throw new ConflictError(this.target, "its content changed since it was read");
    }
  }

  /** Takes back what `put` did, where that is possible. */
  async undo(): Promise<void> {
    if (this.how === "exchanged") await this.restore();
    else if (this.how === "created") await this.withdraw();
  }

  /** After the directory fsync: removes the file that was replaced. */
  async finish(): Promise<void> {
    if (this.how !== "exchanged") return;
    try {
      await this.ops.unlinkAt(this.dir.fd, this.temp);
    } catch (error) {
      throw new StoreIoError(this.target, this.step("remove the replaced file"), error);
    }
    this.tempHoldsForeignFile = false;
  }

  /** A new file: in place only if the name is still free. */
  private async create(): Promise<void> {
    try {
      await this.ops.renameAt(this.dir.fd, this.temp, this.name, "noreplace");
      this.how = "created";
      return;
    } catch (error) {
      if (errnoCode(error) === "EEXIST") throw new ConflictError(this.target, "it was created meanwhile");
      if (!isUnsupported(error)) throw new StoreIoError(this.target, this.step("rename"), error);
    }
    if ((await this.identityAt(this.name)) !== "missing") throw new ConflictError(this.target, "it was created meanwhile");
    await this.rename();
  }

  /** Without an atomic exchange: compare the content, then rename over it. */
  private async replaceChecked(revision: Revision): Promise<void> {
    const current = await this.revisionAt(this.name);
    if (current === "missing") throw new ConflictError(this.target, "it was removed meanwhile");
    if (current !== revision) throw new ConflictError(this.target, "its content changed since it was read");
    await this.rename();
  }

  private async rename(): Promise<void> {
    try {
      await this.ops.renameAt(this.dir.fd, this.temp, this.name, "replace");
      this.how = "renamed";
    } catch (error) {
      throw new StoreIoError(this.target, this.step("rename"), error);
    }
  }

  /**
   * Another writer's file (or the one that was read) is at `temp`: swap it back. If yet another
   * write landed on `name` meanwhile, the swap brings that one out, so swap again, until what comes
   * out is what the previous swap put in; then `name` holds the newest of the others' writes, and
   * `temp` ours or an older one, which the caller removes.
   */
  private async restore(): Promise<void> {
    // An inode that cannot be looked at counts as "not the one placed", except right after a swap:
    // then the swap most likely brought back what it put in, and swapping again would undo it.
    let placed: bigint | "other" = this.ours;
    let restoring = await this.inodeAt(this.temp).catch(() => "other" as const);
    for (let round = 0; round < MAX_RESTORE_ROUNDS; round++) {
      try {
        await this.ops.renameAt(this.dir.fd, this.temp, this.name, "exchange");
      } catch (error) {
        throw new StoreIoError(this.target, this.step("swap back"), error);
      }
      const out = await this.inodeAt(this.temp).catch(() => "unknown" as const);
      if (out === "unknown" || (typeof out === "bigint" && out === placed)) {
        this.how = undefined;
        this.tempHoldsForeignFile = false;
        return;
      }
      placed = restoring === "missing" ? "other" : restoring;
      restoring = out;
    }
    throw new StoreIoError(this.target, this.step("swap back"), new Error(`the file kept changing; ${this.temp} may hold another writer's content`));
  }

  /** Takes a newly created file out of place again (renaming it back to `temp`). */
  private async withdraw(): Promise<void> {
    try {
      await this.ops.renameAt(this.dir.fd, this.name, this.temp, "noreplace");
    } catch (error) {
      throw new StoreIoError(this.target, this.step("take back"), error);
    }
    this.how = undefined;
    if ((await this.inodeAt(this.temp)) === this.ours) return;
    // Someone else's file had replaced ours meanwhile: it goes back (unless yet another is there).
    await this.ops.renameAt(this.dir.fd, this.temp, this.name, "noreplace").catch(() => undefined);
  }

  /** Opens `name` for reading; `missing` or `other` (a symlink, a socket …) when that is what it is. */
  private async openIn(name: string): Promise<number | "missing" | "other"> {
    try {
      return await this.ops.openAt(this.dir.fd, name, CONFIG_READ_FLAGS);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") return "missing";
      if (code === "ELOOP" || code === "ENXIO") return "other";
      throw new StoreIoError(this.target, name === this.name ? "open" : this.step("open"), error);
    }
  }

  /** The identity of `name` in the directory; `other` when it is not a regular file. `operation` names a failure. */
  private async identityAt(name: string, operation = "look at"): Promise<FileIdentity | "missing" | "other"> {
    let stat: BigIntStats;
    try {
      stat = await this.ops.statAt(this.dir.fd, name);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") return "missing";
      if (code === "ELOOP" || code === "ENXIO") return "other";
      throw new StoreIoError(this.target, name === this.name ? operation : this.step(operation), error);
    }
    return stat.isFile() ? identityOf(stat) : "other";
  }

  private async inodeAt(name: string): Promise<bigint | "missing" | "other"> {
    const identity = await this.identityAt(name);
    return typeof identity === "string" ? identity : identity.ino;
  }

  /** The revision of the content of `name`; `other` when it is not a regular file of at most 1 MiB. */
  private async revisionAt(name: string): Promise<Revision | "missing" | "other"> {
    const fd = await this.openIn(name);
    if (typeof fd === "string") return fd;
    try {
      return (await readOpenedConfig(this.ops, fd, this.target)).revision;
    } catch (error) {
      if (error instanceof StoreIoError || !(error instanceof StoreError)) throw error;
      return "other";
    } finally {
      await this.ops.close(fd).catch(() => undefined);
    }
  }
}
