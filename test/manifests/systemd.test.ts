import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/controller/config.js";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";
import { runTool, type ToolRun } from "../helpers/tools.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const systemdDir = path.join(repoRoot, "manifests/systemd");
const UNIT = "arcbox-controller.service";
const INSTALLED_BIN = "/usr/bin/arcbox-controller";

/** The `[Service]` settings of a unit file: key → every value assigned, in order. */
function serviceSettings(text: string): Map<string, string[]> {
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
    if (section !== "Service" || eq < 0) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

function only(settings: Map<string, string[]>, key: string): string | undefined {
  const values = settings.get(key);
  return values?.[values.length - 1];
}

/**
 * Writes the unit into a temp dir with ExecStart pointing at this Node.js and dist/cli.js:
 * `systemd-analyze verify` insists that the program exists, and the installed bin does not here.
 * `dropIns` land in the unit's `.d` directory, where verify reads them.
 */
async function stageUnit(unitText: string, dropIns: Record<string, string> = {}): Promise<string> {
  const dir = await makeTempDir("systemd-unit");
  const runnable = `${process.execPath} ${path.join(repoRoot, "dist/cli.js")}`;
  expect(unitText).toContain(`ExecStart=${INSTALLED_BIN} `);
  await writeFile(path.join(dir, UNIT), unitText.replace(`ExecStart=${INSTALLED_BIN} `, `ExecStart=${runnable} `));
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

describe("manifests/systemd with systemd-analyze", () => {
  const variants: Array<[string, string[]]> = [
    ["the unit passes `systemd-analyze verify`", []],
    ["the unit with the network-hooks drop-in passes verify", ["network-hooks.conf"]],
  ];
  for (const [title, dropInNames] of variants) {
    requireToolOrSkip("systemd-analyze", title, async (systemdAnalyze) => {
      const dropIns: Record<string, string> = {};
      for (const name of dropInNames) dropIns[name] = await readFile(path.join(systemdDir, name), "utf8");
      const dir = await stageUnit(await readFile(path.join(systemdDir, UNIT), "utf8"), dropIns);
      try {
        const run = await verify(systemdAnalyze, dir);
        expect(run.code, run.report).toBe(0);
        expect(complaintsAboutUnit(run), run.report).toEqual([]);
      } finally {
        await removeTempDir(dir);
      }
    });
  }

  requireToolOrSkip("systemd-analyze", "verify reports a misspelt setting, so the check above can fail", async (systemdAnalyze) => {
    const unit = (await readFile(path.join(systemdDir, UNIT), "utf8")).replace("ProtectSystem=", "ProtectSytem=");
    const dir = await stageUnit(unit);
    try {
      const run = await verify(systemdAnalyze, dir);
      expect(complaintsAboutUnit(run).join("\n"), run.report).toContain("ProtectSytem");
    } finally {
      await removeTempDir(dir);
    }
  });

  requireToolOrSkip("systemd-analyze", "the sandbox keeps the exposure score at or below 2.5", async (systemdAnalyze) => {
    const dir = await stageUnit(await readFile(path.join(systemdDir, UNIT), "utf8"));
    try {
      const run = await runTool(systemdAnalyze, ["security", "--offline=yes", "--threshold=25", `./${UNIT}`], { cwd: dir });
      expect(run.code, run.report).toBe(0);
    } finally {
      await removeTempDir(dir);
    }
  });
});

describe("manifests/systemd settings", () => {
  it("runs the service as documented, with its paths and timeouts matching controller.toml", async () => {
    const settings = serviceSettings(await readFile(path.join(systemdDir, UNIT), "utf8"));
    const example = parseToml(await readFile(path.join(repoRoot, "manifests/examples/controller.toml"), "utf8"));
    expect(only(settings, "ExecStart")).toBe(`${INSTALLED_BIN} run --config /etc/arcbox/controller.toml`);
    expect(only(settings, "Type")).toBe("simple");
    expect(only(settings, "User")).toBe("arcbox");
    expect(only(settings, "Group")).toBe("arcbox");
    expect(only(settings, "ReadWritePaths")).toBe(example.machines_dir);
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
  });

  it("is sandboxed without breaking Node.js or pidfile liveness", async () => {
    const settings = serviceSettings(await readFile(path.join(systemdDir, UNIT), "utf8"));
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
    // V8's JIT needs W+X memory; liveness reads other users' /proc/<pid> entries and /proc/stat.
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
});
