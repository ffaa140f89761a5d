/**
 * Regression tests, one per case where the controller once disagreed with arcbox-core: each asserts
 * the controller's verdict, and arcbox-core's own through its loader (when it is built; required in CI).
 */
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { listMachineNames } from "../../src/controller/sources.js";
import { InvalidConfigError, InvalidNameError, MAX_CONFIG_BYTES, parseMachineConfig } from "../../src/store/index.js";
import { coreCheckAll, coreLine, coreLoaderPath, coreRun, itWithCoreLoader, REQUIRE_CORE_LOADER_ENV } from "../helpers/arcbox-core.js";
import { configText, useTempStore } from "./temp-store.js";

const t = useTempStore();

/** The loader, or undefined when it is not built (a failure when CI requires it). */
function loader(): string | undefined {
  const path = coreLoaderPath();
  if (path === undefined && process.env[REQUIRE_CORE_LOADER_ENV] === "1") throw new Error(`arcbox-core's loader is required (${REQUIRE_CORE_LOADER_ENV}=1) but not built`);
  if (path === undefined) console.warn("arcbox-core's loader is not built: only the controller's side of this case was checked");
  return path;
}

/** Writes `text` as machine `m`, asserts the controller's verdict and arcbox-core's. */
async function agree(text: string, accepted: boolean): Promise<void> {
  await t.put("m", text);
  const ours = await t.store.load("m").then(
    (loaded) => loaded.machine,
    (error: unknown) => {
      expect(error).toBeInstanceOf(InvalidConfigError);
      return undefined;
    },
  );
  expect(ours !== undefined, "the controller's verdict").toBe(accepted);
  const judge = loader();
  if (judge === undefined) return;
  const [core] = await coreCheckAll(judge, t.dir, ["m"]);
  expect(core?.ok, `arcbox-core: ${core?.output}`).toBe(accepted);
  if (ours !== undefined) expect(coreLine(ours)).toBe(core?.output);
}

const base = configText("m");

describe("agreement with arcbox-core", () => {
  it('cmdline = "a\\eb" (TOML 1.1 escape) is refused', async () => {
    await agree(`${base}cmdline = "a\\eb"\n`, false);
    expect(() => parseMachineConfig(`${base}cmdline = "a\\eb"\n`, "/x", "m")).toThrow(/TOML 1.1 syntax; arcbox-core reads TOML 1.0/);
  });

  it('cmdline = "a\\x41b" (TOML 1.1 escape) is refused', async () => {
    await agree(`${base}cmdline = "a\\x41b"\n`, false);
  });

  it("a trailing comma in an inline table (TOML 1.1) is refused", async () => {
    await agree(`${base}block_devices = [{ path = "/d/a.img", read_only = true, }]\n`, false);
  });

  it("a newline inside an inline table (TOML 1.1) is refused", async () => {
    await agree(`${base}block_devices = [{ path = "/d/a.img",\n  read_only = true }]\n`, false);
  });

  it('created_at = "2026-11-20t08:00:00.000001z" (lowercase t, refused by chrono) is refused', async () => {
    await agree(base.replace(/created_at = .*/, 'created_at = "2026-11-20t08:00:00.000001z"'), false);
  });

  it("created_at with 10 fraction digits is accepted (chrono keeps nanoseconds)", async () => {
    await agree(base.replace(/created_at = .*/, 'created_at = "2026-11-20T08:00:00.1234567891Z"'), true);
  });

  it("a basic string of 200,000 characters (valid TOML; it once overflowed the reader's stack) is accepted", async () => {
    await agree(`${base}kernel = "${"k".repeat(200_000)}"\n`, true);
  });

  it("get and validate list a directory named ..x or .hidden holding config.toml, invalid by the controller's name rule", async () => {
    await t.put("..x", configText("..x"));
    await t.put(".hidden", configText(".hidden"));
    const { machines, invalid } = await t.store.loadAll();
    expect(machines).toEqual([]);
    expect(invalid.map((i) => i.name)).toEqual(["..x", ".hidden"]);
    for (const { error } of invalid) {
      expect(error).toBeInstanceOf(InvalidNameError);
      expect(error.message).toContain("a rule of arcbox-controller's own");
    }
    expect(await listMachineNames(t.dir)).toEqual(["..x", ".hidden"]);
    const judge = loader();
    if (judge !== undefined) expect(await coreRun(judge, ["states", t.dir])).toBe("created=0 running=0 stopped=2 unreadable=0\n");
  });

  it("a machine directory without config.toml is no machine: NoConfig, counted nowhere", async () => {
    await mkdir(join(t.dir, "soon"));
    await writeFile(join(t.dir, "stray"), "");
    await t.put("real", configText("real"));
    const all = await t.store.loadAll();
    expect(all.machines.map((m) => m.machine.name)).toEqual(["real"]);
    expect(all.invalid).toEqual([]);
    expect(all.notMachines.map((n) => n.name)).toEqual(["soon", "stray"]);
    // reconcile, the resync and validate list through listMachineNames
    expect(await listMachineNames(t.dir)).toEqual(["real"]);
    const judge = loader();
    if (judge !== undefined) expect(await coreRun(judge, ["states", t.dir])).toBe("created=0 running=0 stopped=1 unreadable=0\n");
  });
});

describe("where arcbox-core's parser is more lenient than TOML 1.0 (known, refused by the controller)", () => {
  // toml_edit 0.14 lets a [table] header extend a table that dotted keys created; TOML 1.0 forbids
  // it, and no TOML 1.0 parser accepts it. The controller refuses such a file (it is never written).
  it.each([
    ["a root dotted key, then its table as a header", "extra.a = 1\n[extra]\n"],
    ["a dotted key in a table, then the sub-table as a header", "[extra]\nb.c = 1\n[extra.b]\n"],
  ])("%s", async (_label, tail) => {
    await t.put("m", `${base}${tail}`);
    await expect(t.store.load("m")).rejects.toThrow(/Defining a key multiple times is invalid/);
    const judge = loader();
    if (judge === undefined) return;
    const [core] = await coreCheckAll(judge, t.dir, ["m"]);
    expect(core?.ok, core?.output).toBe(true);
  });
});

describe("what arcbox-core does with what the controller's own rules refuse: each message says it truly", () => {
  itWithCoreLoader("a name that differs from its directory: loaded, then addressed by the name inside, so its update fails", async (judge) => {
    await t.put("web", configText("other").replace('state = "stopped"', 'state = "running"'));
    const error = await t.store.load("web").then(() => null, (e: unknown) => e as Error);
    expect(error?.message).toContain(`arcbox-core loads it, but then takes the machine for "other": its state updates would fail`);
    const [core] = await coreCheckAll(judge, t.dir, ["web"]);
    expect(core?.ok, core?.output).toBe(true);
    expect(core?.output).toMatch(/^name=other state=Running /);
    // arcbox-core's own start-up recovery of it (update_state of the name inside) finds no such machine.
    await expect(coreRun(judge, ["recover", t.dir])).rejects.toThrow(/Machine config not found/);
  });

  itWithCoreLoader("a symlinked config.toml: loaded through the link", async (judge) => {
    await t.put("real", configText("web"));
    await mkdir(join(t.dir, "web"));
    await symlink(join(t.dir, "real", "config.toml"), join(t.dir, "web", "config.toml"));
    const error = await t.store.load("web").then(() => null, (e: unknown) => e as Error);
    expect(error?.message).toContain("arcbox-core would load the file it leads to");
    const [core] = await coreCheckAll(judge, t.dir, ["web"]);
    expect(core?.ok, core?.output).toBe(true);
  });

  itWithCoreLoader("a config.toml over 1 MiB: loaded", async (judge) => {
    await t.put("web", `${configText("web")}# ${"x".repeat(MAX_CONFIG_BYTES)}\n`);
    const error = await t.store.load("web").then(() => null, (e: unknown) => e as Error);
    expect(error?.message).toContain("(a rule of arcbox-controller's own; arcbox-core would load it)");
    const [core] = await coreCheckAll(judge, t.dir, ["web"]);
    expect(core?.ok, core?.output).toBe(true);
  });

  itWithCoreLoader("2,000 nested arrays (a 4 KB file): refused at the 101st; arcbox-core loads 1,800, crashes on 2,000", async (judge) => {
    const nested = (depth: number) => `${base}x = ${"[".repeat(depth)}${"]".repeat(depth)}\n`;
    await t.put("web", nested(2000).replace('name = "m"', 'name = "web"'));
    const error = await t.store.load("web").then(() => null, (e: unknown) => e as Error);
    expect(error?.message).toBe(
      `${t.dir}/web/config.toml:${base.split("\n").length}:105: arrays and inline tables are nested more than 100 deep ` +
        "(a rule of arcbox-controller's own; arcbox-core loads up to about 1,700 levels and crashes on a stack overflow beyond)",
    );
    await t.put("loads", nested(1800).replace('name = "m"', 'name = "loads"'));
    const [crash, loads] = await coreCheckAll(judge, t.dir, ["web", "loads"]);
    expect([crash?.code, crash?.output.includes("has overflowed its stack")]).toEqual([134, true]);
    expect(loads?.ok, loads?.output).toBe(true);
  });

  itWithCoreLoader("a fifo as config.toml: arcbox-core's read waits for a writer, still waiting a second later", async (judge) => {
    await mkdir(join(t.dir, "web"));
    execFileSync("mkfifo", [join(t.dir, "web", "config.toml")]);
    const error = await t.store.load("web").then(() => null, (e: unknown) => e as Error);
    expect(error?.message).toContain("arcbox-core's read would wait for a writer for ever");
    const child = spawn(judge, ["check", t.dir, "web"], { stdio: "ignore" });
    const exited = once(child, "exit");
    const outcome = await Promise.race([exited.then(() => "exited"), delay(1000).then(() => "waiting")]);
    child.kill("SIGKILL");
    await exited;
    expect(outcome).toBe("waiting");
  });

  itWithCoreLoader("a directory as config.toml, or a socket: arcbox-core cannot load it either, and the message says so", async (judge) => {
    await mkdir(join(t.dir, "dir", "config.toml"), { recursive: true });
    const error = await t.store.load("dir").then(() => null, (e: unknown) => e as Error);
    expect(error?.message).toContain("is not a regular file (a directory; arcbox-core cannot load it either)");
    expect(error?.message).not.toContain("a rule of arcbox-controller's own");
    const [core] = await coreCheckAll(judge, t.dir, ["dir"]);
    expect(core?.ok, core?.output).toBe(false);
  });
});
