// The bare system calls of the benchmarks' baselines and edits, with nothing of the controller.
import { randomBytes } from "node:crypto";
import { renameSync, writeFileSync } from "node:fs";
import { lstat, open, rename } from "node:fs/promises";
import { dirname, join } from "node:path";

/**
 * Replaces `path` with `text` atomically and durably, with the fewest calls that can: temp file
 * (created exclusively), write, fsync, close, rename, fsync of the directory. The physical limit of
 * one recovery's write.
 *
 * With `beforeCommit`, it also makes the identity checks of a conflict-safe commit: the new file's
 * mode set with fchmod and its inode taken with fstat, `beforeCommit` (which looks at the target)
 * right before the rename, and an lstat of the result right after it.
 */
export async function durableWrite(path, text, { beforeCommit } = {}) {
  const checked = beforeCommit !== undefined;
  const dir = dirname(path);
  const temp = join(dir, `.config.toml.raw-${randomBytes(6).toString("hex")}`);
  const file = await open(temp, "wx", 0o600);
  let ours;
  try {
    if (checked) await file.chmod(0o600);
    await file.writeFile(text);
    await file.sync();
    if (checked) ours = (await file.stat({ bigint: true })).ino;
  } finally {
    await file.close();
  }
  if (checked) await beforeCommit();
  await rename(temp, path);
  if (checked && (await lstat(path, { bigint: true })).ino !== ours) throw new Error(`${path}: replaced right after the commit`);
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/**
 * Writes `path` as arcbox-core's `atomic_write` does (a `tempfile::NamedTempFile` in the same
 * directory, `.tmpXXXXXX`, written and renamed over the file; no fsync). Synchronous, so an edit's
 * timestamp is exact.
 */
export function arcboxWrite(path, text) {
  const temp = join(dirname(path), `.tmp${randomBytes(3).toString("hex")}`);
  writeFileSync(temp, text, { flag: "wx", mode: 0o600 });
  renameSync(temp, path);
}
