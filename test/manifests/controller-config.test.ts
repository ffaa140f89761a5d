import { copyFile, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { defaultConfig, loadConfig } from "../../src/controller/config.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const examplePath = path.join(repoRoot, "manifests/examples/controller.toml");

/** DESIGN §6, key by key, in its order. */
const DESIGN_DEFAULTS: Array<[string, string | number | boolean]> = [
  ["machines_dir", "/var/lib/arcbox/machines"],
  ["hooks_dir", "/etc/arcbox/hooks/network.d"],
  ["liveness", "daemon"],
  ["daemon_lock", "/var/lib/arcbox/run/daemon.lock"],
  ["daemon_poll_interval", "1s"],
  ["pid_file", "vm.pid"],
  ["workers", 4],
  ["resync_interval", "5m"],
  ["recheck_interval", "30s"],
  ["startup_grace", "30s"],
  ["hook_timeout", "30s"],
  ["shutdown_timeout", "30s"],
  ["listen", "127.0.0.1:9464"],
  ["per_machine_metrics", true],
  ["log_level", "info"],
  ["log_format", "json"],
];

describe("manifests/examples/controller.toml", () => {
  it("sets every key of DESIGN §6 to its default, in the same order", async () => {
    const example = parseToml(await readFile(examplePath, "utf8"));
    expect(Object.entries(example)).toEqual(DESIGN_DEFAULTS);
  });

  it("explains every key with a comment right above it", async () => {
    const lines = (await readFile(examplePath, "utf8")).split("\n");
    for (const [key] of DESIGN_DEFAULTS) {
      const index = lines.findIndex((line) => line.startsWith(`${key} = `));
      expect(index, `${key} is missing`).toBeGreaterThan(0);
      expect(lines[index - 1], `${key} has no comment above it`).toMatch(/^# \S/);
    }
  });

  it("loads in the controller's own config loader and changes nothing but the paths and the log format", async () => {
    const loaded = await loadConfig({ config: examplePath }, {}, "linux");
    expect(loaded).toEqual({
      ...defaultConfig("linux"),
      machinesDir: "/var/lib/arcbox/machines",
      daemonLock: "/var/lib/arcbox/run/daemon.lock",
      logFormat: "json",
      configFile: examplePath,
    });
  });
});

describe("manifests/examples/user-controller.toml", () => {
  const userExamplePath = path.join(repoRoot, "manifests/examples/user-controller.toml");

  it("sets only keys of DESIGN §6, each explained by a comment right above it", async () => {
    const text = await readFile(userExamplePath, "utf8");
    const keys = Object.keys(parseToml(text));
    const known = DESIGN_DEFAULTS.map(([key]) => key);
    expect(keys.filter((key) => !known.includes(key))).toEqual([]);
    const lines = text.split("\n");
    for (const key of keys) expect(lines[lines.findIndex((line) => line.startsWith(`${key} = `)) - 1], key).toMatch(/^# \S/);
  });

  for (const platform of ["linux", "darwin"] as const) {
    it(`resolves everything inside the directory that holds it (${platform})`, async () => {
      const arcboxDir = await makeTempDir("user-config");
      try {
        const file = path.join(arcboxDir, "controller.toml");
        await copyFile(userExamplePath, file);
        const loaded = await loadConfig({ config: file }, {}, platform);
        expect(loaded).toEqual({
          ...defaultConfig(platform),
          machinesDir: path.join(arcboxDir, "machines"),
          hooksDir: path.join(arcboxDir, "hooks/network.d"),
          daemonLock: path.join(arcboxDir, "run/daemon.lock"),
          configFile: file,
        });
      } finally {
        await removeTempDir(arcboxDir);
      }
    });
  }
});
