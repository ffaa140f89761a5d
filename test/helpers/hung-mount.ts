/**
 * A real FUSE mount that never answers, like a FUSE daemon that hangs or an NFS server gone: a child
 * process opens /dev/fuse and mounts it with mount(2) (root only), then never reads a request, so
 * every access to the mount (even its first, the kernel's INIT) waits for ever. Killing the child
 * aborts the connection: calls waiting on it fail with ENOTCONN, as when a hung mount is torn down.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdir } from "node:fs/promises";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const KOFFI = fileURLToPath(new URL("../../node_modules/koffi/index.js", import.meta.url));

const MOUNT_SCRIPT = `
const fs = require("node:fs");
const koffi = require(process.argv[1]);
const libc = koffi.load("libc.so.6");
const mount = libc.func("int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)");
let fd;
try { fd = fs.openSync("/dev/fuse", "r+"); } catch (error) { process.stdout.write("failed: cannot open /dev/fuse: " + error.code + "\\n"); process.exit(1); }
// MS_NOSUID | MS_NODEV; the descriptor is never read, so no request is ever answered.
if (mount("arcbox-hung", process.argv[2], "fuse", 2 | 4, "fd=" + fd + ",rootmode=40000,user_id=0,group_id=0,allow_other") !== 0) {
  process.stdout.write("failed: mount(2) errno " + koffi.errno() + "\\n");
  process.exit(1);
}
process.stdout.write("mounted\\n");
setInterval(() => {}, 1 << 30);
`;

export interface HungMount {
  /** The mount point: every access to it (or below it) waits for ever. */
  dir: string;
  /** Aborts the mount's connection (waiting calls fail with ENOTCONN), as when its daemon dies. */
  abort(): Promise<void>;
  /** Detaches the mount and ends its holder; safe to call twice. */
  unmount(): Promise<void>;
}

/** Mounts a FUSE file system that never answers at `dir` (created if missing). Throws with the reason when it cannot (not root, no /dev/fuse). */
export async function mountHungFuse(dir: string): Promise<HungMount> {
  await mkdir(dir, { recursive: true });
  const holder: ChildProcess = spawn(process.execPath, ["-e", MOUNT_SCRIPT, KOFFI, dir], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = (await once(createInterface({ input: holder.stdout! }), "line")) as [string];
  if (line !== "mounted") {
    await once(holder, "exit").catch(() => undefined);
    throw new Error(`cannot mount a FUSE file system that never answers at ${dir}: ${line}`);
  }
  const end = async () => {
    if (holder.exitCode === null && holder.signalCode === null) {
      holder.kill("SIGKILL");
      await once(holder, "exit");
    }
  };
  return {
    dir,
    abort: end,
    async unmount() {
      await run("umount", ["--lazy", dir]).catch(() => undefined);
      await end();
    },
  };
}

/** Why no hung FUSE mount can be made here, or undefined when one can (tried once, under `scratch`). */
export async function hungFuseUnavailable(scratch: string): Promise<string | undefined> {
  try {
    const mount = await mountHungFuse(scratch);
    await mount.unmount();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
