/**
 * The store's file operations with deadlines (docs/design.md#hung-mounts): every call names the
 * machine directory it works in, and runs under an OverdueCalls keyed by that directory. A machine
 * whose directory stops answering fails with a clear error after the deadline; until its overdue
 * call returns, further calls on it fail at once; no other machine is touched by it.
 */
import { OverdueCalls } from "../platform/deadline.js";
import type { DurableFsOps } from "./dir-ops.js";

/** `ops`, each call run through `calls` under the key of the machine directory it works in. */
export function guardedFsOps(ops: DurableFsOps, calls: OverdueCalls): DurableFsOps {
  /** The directory each open descriptor belongs to (a directory's own path, or the one a file was opened in). */
  const directoryOf = new Map<number, string>();
  const keyOf = (fd: number) => directoryOf.get(fd) ?? `fd ${fd}`;
  const closeLate = (fd: number) => void ops.close(fd).catch(() => undefined);
  const on = <T>(fd: number, what: string, call: () => Promise<T>) => calls.run(keyOf(fd), `${what} in ${keyOf(fd)}`, call);
  const opened = async (key: string, what: string, open: () => Promise<number>) => {
    const fd = await calls.run(key, what, open, closeLate);
    directoryOf.set(fd, key);
    return fd;
  };
  return {
    access: ops.access,
    openDirectory: (path) => opened(path, `open of ${path}`, () => ops.openDirectory(path)),
    openAt: (dir, name, flags, mode) => opened(keyOf(dir), `open of ${name} in ${keyOf(dir)}`, () => ops.openAt(dir, name, flags, mode)),
    statAt: (dir, name) => on(dir, `lstat of ${name}`, () => ops.statAt(dir, name)),
    readDir: (dir, path) => on(dir, "readdir", () => ops.readDir(dir, path)),
    read: (fd, buffer, offset, length, position) => on(fd, "read", () => ops.read(fd, buffer, offset, length, position)),
    write: (fd, data, offset, length, position) => on(fd, "write", () => ops.write(fd, data, offset, length, position)),
    fstat: (fd) => on(fd, "fstat", () => ops.fstat(fd)),
    fchmod: (fd, mode) => on(fd, "fchmod", () => ops.fchmod(fd, mode)),
    fchown: (fd, uid, gid) => on(fd, "fchown", () => ops.fchown(fd, uid, gid)),
    fsync: (fd) => on(fd, "fsync", () => ops.fsync(fd)),
    renameAt: (dir, from, to, mode) => on(dir, `rename of ${from}`, () => ops.renameAt(dir, from, to, mode)),
    unlinkAt: (dir, name) => on(dir, `unlink of ${name}`, () => ops.unlinkAt(dir, name)),
    rmdirAt: (dir, name) => on(dir, `rmdir of ${name}`, () => ops.rmdirAt(dir, name)),
    // Never refused: a descriptor must be given back even while its directory is overdue.
    close: (fd) => {
      const key = keyOf(fd);
      directoryOf.delete(fd);
      return new OverdueCalls({ deadlineMs: calls.deadlineMs }).run(key, `close in ${key}`, () => ops.close(fd));
    },
  };
}
