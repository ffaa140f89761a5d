/**
 * The C library through koffi, for the few system calls Node.js does not expose (flock, openat,
 * renameat2 …). koffi's prebuilt binaries ship as per-platform npm packages (linux and darwin, x64 and
 * arm64), so installing needs no compiler. Loaded on first use, so code that never needs it never
 * pays for it.
 */
import { createRequire } from "node:module";
import { constants } from "node:os";
import { getSystemErrorMap } from "node:util";

type Koffi = typeof import("koffi");

export interface LibC {
  koffi: Koffi;
  /** The loaded C library (`libc.so.6` on Linux, `libSystem` on macOS). */
  lib: ReturnType<Koffi["load"]>;
  /** `errno` after the last call made through koffi on this thread. */
  errno(): number;
}

let loaded: LibC | undefined;

/** The C library of this platform. Throws when koffi or the library cannot be loaded. */
export function libc(): LibC {
  if (loaded) return loaded;
  // koffi is CommonJS.
  const koffi = createRequire(import.meta.url)("koffi") as Koffi;
  const lib = koffi.load(process.platform === "darwin" ? "libSystem.B.dylib" : "libc.so.6");
  loaded = { koffi, lib, errno: () => koffi.errno() };
  return loaded;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

/** The symbolic name of an errno value (`ENOENT` for 2), or `errno N` when unknown. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/**
 * A failed system call made through koffi, shaped like Node's own system errors: `code` is the errno
 * name, `errno` is negative (as libuv reports it) and the message reads `ENOENT: no such file or
 * directory, renameat2`.
 */
export function systemCallError(errno: number, syscall: string): NodeJS.ErrnoException {
  const code = errnoName(errno);
  const description = getSystemErrorMap().get(-errno)?.[1] ?? "system error";
  return Object.assign(new Error(`${code}: ${description}, ${syscall}`), { code, errno: -errno, syscall });
}
