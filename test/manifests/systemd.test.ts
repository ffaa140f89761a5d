import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { loadConfig, parseDuration } from "../../src/controller/config.js";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";
import { runTool, type ToolRun } from "../helpers/tools.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const systemdDir = path.join(repoRoot, "manifests/systemd");
const UNIT = "arcbox-controller.service";
const SYSTEM_UNIT = path.join(systemdDir, UNIT);
const USER_UNIT = path.join(systemdDir, "user", UNIT);
const INSTALLED_BIN = "/usr/bin/arcbox-controller";

/** The settings of one section of a unit file: key → every value assigned, in order. */
function sectionSettings(text: string, wanted: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1] as string;
      continue;
    }
    const eq = line.indexOf("=");
    if (section !== wanted || eq < 0) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

const serviceSettings = (text: string) => sectionSettings(text, "Service");

function only(settings: Map<string, string[]>, key: string): string | undefined {
  const values = settings.get(key);
  return values?.[values.length - 1];
}

/**
 * Writes the unit into a temp dir with ExecStart's program replaced by this Node.js and dist/cli.cjs:
 * `systemd-analyze verify` insists that the program exists, and the installed bin does not here.
 * `dropIns` land in the unit's `.d` directory, where verify reads them.
 */
async function stageUnit(unitText: string, dropIns: Record<string, string> = {}): Promise<string> {
  const dir = await makeTempDir("systemd-unit");
  const runnable = `${process.execPath} ${path.join(repoRoot, "dist/cli.cjs")}`;
  const staged = unitText.replace(/^ExecStart=\S+ /m, `ExecStart=${runnable} `);
  expect(staged, "the unit has no ExecStart= to stage").not.toBe(unitText);
  await writeFile(path.join(dir, UNIT), staged);
  if (Object.keys(dropIns).length > 0) await mkdir(path.join(dir, `${UNIT}.d`));
  for (const [name, text] of Object.entries(dropIns)) await writeFile(path.join(dir, `${UNIT}.d`, name), text);
  return dir;
}

/** Lines of verify's output that speak about our unit or its drop-ins (other units may be noisy). */
function complaintsAboutUnit(run: ToolRun): string[] {
  return (run.stdout + run.stderr)
    .split("\n")
    .filter((line) => line.includes("arcbox-controller") || line.includes(".conf"));
}

async function verify(systemdAnalyze: string, dir: string): Promise<ToolRun> {
  return runTool(systemdAnalyze, ["verify", "--man=no", `./${UNIT}`], { cwd: dir });
}

/**
 * `systemd-analyze verify --user`: a user manager's checks. It needs a runtime directory, which a
 * CI machine without a login session lacks, so it gets a private one. Where the user manager still
 * cannot start, the system manager verifies the copy instead, and the test says so.
 */
async function verifyAsUser(systemdAnalyze: string, dir: string): Promise<ToolRun> {
  const runtimeDir = path.join(dir, "runtime");
  await mkdir(runtimeDir, { mode: 0o700 });
  const run = await runTool(systemdAnalyze, ["verify", "--user", "--man=no", `./${UNIT}`], { cwd: dir, env: { XDG_RUNTIME_DIR: runtimeDir } });
  if (!/Failed to initialize manager/.test(run.stderr)) return run;
  console.warn(`FALLBACK: systemd-analyze verify --user cannot run here (${run.stderr.trim()}); verifying the user unit with the system manager`);
  return verify(systemdAnalyze, dir);
}

/** Settings both units share: the controller's exit codes and its shutdown drain. */
async function expectServiceLifecycle(settings: Map<string, string[]>): Promise<void> {
  const example = parseToml(await readFile(path.join(repoRoot, "manifests/examples/controller.toml"), "utf8"));
  expect(only(settings, "Type")).toBe("simple");
  expect(only(settings, "KillMode")).toBe("mixed");
  expect(only(settings, "Restart")).toBe("on-failure");
  expect(only(settings, "RestartPreventExitStatus")).toBe("2");
  expect(only(settings, "Environment")).toBe("NODE_ENV=production");
  // Stop must outlast the controller's own drain plus a hook's SIGTERM-to-SIGKILL grace (5s).
  const stopMs = parseDuration(only(settings, "TimeoutStopSec") ?? "");
  const shutdownMs = parseDuration(String(example.shutdown_timeout));
  expect(stopMs).not.toBeNull();
  expect(shutdownMs).not.toBeNull();
  expect(stopMs as number).toBeGreaterThan((shutdownMs as number) + 5_000);
}

describe("manifests/systemd with systemd-analyze", () => {
  const variants: Array<[string, string, string[]]> = [
    ["the system unit passes `systemd-analyze verify`", SYSTEM_UNIT, []],
    ["the system unit with the network-hooks drop-in passes verify", SYSTEM_UNIT, ["network-hooks.conf"]],
  ];
  for (const [title, unitPath, dropInNames] of variants) {
    requireToolOrSkip("systemd-analyze", title, async (systemdAnalyze) => {
      const dropIns: Record<string, string> = {};
      for (const name of dropInNames) dropIns[name] = await readFile(path.join(systemdDir, name), "utf8");
      const dir = await stageUnit(await readFile(unitPath, "utf8"), dropIns);
      try {
        const run = await verify(systemdAnalyze, dir);
        expect(run.code, run.report).toBe(0);
        expect(complaintsAboutUnit(run), run.report).toEqual([]);
      } finally {
        await removeTempDir(dir);
      }
    });
  }

  requireToolOrSkip("systemd-analyze", "the user unit passes `systemd-analyze verify --user`", async (systemdAnalyze) => {
    const dir = await stageUnit(await readFile(USER_UNIT, "utf8"));
    try {
      const run = await verifyAsUser(systemdAnalyze, dir);
      expect(run.code, run.report).toBe(0);
      expect(complaintsAboutUnit(run), run.report).toEqual([]);
    } finally {
      await removeTempDir(dir);
    }
  });

  requireToolOrSkip("systemd-analyze", "verify reports a misspelt setting, so the checks above can fail", async (systemdAnalyze) => {
    const system = await stageUnit((await readFile(SYSTEM_UNIT, "utf8")).replace("ProtectSystem=", "ProtectSytem="));
    const user = await stageUnit((await readFile(USER_UNIT, "utf8")).replace("RestrictRealtime=", "RestrictRealtme="));
    try {
      const systemRun = await verify(systemdAnalyze, system);
      expect(complaintsAboutUnit(systemRun).join("\n"), systemRun.report).toContain("ProtectSytem");
      const userRun = await verifyAsUser(systemdAnalyze, user);
      expect(complaintsAboutUnit(userRun).join("\n"), userRun.report).toContain("RestrictRealtme");
    } finally {
      await removeTempDir(system);
      await removeTempDir(user);
    }
  });

  requireToolOrSkip("systemd-analyze", "the system unit's sandbox keeps the exposure score at or below 2.5", async (systemdAnalyze) => {
    const dir = await stageUnit(await readFile(SYSTEM_UNIT, "utf8"));
    try {
      const run = await runTool(systemdAnalyze, ["security", "--offline=yes", "--threshold=25", `./${UNIT}`], { cwd: dir });
      expect(run.code, run.report).toBe(0);
    } finally {
      await removeTempDir(dir);
    }
  });
});

describe("manifests/systemd settings", () => {
  it("the system unit runs the service as documented, with its paths and timeouts matching controller.toml", async () => {
    const settings = serviceSettings(await readFile(SYSTEM_UNIT, "utf8"));
    const example = parseToml(await readFile(path.join(repoRoot, "manifests/examples/controller.toml"), "utf8"));
    expect(only(settings, "ExecStart")).toBe(`${INSTALLED_BIN} run --config /etc/arcbox/controller.toml`);
    expect(only(settings, "User")).toBe("arcbox");
    expect(only(settings, "Group")).toBe("arcbox");
    expect(only(settings, "ReadWritePaths")).toBe(example.machines_dir);
    await expectServiceLifecycle(settings);
  });

  it("the system unit's daemon lock lies outside ReadWritePaths but on a readable path", async () => {
    const settings = serviceSettings(await readFile(SYSTEM_UNIT, "utf8"));
    const loaded = await loadConfig({ config: path.join(repoRoot, "manifests/examples/controller.toml") }, { env: {} });
    expect(loaded.liveness).toBe("daemon");
    expect(loaded.daemonLock).toBe("/var/lib/arcbox/run/daemon.lock");
    // The probe opens the lock read-only: no write access is granted, and nothing hides it.
    const covers = (entry: string) => {
      const dir = entry.replace(/^[-+]+/, "").split(":")[0]?.replace(/\/+$/, "") ?? "";
      return dir !== "" && (loaded.daemonLock === dir || loaded.daemonLock.startsWith(`${dir}/`));
    };
    const entries = (key: string) => (settings.get(key) ?? []).flatMap((value) => value.split(/\s+/));
    expect(entries("ReadWritePaths").filter(covers)).toEqual([]);
    expect([...entries("InaccessiblePaths"), ...entries("TemporaryFileSystem")].filter(covers)).toEqual([]);
  });

  it("the system unit is sandboxed without breaking Node.js or pidfile liveness", async () => {
    const settings = serviceSettings(await readFile(SYSTEM_UNIT, "utf8"));
    for (const [key, value] of [
      ["ProtectSystem", "strict"],
      ["ProtectHome", "read-only"],
      ["NoNewPrivileges", "yes"],
      ["PrivateTmp", "yes"],
      ["ProtectKernelTunables", "yes"],
      ["ProtectKernelModules", "yes"],
      ["ProtectKernelLogs", "yes"],
      ["LockPersonality", "yes"],
      ["RestrictRealtime", "yes"],
      ["SystemCallArchitectures", "native"],
      ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
      ["CapabilityBoundingSet", ""],
    ] as const) {
      expect(only(settings, key), key).toBe(value);
    }
    // V8's JIT needs W+X memory; pidfile liveness reads other users' /proc/<pid> entries and /proc/stat.
    for (const key of ["MemoryDenyWriteExecute", "ProtectProc", "ProcSubset", "PrivateUsers"]) {
      expect(settings.has(key), `${key} must not be set`).toBe(false);
    }
  });

  it("the network-hooks drop-in grants CAP_NET_ADMIN to hooks and netlink sockets", async () => {
    const settings = serviceSettings(await readFile(path.join(systemdDir, "network-hooks.conf"), "utf8"));
    expect(only(settings, "CapabilityBoundingSet")).toBe("CAP_NET_ADMIN");
    expect(only(settings, "AmbientCapabilities")).toBe("CAP_NET_ADMIN");
    expect(only(settings, "RestrictAddressFamilies")?.split(" ")).toContain("AF_NETLINK");
  });

  it("the user unit is wanted by the user manager's default.target and shares the lifecycle settings", async () => {
    const text = await readFile(USER_UNIT, "utf8");
    expect(only(sectionSettings(text, "Install"), "WantedBy")).toBe("default.target");
    const settings = serviceSettings(text);
    expect(only(settings, "ExecStart")).toBe("arcbox-controller run");
    await expectServiceLifecycle(settings);
    // A user manager runs everything as the user: these are system-manager settings.
    for (const key of ["User", "Group", "AmbientCapabilities", "CapabilityBoundingSet"]) {
      expect(settings.has(key), `${key} does not belong in a user unit`).toBe(false);
    }
  });

  it("the user unit uses no sandboxing that needs user namespaces in a user manager", async () => {
    const settings = serviceSettings(await readFile(USER_UNIT, "utf8"));
    const namespaced = [
      "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts", "PrivateUsers", "PrivateNetwork",
      "PrivateIPC", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths",
      "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
      "ProtectHostname", "ProtectProc", "ProcSubset",
    ];
    expect(namespaced.filter((key) => settings.has(key))).toEqual([]);
    for (const [key, value] of [
      ["NoNewPrivileges", "yes"],
      ["RestrictNamespaces", "yes"],
      ["SystemCallFilter", "@system-service"],
      ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
    ] as const) {
      expect(only(settings, key), key).toBe(value);
    }
  });

  it("the user unit puts machines, hooks and the daemon lock in the user's ~/.arcbox, and reads its settings there", async () => {
    const home = await makeTempDir("systemd-user-home");
    try {
      await mkdir(path.join(home, ".arcbox"));
      await copyFile(path.join(repoRoot, "manifests/examples/user-controller.toml"), path.join(home, ".arcbox/controller.toml"));
      const execStart = only(serviceSettings(await readFile(USER_UNIT, "utf8")), "ExecStart") ?? "";
      const [, command, ...args] = execStart.split(" ");
      expect(command).toBe("run");
      expect(args).toEqual([]);
      // A user manager sets HOME for its services.
      const config = await loadConfig({}, { env: { HOME: home } });
      expect(config.configFile).toBe(path.join(home, ".arcbox/controller.toml"));
      expect(config).toMatchObject({
        machinesDir: path.join(home, ".arcbox/machines"),
        hooksDir: path.join(home, ".arcbox/hooks/network.d"),
        liveness: "daemon",
        daemonLock: path.join(home, ".arcbox/run/daemon.lock"),
      });
    } finally {
      await removeTempDir(home);
    }
  });
});
