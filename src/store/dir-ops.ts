/**
 * File operations relative to a directory opened as a descriptor, as openat(2) does them: a name is
 * looked up in the directory the descriptor refers to, whatever has happened since to the path that
 * led there. So swapping a machine directory for a symlink while the store works in it cannot send a
 * read or a write anywhere else.
 *
 * Node.js has no openat. Three ways to get its effect, chosen at run time:
 * - `proc`: paths `/proc/self/fd/<fd>/<name>` (Linux): the kernel resolves `<fd>` to the open directory
 *   itself, not to a path, and looks `<name>` up in it;
 * - `devfd`: the same through `/dev/fd/<fd>/<name>` (where the platform resolves it so);
 * - `syscall`: openat, renameat and unlinkat themselves, called through the C library binding.
 * The first that works here is used. Exchanging two names (renameat2 RENAME_EXCHANGE on Linux,
 * renameatx_np RENAME_SWAP on macOS) and renaming without replacing always go through the binding.
 *
 * Every call is made off the main thread (libuv's thread pool; koffi's workers for the calls through
 * the binding), since a machine directory may lie on a mount that stops answering: the main thread
 * must go on serving health checks and other machines meanwhile (the store's deadlines say when to
 * stop waiting). The one exception is `openat` in the `syscall` way, which the binding cannot call
 * off the main thread (it is variadic); where `/proc/self/fd` or `/dev/fd` works it is never used.
 */
import * as fs from "node:fs";
import { constants as osConstants } from "node:os";
import { promisify } from "node:util";
import { libc, systemCallError } from "../host/libc.js";

/** How names inside an opened directory are reached (see the module comment). */
export type DirAccessKind = "proc" | "devfd" | "syscall";
export const DIR_ACCESS_KINDS: readonly DirAccessKind[] = ["proc", "devfd", "syscall"];

/**
 * `replace`: rename(2). `noreplace`: fails with EEXIST when the target exists. `exchange`: swaps the
 * two names atomically (both must exist). The last two reject with EINVAL, ENOTSUP or ENOSYS where the
 * file system or platform cannot do them (see {@link isUnsupported}).
 */
export type RenameMode = "replace" | "noreplace" | "exchange";

/**
 * The file operations of the store, every one relative to an opened directory (`dir`) where it names
 * a file. Injectable, so that tests can make any one of them fail.
 */
export interface DurableFsOps {
  readonly access: DirAccessKind;
  /** Opens a directory for the `dir` arguments below; never through a symlink (ENOTDIR or ELOOP). */
  openDirectory(path: string): Promise<number>;
  openAt(dir: number, name: string, flags: number, mode?: number): Promise<number>;
  /**
   * lstat of `name` in `dir`: a symlink is never followed (it is reported as one, or, where names are
   * reached through system calls, fails with ELOOP).
   */
  statAt(dir: number, name: string): Promise<fs.BigIntStats>;
  /** The entries of `dir`; `path` is where it was opened (named in errors). */
  readDir(dir: number, path: string): Promise<fs.Dirent[]>;
  read(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  write(fd: number, data: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  fstat(fd: number): Promise<fs.BigIntStats>;
  fchmod(fd: number, mode: number): Promise<void>;
  fchown(fd: number, uid: number, gid: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
  renameAt(dir: number, from: string, to: string, mode: RenameMode): Promise<void>;
  unlinkAt(dir: number, name: string): Promise<void>;
  rmdirAt(dir: number, name: string): Promise<void>;
}

/** True for the errors of a `noreplace` or `exchange` rename that this file system or platform cannot do. */
export function isUnsupported(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "EINVAL" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENOSYS";
}

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
const DIRECTORY_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

/** Node's callback-style calls as promises: they run in libuv's thread pool and hand back plain descriptors. */
const call = {
  open: promisify(fs.open),
  read: promisify(fs.read),
  write: promisify(fs.write),
  fstat: promisify(fs.fstat),
  lstat: promisify(fs.lstat),
  fchmod: promisify(fs.fchmod),
  fchown: promisify(fs.fchown),
  fsync: promisify(fs.fsync),
  close: promisify(fs.close),
};

/** The operations on descriptors, the same whatever the way names are reached. */
const descriptorOps = {
  openDirectory: (path: string) => call.open(path, DIRECTORY_FLAGS),
  read: async (fd: number, buffer: Uint8Array, offset: number, length: number, position: number) =>
    (await call.read(fd, buffer, offset, length, position)).bytesRead,
  write: async (fd: number, data: Uint8Array, offset: number, length: number, position: number) =>
    (await call.write(fd, data, offset, length, position)).bytesWritten,
  fstat: (fd: number) => call.fstat(fd, { bigint: true }),
  fchmod: (fd: number, mode: number) => call.fchmod(fd, mode),
  fchown: (fd: number, uid: number, gid: number) => call.fchown(fd, uid, gid),
  fsync: (fd: number) => call.fsync(fd),
  close: (fd: number) => call.close(fd),
};

/** Names reached as `<root>/<fd>/<name>`. */
function fdPathOps(access: "proc" | "devfd", root: string): DurableFsOps {
  const at = (dir: number, name: string) => `${root}/${dir}/${name}`;
  return {
    access,
    ...descriptorOps,
    openAt: (dir, name, flags, mode) => call.open(at(dir, name), flags, mode),
    statAt: (dir, name) => call.lstat(at(dir, name), { bigint: true }),
    readDir: (dir) => fs.promises.readdir(`${root}/${dir}`, { withFileTypes: true }),
    renameAt: async (dir, from, to, mode) => {
      if (mode === "replace") await fs.promises.rename(at(dir, from), at(dir, to));
      else await renameSpecial(dir, from, to, mode);
    },
    unlinkAt: (dir, name) => fs.promises.unlink(at(dir, name)),
    rmdirAt: (dir, name) => fs.promises.rmdir(at(dir, name)),
  };
}

interface PlatformConstants {
  O_CLOEXEC: number;
  AT_REMOVEDIR: number;
  RENAME_NOREPLACE: number;
  RENAME_EXCHANGE: number;
}

/** Values from <fcntl.h> and <stdio.h>; Node.js does not export them. */
const PLATFORM: Partial<Record<NodeJS.Platform, PlatformConstants>> = {
  linux: { O_CLOEXEC: 0o2000000, AT_REMOVEDIR: 0x200, RENAME_NOREPLACE: 1, RENAME_EXCHANGE: 2 },
  darwin: { O_CLOEXEC: 0x1000000, AT_REMOVEDIR: 0x80, RENAME_NOREPLACE: 0x4 /* RENAME_EXCL */, RENAME_EXCHANGE: 0x2 /* RENAME_SWAP */ },
};

function platformConstants(): PlatformConstants {
  const values = PLATFORM[process.platform];
  if (!values) throw systemCallError(osConstants.errno.ENOSYS, `directory-relative calls on ${process.platform}`);
  return values;
}

type IntCall = (...args: unknown[]) => number;
/** A bound C function that can also be called on one of the binding's worker threads. */
type AsyncIntCall = IntCall & { async: (...args: unknown[]) => void };

/**
 * Calls `fn` with `args` on a worker thread of the binding, again while it fails with EINTR; rejects
 * with a Node-style system error on failure.
 */
async function checkedAsync(syscall: string, fn: AsyncIntCall, args: unknown[]): Promise<number> {
  const { errno } = libc();
  for (;;) {
    // errno is read in the completion callback itself, before any other call can change it.
    const { result, error } = await new Promise<{ result: number; error: number }>((resolve, reject) =>
      fn.async(...args, (failure: unknown, value: number) => (failure ? reject(failure) : resolve({ result: value, error: value < 0 ? errno() : 0 }))),
    );
    if (result >= 0) return result;
    if (error !== osConstants.errno.EINTR) throw systemCallError(error, syscall);
  }
}

/** Calls `fn` until it does not fail with EINTR; throws a Node-style system error on failure. */
function checked(syscall: string, fn: () => number): number {
  const { errno } = libc();
  for (;;) {
    const result = fn();
    if (result >= 0) return result;
    const error = errno();
    if (error !== osConstants.errno.EINTR) throw systemCallError(error, syscall);
  }
}

let boundRenameSpecial: ((dir: number, from: string, to: string, flags: number) => Promise<void>) | undefined;

/** A `noreplace` or `exchange` rename within `dir`: renameat2 (Linux) or renameatx_np (macOS), bound on first use. */
async function renameSpecial(dir: number, from: string, to: string, mode: "noreplace" | "exchange"): Promise<void> {
  const constants = platformConstants();
  if (!boundRenameSpecial) {
    const name = process.platform === "darwin" ? "renameatx_np" : "renameat2";
    let bound: AsyncIntCall;
    try {
      bound = libc().lib.func(`int ${name}(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)`) as AsyncIntCall;
    } catch {
      // An old C library without the call: the caller falls back to a plain rename.
      throw systemCallError(osConstants.errno.ENOSYS, name);
    }
    boundRenameSpecial = async (d, f, t, flags) => void (await checkedAsync(name, bound, [d, f, d, t, flags]));
  }
  await boundRenameSpecial!(dir, from, to, mode === "exchange" ? constants.RENAME_EXCHANGE : constants.RENAME_NOREPLACE);
}

/** openat, renameat and unlinkat themselves. */
function syscallOps(): DurableFsOps {
  const constants = platformConstants();
  const { lib } = libc();
  const openat = lib.func("int openat(int dirfd, const char *path, int flags, ...)") as IntCall;
  const renameat = lib.func("int renameat(int fromfd, const char *from, int tofd, const char *to)") as AsyncIntCall;
  const unlinkat = lib.func("int unlinkat(int dirfd, const char *path, int flags)") as AsyncIntCall;
  return {
    access: "syscall",
    ...descriptorOps,
    openAt: async (dir, name, flags, mode = 0) =>
      checked("openat", () => openat(dir, name, flags | constants.O_CLOEXEC, "int", mode)),
    statAt: async (dir, name) => {
      // No fstatat binding: open without following (a symlink fails with ELOOP), fstat, close.
      const fd = checked("openat", () => openat(dir, name, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | constants.O_CLOEXEC, "int", 0));
      try {
        return await call.fstat(fd, { bigint: true });
      } finally {
        await call.close(fd);
      }
    },
    readDir: async (dir, path) => {
      // No fdopendir here: list by path, and make sure the path still led to this directory
      // throughout. What is then done with the names goes through the descriptor anyway.
      const before = await call.fstat(dir, { bigint: true });
      const entries = await fs.promises.readdir(path, { withFileTypes: true });
      const after = await call.lstat(path, { bigint: true });
      if (after.dev !== before.dev || after.ino !== before.ino) {
        throw Object.assign(new Error(`ESTALE: ${path} was replaced while it was listed, readdir`), { code: "ESTALE", syscall: "readdir" });
      }
      return entries;
    },
    renameAt: async (dir, from, to, mode) => {
      if (mode === "replace") await checkedAsync("renameat", renameat, [dir, from, dir, to]);
      else await renameSpecial(dir, from, to, mode);
    },
    unlinkAt: async (dir, name) => void (await checkedAsync("unlinkat", unlinkat, [dir, name, 0])),
    rmdirAt: async (dir, name) => void (await checkedAsync("unlinkat", unlinkat, [dir, name, constants.AT_REMOVEDIR])),
  };
}

const FD_ROOTS: Record<"proc" | "devfd", string> = { proc: "/proc/self/fd", devfd: "/dev/fd" };

/**
 * Whether `<root>/<fd>/.` is the directory `fd` refers to on this system (same device and inode).
 * False when the lookup fails, as it does where such paths name the descriptor but cannot be
 * looked through.
 */
function fdPathWorks(root: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync("/", DIRECTORY_FLAGS);
    const direct = fs.fstatSync(fd, { bigint: true });
    const through = fs.statSync(`${root}/${fd}/.`, { bigint: true });
    return through.isDirectory() && through.dev === direct.dev && through.ino === direct.ino;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Whether `kind` works on this system. */
export function dirAccessAvailable(kind: DirAccessKind): boolean {
  if (kind !== "syscall") return fdPathWorks(FD_ROOTS[kind]);
  try {
    syscallOps();
    return true;
  } catch {
    return false;
  }
}

/**
 * The store's file operations reaching names through `kind`. Throws when `kind` does not work here
 * (see {@link dirAccessAvailable}).
 */
export function fsOpsFor(kind: DirAccessKind): DurableFsOps {
  if (kind === "syscall") return syscallOps();
  if (!fdPathWorks(FD_ROOTS[kind])) {
    throw new Error(`${FD_ROOTS[kind]}/<fd>/<name> does not reach into an open directory on this system`);
  }
  return fdPathOps(kind, FD_ROOTS[kind]);
}

let detected: DurableFsOps | undefined;

/**
 * The operations for this system: the first of `proc`, `devfd` and `syscall` that works, chosen once.
 * Throws when none does (then nothing could be written safely).
 */
export function defaultFsOps(): DurableFsOps {
  if (detected) return detected;
  for (const kind of DIR_ACCESS_KINDS) {
    if (dirAccessAvailable(kind)) return (detected = fsOpsFor(kind));
  }
  throw new Error(`no way to work relative to an open directory on ${process.platform}: neither /proc/self/fd, /dev/fd nor openat(2) is usable`);
}
