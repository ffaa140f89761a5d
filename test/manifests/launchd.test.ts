/**
 * manifests/launchd: the macOS user agent. CI runs on Linux, so what launchd itself would check is
 * checked here with other real tools: Python's plistlib parses the file, the keys and their types
 * are those of launchd.plist(5), and the agent's process is started the way launchd starts it
 * (the rendered ProgramArguments through an npm-style global install, only the plist's environment,
 * working directory /, stdout and stderr appended to the plist's files) and stopped with SIGTERM.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, copyFile, cp, mkdir, open, readFile, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/controller/config.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { runTool } from "../helpers/tools.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const LABEL = "dev.arcbox.controller";
const templatePath = path.join(repoRoot, "manifests/launchd", `${LABEL}.plist`);

/** A plist value as plistlib read it, tagged with its plist type so `<integer>` and `<real>` differ. */
type PlistValue =
  | { bool: boolean }
  | { integer: number }
  | { real: number }
  | { string: string }
  | { array: PlistValue[] }
  | { dict: Record<string, PlistValue> };

/** Python: parse the plist named in argv[1] with plistlib and print it as tagged JSON. */
const PLISTLIB = `
import json, plistlib, sys
def tagged(value):
    if isinstance(value, bool): return {"bool": value}
    if isinstance(value, int): return {"integer": value}
    if isinstance(value, float): return {"real": value}
    if isinstance(value, str): return {"string": value}
    if isinstance(value, list): return {"array": [tagged(item) for item in value]}
    if isinstance(value, dict): return {"dict": {key: tagged(item) for key, item in value.items()}}
    raise TypeError("unexpected plist type " + type(value).__name__)
with open(sys.argv[1], "rb") as handle:
    print(json.dumps(tagged(plistlib.load(handle))))
`;

/** Parses `file` with Python's plistlib; fails the test with plistlib's own error otherwise. */
async function readPlist(python: string, file: string): Promise<Record<string, PlistValue>> {
  const run = await runTool(python, ["-c", PLISTLIB, file]);
  expect(run.code, run.report).toBe(0);
  const root = JSON.parse(run.stdout) as PlistValue;
  if (!("dict" in root)) throw new Error(`${file}: the top-level value is not a dict`);
  return root.dict;
}

/** The keys documented in launchd.plist(5); anything else is a typo launchd would ignore. */
const LAUNCHD_KEYS = new Set([
  "Label", "Disabled", "UserName", "GroupName", "inetdCompatibility", "LimitLoadToHosts", "LimitLoadFromHosts",
  "LimitLoadToSessionType", "LimitLoadToHardware", "LimitLoadFromHardware", "Program", "ProgramArguments",
  "EnableGlobbing", "EnableTransactions", "EnablePressuredExit", "OnDemand", "SessionCreate", "ServiceIPC",
  "KeepAlive", "RunAtLoad", "RootDirectory", "WorkingDirectory", "EnvironmentVariables", "Umask", "TimeOut",
  "ExitTimeOut", "ThrottleInterval", "InitGroups", "WatchPaths", "QueueDirectories", "StartOnMount",
  "StartInterval", "StartCalendarInterval", "StandardInPath", "StandardOutPath", "StandardErrorPath", "Debug",
  "WaitForDebugger", "SoftResourceLimits", "HardResourceLimits", "Nice", "ProcessType", "AbandonProcessGroup",
  "LowPriorityIO", "LowPriorityBackgroundIO", "MaterializeDatalessFiles", "LaunchOnlyOnce", "MachServices",
  "Sockets", "LaunchEvents", "HopefullyExitsLast", "HopefullyExitsFirst", "AssociatedBundleIdentifiers",
]);

/** The placeholders the template carries, which the README's install step replaces. */
const PLACEHOLDERS = { home: "@HOME@", npmPrefix: "@NPM_PREFIX@" } as const;

/** The template with its placeholders replaced, as the README's `sed` command does. */
async function renderedPlist(dir: string, home: string, npmPrefix: string): Promise<string> {
  const text = (await readFile(templatePath, "utf8"))
    .replaceAll(PLACEHOLDERS.home, home)
    .replaceAll(PLACEHOLDERS.npmPrefix, npmPrefix);
  const file = path.join(dir, `${LABEL}.plist`);
  await writeFile(file, text);
  return file;
}

function stringOf(value: PlistValue | undefined, key: string): string {
  if (value === undefined || !("string" in value)) throw new Error(`${key} is not a <string>: ${JSON.stringify(value)}`);
  return value.string;
}

function stringsOf(value: PlistValue | undefined, key: string): string[] {
  if (value === undefined || !("array" in value)) throw new Error(`${key} is not an <array>: ${JSON.stringify(value)}`);
  return value.array.map((item, index) => stringOf(item, `${key}[${index}]`));
}

function environmentOf(plist: Record<string, PlistValue>): Record<string, string> {
  const value = plist.EnvironmentVariables;
  if (value === undefined || !("dict" in value)) throw new Error("EnvironmentVariables is not a <dict>");
  return Object.fromEntries(Object.entries(value.dict).map(([key, item]) => [key, stringOf(item, `EnvironmentVariables.${key}`)]));
}

/**
 * Lays out `npm install -g arcbox-controller` under `prefix` as npm does: the package in
 * lib/node_modules (this build's dist/ and package.json, its dependencies linked), an executable
 * cli.cjs, bin/arcbox-controller linking to it, and `node` beside it as Homebrew and nvm have it.
 */
async function installLikeNpm(prefix: string): Promise<void> {
  const pkg = path.join(prefix, "lib/node_modules/arcbox-controller");
  await mkdir(pkg, { recursive: true });
  await cp(path.join(repoRoot, "dist"), path.join(pkg, "dist"), { recursive: true });
  await copyFile(path.join(repoRoot, "package.json"), path.join(pkg, "package.json"));
  await symlink(path.join(repoRoot, "node_modules"), path.join(pkg, "node_modules"));
  await chmod(path.join(pkg, "dist/cli.cjs"), 0o755);
  await mkdir(path.join(prefix, "bin"));
  await symlink("../lib/node_modules/arcbox-controller/dist/cli.cjs", path.join(prefix, "bin/arcbox-controller"));
  await symlink(process.execPath, path.join(prefix, "bin/node"));
}

describe("manifests/launchd with plistlib", () => {
  requireToolOrSkip("python3", `${LABEL}.plist parses, and its keys are launchd.plist(5) keys of the right types`, async (python) => {
    const plist = await readPlist(python, templatePath);
    for (const key of Object.keys(plist)) expect(LAUNCHD_KEYS.has(key), `${key} is not a launchd.plist(5) key`).toBe(true);
    expect(plist.Label).toEqual({ string: LABEL });
    expect(stringsOf(plist.ProgramArguments, "ProgramArguments")).toEqual([`${PLACEHOLDERS.npmPrefix}/bin/arcbox-controller`, "run"]);
    expect(plist.RunAtLoad).toEqual({ bool: true });
    // Restart after a failure only: SIGTERM (bootout, logout) ends it with exit 0 for good.
    expect(plist.KeepAlive).toEqual({ dict: { SuccessfulExit: { bool: false } } });
    expect(plist.ProcessType).toEqual({ string: "Background" });
    expect(plist.ThrottleInterval).toEqual({ integer: 5 });
    expect(plist.Umask).toEqual({ integer: 0o077 });
    expect(stringOf(plist.StandardOutPath, "StandardOutPath")).toBe(`${PLACEHOLDERS.home}/Library/Logs/arcbox/controller.stdout.log`);
    expect(stringOf(plist.StandardErrorPath, "StandardErrorPath")).toBe(`${PLACEHOLDERS.home}/Library/Logs/arcbox/controller.stderr.log`);
    const environment = environmentOf(plist);
    expect(environment.HOME).toBe(PLACEHOLDERS.home);
    expect(environment.NODE_ENV).toBe("production");
    // `#!/usr/bin/env node`: node beside the bin first, then Apple Silicon's and Intel's Homebrew.
    const pathDirs = environment.PATH?.split(":") ?? [];
    expect(pathDirs.slice(0, 3)).toEqual([`${PLACEHOLDERS.npmPrefix}/bin`, "/opt/homebrew/bin", "/usr/local/bin"]);
    expect(pathDirs).toEqual(expect.arrayContaining(["/usr/bin", "/bin", "/usr/sbin", "/sbin"]));
  });

  requireToolOrSkip("python3", "ExitTimeOut outlasts shutdown_timeout plus a hook's SIGTERM-to-SIGKILL grace", async (python) => {
    const plist = await readPlist(python, templatePath);
    const exitTimeOut = plist.ExitTimeOut;
    if (exitTimeOut === undefined || !("integer" in exitTimeOut)) throw new Error("ExitTimeOut is not an <integer>");
    const example = parseToml(await readFile(path.join(repoRoot, "manifests/examples/controller.toml"), "utf8"));
    const shutdownMs = parseDuration(String(example.shutdown_timeout));
    expect(shutdownMs).not.toBeNull();
    expect(exitTimeOut.integer * 1000).toBeGreaterThan((shutdownMs as number) + 5_000);
  });

  requireToolOrSkip("python3", "rendered for a user, every path is absolute and no placeholder is left", async (python) => {
    const dir = await makeTempDir("launchd-render");
    try {
      const file = await renderedPlist(dir, "/Users/ada", "/opt/homebrew");
      const text = await readFile(file, "utf8");
      expect(text).not.toMatch(/@[A-Z_]+@/);
      const plist = await readPlist(python, file);
      const paths = [
        stringsOf(plist.ProgramArguments, "ProgramArguments")[0],
        stringOf(plist.StandardOutPath, "StandardOutPath"),
        stringOf(plist.StandardErrorPath, "StandardErrorPath"),
        environmentOf(plist).HOME,
        ...(environmentOf(plist).PATH?.split(":") ?? []),
      ];
      for (const entry of paths) expect(entry, "launchd resolves no relative path, ~ or $HOME").toMatch(/^\/[^~$]*$/);
      expect(stringsOf(plist.ProgramArguments, "ProgramArguments")[0]).toBe("/opt/homebrew/bin/arcbox-controller");
      expect(stringOf(plist.StandardOutPath, "StandardOutPath")).toBe("/Users/ada/Library/Logs/arcbox/controller.stdout.log");
    } finally {
      await removeTempDir(dir);
    }
  });

  requireToolOrSkip("python3", "plistlib rejects a broken plist, so the checks above can fail", async (python) => {
    const dir = await makeTempDir("launchd-broken");
    try {
      const broken = (await readFile(templatePath, "utf8")).replace("<integer>45</integer>", "<integer>45</integr>");
      await writeFile(path.join(dir, "broken.plist"), broken);
      const run = await runTool(python, ["-c", PLISTLIB, path.join(dir, "broken.plist")]);
      expect(run.code, run.report).not.toBe(0);
      expect(run.stderr, run.report).toMatch(/ExpatError|mismatched tag/);
    } finally {
      await removeTempDir(dir);
    }
  });
});

describe("the agent started as launchd starts it", () => {
  requireToolOrSkip("python3", "runs from an npm global install with only the plist's environment, logs to its files, recovers, and exits 0 on SIGTERM", async (python) => {
    const dir = await makeTempDir("launchd-agent");
    try {
      const home = path.join(dir, "Users/ada");
      const npmPrefix = path.join(dir, "opt/homebrew");
      await installLikeNpm(npmPrefix);
      // The README's install step: the log directory, which launchd does not create.
      await mkdir(path.join(home, "Library/Logs/arcbox"), { recursive: true });
      const plist = await readPlist(python, await renderedPlist(dir, home, npmPrefix));
      const [program, ...args] = stringsOf(plist.ProgramArguments, "ProgramArguments");
      const stdoutPath = stringOf(plist.StandardOutPath, "StandardOutPath");
      const stderrPath = stringOf(plist.StandardErrorPath, "StandardErrorPath");
      const machinesDir = path.join(home, ".arcbox/machines");
      await writeMachine(machinesDir, "web", machineToml("web"));
      // A hook in the default hooks directory, ~/.arcbox/hooks/network.d: it must run.
      const hookRan = path.join(dir, "hook-ran");
      await writeHook(path.join(home, ".arcbox/hooks/network.d"), "10-net", `echo "$ARCBOX_MACHINE" > '${hookRan}'`);

      const stdout = await open(stdoutPath, "a");
      const stderr = await open(stderrPath, "a");
      const agent = spawn(program as string, args, {
        cwd: "/",
        // Only what the plist sets, and a free port instead of 9464 to keep the test to itself.
        env: { ...environmentOf(plist), ARCBOX_LISTEN: "127.0.0.1:0" },
        stdio: ["ignore", stdout.fd, stderr.fd],
      });
      const exited = once(agent, "exit");
      await stdout.close();
      await stderr.close();
      const logLines = async () =>
        (await readFile(stdoutPath, "utf8"))
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      try {
        const started = await waitFor(
          async () => {
            if (agent.exitCode !== null) throw new Error(`the agent exited ${agent.exitCode}: ${await readFile(stderrPath, "utf8")}`);
            return (await logLines()).find((line) => line.msg === "controller started");
          },
          "the controller started line in controller.stdout.log",
        );
        // The defaults follow the HOME the plist sets.
        expect(started).toMatchObject({ machines_dir: machinesDir, liveness: "daemon" });
        await waitFor(
          async () => (await readFile(path.join(machinesDir, "web/config.toml"), "utf8")).includes('state = "stopped"'),
          "web to be recovered (no arcbox daemon runs)",
        );
        // The log line follows the write, so it may land a moment later.
        const recovered = await waitFor(
          async () => (await logLines()).find((line) => line.msg === "machine recovered"),
          "the machine recovered line in controller.stdout.log",
        );
        expect(String(recovered?.reason)).toContain("the arcbox daemon is not running");
        expect(recovered?.hooks, JSON.stringify(await logLines())).toEqual(["10-net"]);
        expect(await readFile(hookRan, "utf8")).toBe("web\n");
      } finally {
        agent.kill("SIGTERM");
      }
      // launchctl bootout sends SIGTERM: exit 0 means KeepAlive (SuccessfulExit = false) leaves it down.
      const [code, signal] = await exited;
      expect({ code, signal }).toEqual({ code: 0, signal: null });
      expect(await readFile(stderrPath, "utf8")).toBe("");
    } finally {
      await removeTempDir(dir);
    }
  });
});

describe("the README's macOS section", () => {
  it("installs, restarts and removes the agent by this plist's file name and label, replacing every placeholder", async () => {
    const readme = await readFile(path.join(repoRoot, "README.md"), "utf8");
    const template = await readFile(templatePath, "utf8");
    const missing = [
      ...[...new Set(template.match(/@[A-Z_]+@/g))].map((placeholder) => `s|${placeholder}|`),
      "mkdir -p ~/Library/LaunchAgents ~/Library/Logs/arcbox",
      `launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/${LABEL}.plist`,
      `launchctl kickstart -k gui/$(id -u)/${LABEL}`,
      `launchctl bootout gui/$(id -u)/${LABEL}`,
    ].filter((command) => !readme.includes(command));
    expect(missing, "commands the README should show").toEqual([]);
  });
});
