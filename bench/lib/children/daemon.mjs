// A stand-in for arcbox-daemon's lock, as a child process: creates `run/`, opens the lock file
// read-write, takes an exclusive non-blocking flock (through its own koffi binding, nothing of the
// controller), writes its pid, says `locked` and holds the lock until it is killed.
//   node bench/lib/children/daemon.mjs LOCK_PATH
import { ftruncateSync, mkdirSync, openSync, writeSync, constants } from "node:fs";
import { dirname } from "node:path";
import koffi from "koffi";

const lockPath = process.argv[2];
const libc = koffi.load(process.platform === "darwin" ? "libSystem.B.dylib" : "libc.so.6");
const flock = libc.func("int flock(int, int)");
const LOCK_EX = 2;
const LOCK_NB = 4;

mkdirSync(dirname(lockPath), { recursive: true });
const fd = openSync(lockPath, constants.O_RDWR | constants.O_CREAT, 0o644);
if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
  process.stdout.write("busy\n");
  process.exit(3);
}
ftruncateSync(fd, 0);
writeSync(fd, `${process.pid}\n`, 0);
process.stdout.write("locked\n");
setInterval(() => {}, 1 << 30);
