/**
 * A real, tiny tmpfs for full-disk tests: mounted (root only) at a temp directory, then filled to the
 * last page, so every write that needs a new page fails with ENOSPC as on a real full disk.
 */
import { execFile } from "node:child_process";
import { mkdir, open, stat, truncate } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface FullTmpfs {
  /** The mount point: a directory on the full file system. */
  dir: string;
  /** Frees `bytes` of the filler, so that writes succeed again. */
  free(bytes?: number): Promise<void>;
  /** Unmounts it; lazily when something still holds it open. */
  unmount(): Promise<void>;
}

/**
 * Mounts a tmpfs of `sizeKiB` under `parent`, lets `prepare` create what the test needs while there
 * is space, then fills the rest. Throws (with the reason) when tmpfs cannot be mounted here, e.g. not
 * running as root.
 */
export async function mountFullTmpfs(parent: string, prepare: (dir: string) => Promise<void> = async () => undefined, sizeKiB = 256): Promise<FullTmpfs> {
  const dir = path.join(parent, "full-tmpfs");
  await mkdir(dir, { recursive: true });
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${sizeKiB}k,mode=0755`, "tmpfs", dir]);
  } catch (error) {
    throw new Error(`cannot mount a tmpfs for the full-disk test (needs root): ${(error as Error).message}`);
  }
  await prepare(dir);
  const filler = path.join(dir, ".filler");
  const handle = await open(filler, "w");
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) await handle.write(chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    await handle.close();
  }
  return {
    dir,
    async free(bytes = 64 * 1024) {
      const { size } = await stat(filler);
      await truncate(filler, Math.max(0, size - bytes));
    },
    async unmount() {
      try {
        await run("umount", [dir]);
      } catch {
        // Still busy (a failed test left a descriptor open): detach it, so no mount outlives the test.
        await run("umount", ["--lazy", dir]);
      }
    },
  };
}
