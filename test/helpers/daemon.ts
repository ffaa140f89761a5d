/**
 * A stand-in for arcbox-daemon's lock: a real child process that does what the daemon does with
 * `<arcbox-dir>/run/daemon.lock` (create `run/`, open the file read-write, take an exclusive
 * non-blocking flock, write its pid) and then holds it until it dies. It calls flock(2) through its
 * own koffi binding, independent of the controller's code.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const KOFFI = fileURLToPath(new URL("../../node_modules/koffi/index.js", import.meta.url));

const DAEMON_SCRIPT = `
const fs = require("node:fs");
const path = require("node:path");
const koffi = require(process.argv[1]);
const lockPath = process.argv[2];
const libc = koffi.load(process.platform === "darwin" ? "libSystem.B.dylib" : "libc.so.6");
const flock = libc.func("int flock(int, int)");
fs.mkdirSync(path.dirname(lockPath), { recursive: true });
const fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
if (flock(fd, 2 | 4) !== 0) { process.stdout.write("busy\\n"); process.exit(3); }
fs.ftruncateSync(fd, 0);
fs.writeSync(fd, process.pid + "\\n", 0);
// A probe that releases the lock would show up here: the daemon checks it still holds it.
process.on("SIGUSR1", () => {
  const probe = fs.openSync(lockPath, "r");
  const stillOurs = flock(probe, 1 | 4) !== 0;
  fs.closeSync(probe);
  process.stdout.write((stillOurs ? "held" : "lost") + "\\n");
});
process.stdout.write("locked\\n");
setInterval(() => {}, 1 << 30);
`;

export interface StandInDaemon {
  child: ChildProcess;
  pid: number;
  lockPath: string;
  /** Asks the daemon whether it still holds its lock (another open of the file cannot get a shared lock). */
  stillHoldsLock(): Promise<boolean>;
  /** SIGKILL, then waits for the exit: the kernel releases the flock. */
  kill(): Promise<void>;
}

/** Starts a stand-in daemon holding `lockPath`; resolves once it holds the lock. */
export async function startStandInDaemon(lockPath: string): Promise<StandInDaemon> {
  const child = spawn(process.execPath, ["-e", DAEMON_SCRIPT, KOFFI, lockPath], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  const pending: ((line: string) => void)[] = [];
  lines.on("line", (line) => pending.shift()?.(line));
  const nextLine = () => new Promise<string>((resolve) => pending.push(resolve));
  const first = await Promise.race([nextLine(), once(child, "exit").then(([code]) => `exit ${String(code)}`)]);
  if (first !== "locked") throw new Error(`stand-in daemon did not take ${lockPath}: ${first}`);
  const exited = once(child, "exit");
  return {
    child,
    pid: child.pid!,
    lockPath,
    async stillHoldsLock() {
      const answer = nextLine();
      child.kill("SIGUSR1");
      return (await answer) === "held";
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
