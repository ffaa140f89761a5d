/**
 * A full disk, for real: a tmpfs filled to its last page (where this machine lets the test mount one,
 * as CI does as root; otherwise the test says so and injects ENOSPC instead). A write then fails with
 * ENOSPC naming the file, leaves the original byte for byte and no temp file, and goes through once
 * space is back — in the store, in `reconcile`, and in the running service, which retries by itself.
 */
import { execFile } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { MachineStore, StoreIoError, type DurableFsOps } from "../../src/store/index.js";
import { CLI, startControllerProcess } from "../helpers/cli-process.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { fsOpsWith, systemError } from "./fs-ops.js";
import { sampleMachine } from "./temp-store.js";
import { itWithPrerequisite } from "../helpers/tools.js";

const execFileAsync = promisify(execFile);

// Mounted before the tests are collected, so that the ones needing a real full disk know.
const root = await makeTempDir("full-disk");
const disk = path.join(root, "disk");
await mkdir(disk);
let mounted = false;
/** Without a real full disk: every data write fails with ENOSPC while `full` is set. */
let injected: DurableFsOps | undefined;
let full = false;
try {
  await execFileAsync("mount", ["-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", disk]);
  mounted = true;
  console.log(`full disk: a real tmpfs of 512 KiB at ${disk}`);
} catch (error) {
  // CI sets this: there a tmpfs can always be mounted, so failing to is a failure.
  if (process.env.ARCBOX_REQUIRE_TMPFS === "1") throw new Error(`ARCBOX_REQUIRE_TMPFS=1 but no tmpfs could be mounted: ${(error as Error).message}`);
  injected = fsOpsWith({ write: (real) => async (...args) => (full ? Promise.reject(systemError("ENOSPC", "no space left on device")) : real(...args)) });
  console.log(`full disk: FALLBACK — cannot mount a tmpfs here (${(error as Error).message.split("\n")[0]}); the injected ENOSPC ran instead of a real full disk`);
}

/** A test of the built CLI, which can only meet a real full disk; without one it says so. */
function withRealDisk(name: string, body: () => Promise<void>): void {
  itWithPrerequisite(
    name,
    { find: () => (mounted ? true : undefined), missing: "no tmpfs could be mounted for a real full disk (it needs root)", requireEnv: "ARCBOX_REQUIRE_TMPFS" },
    body,
  );
}

afterAll(async () => {
  if (mounted) await execFileAsync("umount", ["-l", disk]);
  await removeTempDir(root);
});

let machines: string;
let round = 0;
beforeEach(async () => {
  await fillDisk(false);
  machines = path.join(disk, `machines-${++round}`);
  await mkdir(machines);
});

/** Fills the disk to its last page (or frees it again). */
async function fillDisk(on: boolean): Promise<void> {
  full = on;
  if (!mounted) return;
  const filler = path.join(disk, "filler");
  await rm(filler, { force: true });
  if (!on) return;
  const fd = openSync(filler, "w");
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    expect((error as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    closeSync(fd);
  }
}

const store = () => new MachineStore({ dir: machines, fs: injected });

describe("a full disk", () => {
  it("every kind of write fails with ENOSPC naming the file; original intact, no temp file; it works once space is back", async () => {
    const original = machineToml("web");
    const file = await writeMachine(machines, "web", original);
    await fillDisk(true);
    for (const write of [
      () => store().updateState("web", "stopped"),
      () => store().update("web", (m) => void (m.cpus = 9)),
      () => store().save(sampleMachine("web")),
    ]) {
      const error = (await write().catch((e: unknown) => e)) as StoreIoError;
      expect(error).toBeInstanceOf(StoreIoError);
      expect(error.code).toBe("ENOSPC");
      expect(error.message).toMatch(new RegExp(`^${file}: write \\(temp file \\.config\\.toml\\.arcbox-tmp-\\d+-[0-9a-f]{12}\\) failed: ENOSPC \\(no space left on device\\)$`));
      expect(await readFile(file, "utf8")).toBe(original);
      expect(await readdir(path.dirname(file))).toEqual(["config.toml"]);
    }
    const fresh = (await store().save(sampleMachine("new")).catch((e: unknown) => e)) as StoreIoError;
    expect([fresh.constructor.name, fresh.code]).toEqual(["StoreIoError", "ENOSPC"]);
    expect(await readdir(path.join(machines, "new"))).toEqual([]);

    await fillDisk(false);
    await store().updateState("web", "stopped");
    expect(await readFile(file, "utf8")).toBe(original.replace('state = "running"', 'state = "stopped"'));
  });

  // The CLI cannot take injected faults: these need the real tmpfs.
  withRealDisk("`reconcile` reports the failed write with path and errno, changes nothing, and recovers once space is back", async () => {
    const original = machineToml("web");
    const file = await writeMachine(machines, "web", original);
    await fillDisk(true);
    const args = [CLI, "reconcile", "--config", "/dev/null", "-d", machines, "--no-hooks", "--liveness", "none", "-o", "json"];
    const failed = await execFileAsync(process.execPath, args).catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect((failed as { code: number }).code).toBe(1);
    expect(JSON.parse((failed as { stdout: string }).stdout)).toMatchObject({ machines: 1, recovered: 0, errors: 1 });
    expect((failed as { stderr: string }).stderr).toContain(`${file}: write (temp file .config.toml.arcbox-tmp-`);
    expect((failed as { stderr: string }).stderr).toContain("failed: ENOSPC (no space left on device)");
    expect(await readFile(file, "utf8")).toBe(original);
    expect(await readdir(path.dirname(file))).toEqual(["config.toml"]);

    await fillDisk(false);
    const { stdout } = await execFileAsync(process.execPath, args);
    expect(JSON.parse(stdout)).toMatchObject({ machines: 1, recovered: 1, errors: 0 });
  });

  withRealDisk("the service starts on a full disk, retries, and recovers by itself once space is back", async () => {
    const file = await writeMachine(machines, "web", machineToml("web"));
    await fillDisk(true);
    const controller = await startControllerProcess(["--config", "/dev/null", "-d", machines, "--no-hooks", "--liveness", "none", "--listen", "127.0.0.1:0"]);
    try {
      const failures = () => controller.logs.filter((line) => line.msg === "reconcile failed; will retry" && line.machine === "web");
      await waitFor(() => failures().length >= 2, "two failed attempts");
      expect(String(failures()[0]!.err)).toContain(`${file}: write (temp file`);
      expect(String(failures()[0]!.err)).toContain("ENOSPC (no space left on device)");
      expect(await readdir(path.dirname(file))).toEqual(["config.toml"]);
      await fillDisk(false);
      await waitFor(() => controller.logs.some((line) => line.msg === "machine recovered" && line.machine === "web"), "the recovery once space is back");
      expect(await readFile(file, "utf8")).toContain('state = "stopped"');
    } finally {
      expect(await controller.stop()).toBe(0);
    }
  });
});
