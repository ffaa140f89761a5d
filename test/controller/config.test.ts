import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, defaultConfig, loadConfig, parseDuration } from "../../src/controller/config.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

let dir: string;
beforeEach(async () => (dir = await makeTempDir("config")));
afterEach(() => removeTempDir(dir));

async function configFile(text: string): Promise<string> {
  const file = path.join(dir, "controller.toml");
  await writeFile(file, text);
  return file;
}

describe("durations", () => {
  it.each([
    ["250ms", 250],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    ["1.5s", 1500],
  ])("parses %s", (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(["", "5", "5 m", "-1s", "5min", "s"])("rejects %j", (text) => expect(parseDuration(text)).toBeNull());

  it("accepts the longest duration a timer can wait, and no longer", async () => {
    expect((await loadConfig({ config: await configFile('resync_interval = "596h"') }, {})).resyncIntervalMs).toBe(596 * 3_600_000);
    await expect(loadConfig({ config: await configFile('resync_interval = "596h32m"') }, {})).rejects.toThrow(/too long/);
  });
});

describe("loadConfig", () => {
  it("uses the defaults of DESIGN §6 when nothing is given", async () => {
    const config = await loadConfig({ config: await configFile("") }, {});
    const defaults = defaultConfig();
    expect(config).toMatchObject({
      machinesDir: defaults.machinesDir,
      hooksDir: "/etc/arcbox/hooks/network.d",
      liveness: "daemon",
      daemonLock: path.join(path.dirname(defaults.machinesDir), "run", "daemon.lock"),
      daemonPollIntervalMs: 1000,
      pidFile: "vm.pid",
      workers: 4,
      resyncIntervalMs: 300_000,
      recheckIntervalMs: 30_000,
      startupGraceMs: 30_000,
      hookTimeoutMs: 30_000,
      shutdownTimeoutMs: 30_000,
      listen: "127.0.0.1:9464",
      perMachineMetrics: true,
      logLevel: "info",
    });
  });

  it("reads every key of the config file, paths relative to the file", async () => {
    const file = await configFile(
      [
        'machines_dir = "machines"',
        'hooks_dir = "/opt/hooks"',
        'liveness = "none"',
        'pid_file = "qemu.pid"',
        "workers = 8",
        'resync_interval = "1m"',
        'recheck_interval = "0s"',
        'startup_grace = "10s"',
        'hook_timeout = "2s"',
        'shutdown_timeout = "45s"',
        'listen = "[::1]:9100"',
        "per_machine_metrics = false",
        'log_level = "debug"',
      ].join("\n"),
    );
    expect(await loadConfig({ config: file }, {})).toMatchObject({
      machinesDir: path.join(dir, "machines"),
      hooksDir: "/opt/hooks",
      liveness: "none",
      pidFile: "qemu.pid",
      workers: 8,
      resyncIntervalMs: 60_000,
      recheckIntervalMs: 0,
      startupGraceMs: 10_000,
      hookTimeoutMs: 2000,
      shutdownTimeoutMs: 45_000,
      listen: "[::1]:9100",
      perMachineMetrics: false,
      logLevel: "debug",
      configFile: file,
    });
  });

  it("lets flags beat the environment, which beats the file", async () => {
    const file = await configFile('machines_dir = "/from/file"\nhooks_dir = "/hooks/file"\nlisten = "127.0.0.1:1"\n');
    const env = { ARCBOX_MACHINES_DIR: "/from/env", ARCBOX_LISTEN: "127.0.0.1:2" };
    const config = await loadConfig({ config: file, machinesDir: "/from/flag" }, env);
    expect(config.machinesDir).toBe("/from/flag");
    expect(config.listen).toBe("127.0.0.1:2");
    expect(config.hooksDir).toBe("/hooks/file");
  });

  it.each([
    ['machines = "/x"', /controller\.toml:1:1: unknown key "machines"/],
    ["workers = 0", ":1:1: workers: must be from 1 to 256; found an integer (0)"],
    ["workers = 257", ":1:1: workers: must be from 1 to 256; found an integer (257)"],
    ["workers = 2.5", ":1:1: workers: expected an integer, found a float (2.5)"],
    ['workers = "4"', ':1:1: workers: expected an integer, found a string ("4")'],
    ['per_machine_metrics = "yes"', ':1:1: per_machine_metrics: expected true or false, found a string ("yes")'],
    ["hook_timeout = 30", ':1:1: hook_timeout: expected a duration such as "30s", found an integer (30)'],
    ["listen = 9464", ':1:1: listen: expected an address such as "127.0.0.1:9464", found an integer (9464)'],
    ['machines_dir = ""', ':1:1: machines_dir: must not be empty; found a string ("")'],
    ['# a table where a string belongs\n[listen]\nport = 9464', ':2:1: listen: expected an address such as "127.0.0.1:9464", found a table'],
    ['resync_interval = "soon"', /:1:1: resync_interval: invalid duration "soon"/],
    ['hook_timeout = "0s"', /:1:1: hook_timeout: must be longer than 0/],
    ['liveness = "ping"', ':1:1: liveness: must be one of "daemon", "pidfile", "none"; found a string ("ping")'],
    ['listen = "9464"', /:1:1: listen: expected "HOST:PORT"/],
    ['listen = "::1:9464"', /:1:1: listen: write an IPv6 host in brackets/],
    ['listen = "host:65536"', /:1:1: listen: port "65536"/],
    ['pid_file = "../x.pid"', /:1:1: pid_file: must be a file name/],
    ['log_level = "verbose"', ':1:1: log_level: must be one of "trace", "debug", "info", "warn", "error"; found a string ("verbose")'],
    ["workers = ", /controller\.toml:1:\d+: /],
    ['listen = "127.0.0.1:9464', ":1:25: invalid TOML: Unterminated string constant"],
    ["workers = 4\nworkers = 5", ":2:1: invalid TOML: Defining a key multiple times is invalid"],
    // Node's timers cannot wait longer than 2^31-1 ms: such values would fire at once or throw.
    ['resync_interval = "720h"', /:1:1: resync_interval: "720h" is too long: at most "596h"/],
    ['shutdown_timeout = "600h"', /:1:1: shutdown_timeout: "600h" is too long/],
    ['hook_timeout = "600h"', /:1:1: hook_timeout: "600h" is too long/],
    ['startup_grace = "597h"', /:1:1: startup_grace: "597h" is too long/],
    ['recheck_interval = "1000h"', /:1:1: recheck_interval: "1000h" is too long/],
    ['daemon_poll_interval = "700h"', /:1:1: daemon_poll_interval: "700h" is too long/],
    ['daemon_poll_interval = "1ms"', /:1:1: daemon_poll_interval: must be at least 10ms/],
    ['log_format = "xml"', ':1:1: log_format: must be one of "json", "pretty"; found a string ("xml")'],
    ['liveness = "Daemon"', ':1:1: liveness: must be one of "daemon", "pidfile", "none"; found a string ("Daemon")'],
  ])("rejects %j with file, line and reason", async (text, message) => {
    const file = await configFile(text);
    await expect(loadConfig({ config: file }, {})).rejects.toThrow(message);
    await expect(loadConfig({ config: file }, {})).rejects.toBeInstanceOf(ConfigError);
  });

  it("fails for a named config file that does not exist, but not for the absent default", async () => {
    await expect(loadConfig({ config: path.join(dir, "missing.toml") }, {})).rejects.toThrow(/cannot read config file .*missing\.toml/);
  });

  it("names the environment variable of a bad value", async () => {
    await expect(loadConfig({ config: await configFile("") }, { ARCBOX_LISTEN: "nope" })).rejects.toThrow(/environment variable ARCBOX_LISTEN: invalid address "nope"/);
  });
});
