// The physical limit of noticing a daemon's death: a process blocked in flock(2) on the daemon's lock
// file, which the kernel wakes the instant the holder dies. It takes a shared lock, drops it at once
// (so it holds nothing a controller's probe could mistake for a live daemon), writes `released` and exits.
//   node bench/lib/children/lock-waiter.mjs LOCK_PATH
import { openSync, writeSync } from "node:fs";
import koffi from "koffi";

const libc = koffi.load(process.platform === "darwin" ? "libSystem.B.dylib" : "libc.so.6");
const flock = libc.func("int flock(int, int)");
const LOCK_SH = 1;
const LOCK_UN = 8;

const fd = openSync(process.argv[2], "r");
writeSync(1, "waiting\n");
if (flock(fd, LOCK_SH) !== 0) {
  writeSync(1, "error\n");
  process.exit(1);
}
flock(fd, LOCK_UN);
writeSync(1, "released\n");
