/**
 * Which hooks a recovery runs (src/host/hooks/hook-supply.ts) and whether a hooks directory is
 * trusted (checkHooksDirectoryTrust): real directories, real owners and modes.
 */
import { chmod, chown, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkHooksDirectoryTrust, DirectoryHookSupply, HooksDirectoryError } from "../../src/host/hooks.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";
import { writeHook } from "../helpers/machines.js";

let root: string;
let hooksDir: string;
beforeEach(async () => {
  root = await makeTempDir("hook-supply");
  await chmod(root, 0o755);
  hooksDir = path.join(root, "network.d");
});
afterEach(() => removeTempDir(root));

async function rejection(promise: Promise<unknown>): Promise<HooksDirectoryError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HooksDirectoryError);
  return error as HooksDirectoryError;
}

/**
 * A uid that is neither root nor `effectiveUid`, owning `dir`: as root, `dir` is given to nobody
 * (65534); as another user, `dir` stays that user's and the check is told it runs as someone else.
 */
async function ownedBySomeoneElse(dir: string): Promise<{ owner: number; effectiveUid: number }> {
  const uid = process.getuid!();
  if (uid === 0) {
    await chown(dir, 65534, 65534);
    return { owner: 65534, effectiveUid: 0 };
  }
  return { owner: uid, effectiveUid: uid + 1 };
}

describe("checkHooksDirectoryTrust", () => {
  it("trusts a directory of root or this user, not writable by group or others, under trusted directories", async () => {
    await mkdir(hooksDir, { mode: 0o755 });
    await expect(checkHooksDirectoryTrust(hooksDir)).resolves.toBeUndefined();
  });

  it("refuses a directory writable by group or others, naming it, its mode and the fix", async () => {
    await mkdir(hooksDir);
    for (const [mode, who] of [
      [0o775, "group"],
      [0o757, "others"],
      [0o1777, "group and others"],
    ] as const) {
      await chmod(hooksDir, mode);
      const error = await rejection(checkHooksDirectoryTrust(hooksDir));
      expect(error.code).toBe("UNTRUSTED");
      expect(error.message).toContain(`hooks directory ${hooksDir} is not trusted: ${hooksDir} is writable by ${who} (mode ${mode.toString(8).padStart(4, "0")})`);
      expect(error.message).toContain("chmod go-w");
    }
  });

  it("refuses a directory owned by another user", async () => {
    await mkdir(hooksDir, { mode: 0o755 });
    const { owner, effectiveUid } = await ownedBySomeoneElse(hooksDir);
    const error = await rejection(checkHooksDirectoryTrust(hooksDir, effectiveUid));
    expect(error.message).toContain(`${hooksDir} is owned by uid ${owner}`);
  });

  it("refuses a directory whose parent others can write, unless the parent is sticky (as /tmp is)", async () => {
    await mkdir(hooksDir, { mode: 0o755 });
    await chmod(root, 0o777);
    expect((await rejection(checkHooksDirectoryTrust(hooksDir))).message).toContain(`${root} is writable by group and others (mode 0777)`);
    await chmod(root, 0o1777);
    await expect(checkHooksDirectoryTrust(hooksDir)).resolves.toBeUndefined();
  });

  it("checks a symlinked directory where it leads, and the directories above its target", async () => {
    const elsewhere = path.join(root, "elsewhere");
    await mkdir(path.join(elsewhere, "real"), { recursive: true, mode: 0o755 });
    await symlink(path.join(elsewhere, "real"), hooksDir);
    await expect(checkHooksDirectoryTrust(hooksDir)).resolves.toBeUndefined();
    await chmod(elsewhere, 0o777);
    expect((await rejection(checkHooksDirectoryTrust(hooksDir))).message).toContain(`${elsewhere} is writable by group and others`);
  });

  it("says a missing directory does not exist, and a file is not a directory", async () => {
    expect((await rejection(checkHooksDirectoryTrust(hooksDir))).code).toBe("ENOENT");
    await writeFile(hooksDir, "");
    expect((await rejection(checkHooksDirectoryTrust(hooksDir))).code).toBe("ENOTDIR");
  });
});

describe("DirectoryHookSupply", () => {
  it("fails the start-up check for a named directory that is missing, saying who named it and how to go on", async () => {
    const supply = new DirectoryHookSupply({ dir: hooksDir, source: "option --hooks-dir" });
    const error = await rejection(supply.check());
    expect(error.message).toBe(
      `hooks directory ${hooksDir} does not exist (named by option --hooks-dir); fix the path, or run without hooks: --no-hooks or hooks_dir = ""`,
    );
  });

  it("fails the start-up check for an untrusted directory, named or the default", async () => {
    await mkdir(hooksDir, { mode: 0o777 });
    await chmod(hooksDir, 0o777);
    for (const source of ["option --hooks-dir", null]) {
      const error = await rejection(new DirectoryHookSupply({ dir: hooksDir, source }).check());
      expect(error.code).toBe("UNTRUSTED");
    }
  });

  it("runs no hook while the default directory is missing, says why each time, and uses it once it appears", async () => {
    const supply = new DirectoryHookSupply({ dir: hooksDir, source: null });
    const notice = await supply.check();
    expect(notice.level).toBe("warn");
    expect(notice.message).toContain(`the default ${hooksDir} does not exist`);
    expect(await supply.current()).toEqual({ hooks: [], noHooks: `the default hooks directory ${hooksDir} does not exist` });
    expect(supply.status().warning).toBe(true);

    await writeHook(hooksDir, "10-net", "exit 0");
    await chmod(hooksDir, 0o755);
    const found = await supply.current();
    expect(found.hooks.map((hook) => hook.name)).toEqual(["10-net"]);
    expect(found.noHooks).toBeUndefined();
    expect(supply.status()).toEqual({ warning: false, text: `10-net in ${hooksDir}` });

    // Once it has been there, losing it fails the recovery: it never means "no hooks" again.
    await rm(hooksDir, { recursive: true });
    expect((await rejection(supply.current())).code).toBe("ENOENT");
  });

  it("fails each recovery while a directory it had is gone or untrusted, and works again once it is fixed", async () => {
    await writeHook(hooksDir, "10-net", "exit 0");
    await chmod(hooksDir, 0o755);
    const supply = new DirectoryHookSupply({ dir: hooksDir, source: "option --hooks-dir" });
    expect((await supply.check()).fields).toEqual({ hooks_dir: hooksDir, hooks: ["10-net"] });
    expect((await supply.current()).hooks).toHaveLength(1);
    await chmod(hooksDir, 0o777);
    expect((await rejection(supply.current())).code).toBe("UNTRUSTED");
    await chmod(hooksDir, 0o755);
    expect((await supply.current()).hooks).toHaveLength(1);
    await chmod(root, 0o777); // the parent: someone else could swap the whole directory
    expect((await rejection(supply.current())).code).toBe("UNTRUSTED");
  });

  it("warns at start about a directory with no hook to run", async () => {
    await mkdir(hooksDir, { mode: 0o755 });
    await writeFile(path.join(hooksDir, "README"), "not executable");
    const notice = await new DirectoryHookSupply({ dir: hooksDir, source: null }).check();
    expect(notice).toEqual({ level: "warn", message: `hooks directory ${hooksDir} holds no hook to run: recoveries run none`, fields: { hooks_dir: hooksDir, skipped: 1 } });
  });

  it("runs no hook by choice, and says so on each recovery", async () => {
    const supply = new DirectoryHookSupply({ dir: null, source: "option --no-hooks" });
    expect(await supply.check()).toMatchObject({ level: "info", message: "running without network hooks (option --no-hooks)" });
    expect(await supply.current()).toEqual({ hooks: [], noHooks: "hooks are off (option --no-hooks)" });
    expect(supply.status()).toEqual({ warning: false, text: "off (option --no-hooks)" });
  });
});
