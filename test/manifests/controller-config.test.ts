import { copyFile, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { CONFIG_KEYS, defaultConfig, loadConfig } from "../../src/controller/config.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const examplePath = path.join(repoRoot, "manifests/examples/controller.toml");

/** What the system example sets: every key but allow_untrusted_machines_dir, in the loader's order. */
const SYSTEM_EXAMPLE: Array<[string, string | number | boolean]> = [
  ["data_dir", "/var/lib/arcbox"],
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
  ["show_hook_output", false],
];

describe("manifests/examples/controller.toml", () => {
  it("sets every key the loader knows (but allow_untrusted_machines_dir), in the loader's order", async () => {
    const example = parseToml(await readFile(examplePath, "utf8"));
    expect(Object.entries(example)).toEqual(SYSTEM_EXAMPLE);
    expect(Object.keys(example)).toEqual(CONFIG_KEYS.filter((key) => key !== "allow_untrusted_machines_dir"));
  });

  it("explains every key with a comment right above it", async () => {
    const lines = (await readFile(examplePath, "utf8")).split("\n");
    for (const [key] of SYSTEM_EXAMPLE) {
      const index = lines.findIndex((line) => line.startsWith(`${key} = `));
      expect(index, `${key} is missing`).toBeGreaterThan(0);
      expect(lines[index - 1], `${key} has no comment above it`).toMatch(/^# \S/);
    }
  });

  it("loads in the controller's own config loader: /var/lib/arcbox and /etc/arcbox's hooks, every other value a default", async () => {
    const loaded = await loadConfig({ config: examplePath }, { env: {} });
    expect(loaded).toEqual({
      ...defaultConfig("/var/lib/arcbox"),
      machinesDirSource: `${examplePath}:18:1`,
      hooksDir: "/etc/arcbox/hooks/network.d",
      hooksDirSource: `${examplePath}:25:1`,
      logFormat: "json",
      configFile: examplePath,
    });
  });
});

describe("manifests/examples/user-controller.toml", () => {
  const userExamplePath = path.join(repoRoot, "manifests/examples/user-controller.toml");

  it("sets only keys the loader knows, each explained by a comment right above it", async () => {
    const text = await readFile(userExamplePath, "utf8");
    const keys = Object.keys(parseToml(text));
    expect(keys.filter((key) => !CONFIG_KEYS.includes(key))).toEqual([]);
    const lines = text.split("\n");
    for (const key of keys) expect(lines[lines.findIndex((line) => line.startsWith(`${key} = `)) - 1], key).toMatch(/^# \S/);
  });

  it("is read from ~/.arcbox by itself, and everything stays in ~/.arcbox", async () => {
    const home = await makeTempDir("user-config");
    try {
      const arcboxDir = path.join(home, ".arcbox");
      await mkdir(arcboxDir);
      const file = path.join(arcboxDir, "controller.toml");
      await copyFile(userExamplePath, file);
      const loaded = await loadConfig({}, { env: { HOME: home } });
      expect(loaded).toEqual({ ...defaultConfig(arcboxDir), configFile: file });
    } finally {
      await removeTempDir(home);
    }
  });
});
