import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseDuration, type ControllerConfig } from "../../src/controller/config.js";
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
    expect((await loadConfig({ config: await configFile('resync_interval = "596h"') }, { env: {} })).resyncIntervalMs).toBe(596 * 3_600_000);
    await expect(loadConfig({ config: await configFile('resync_interval = "596h32m"') }, { env: {} })).rejects.toThrow(/too long/);
  });
});

describe("loadConfig", () => {
  it("uses the defaults of docs/design.md#configuration when nothing is given", async () => {
    const config = await loadConfig({ config: await configFile("") }, { env: { HOME: "/home/u" } });
    expect(config).toMatchObject({
      dataDir: "/home/u/.arcbox",
      machinesDir: "/home/u/.arcbox/machines",
      machinesDirSource: null,
      hooksDir: "/home/u/.arcbox/hooks/network.d",
      hooksDirSource: null,
      liveness: "daemon",
      daemonLock: "/home/u/.arcbox/run/daemon.lock",
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
    expect(await loadConfig({ config: file }, { env: {} })).toMatchObject({
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
    const config = await loadConfig({ config: file, machinesDir: "/from/flag" }, { env });
    expect(config.machinesDir).toBe("/from/flag");
    expect(config.machinesDirSource).toBe("option --machines-dir");
    expect(config.listen).toBe("127.0.0.1:2");
    expect(config.hooksDir).toBe("/hooks/file");
    expect(config.hooksDirSource).toBe(`${file}:2:1`);
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
    await expect(loadConfig({ config: file }, { env: {} })).rejects.toThrow(message);
    await expect(loadConfig({ config: file }, { env: {} })).rejects.toBeInstanceOf(ConfigError);
  });

  it("fails for a named config file that does not exist, but not for the absent default", async () => {
    await expect(loadConfig({ config: path.join(dir, "missing.toml") }, { env: {} })).rejects.toThrow(/cannot read config file .*missing\.toml/);
  });

  it("names the environment variable of a bad value", async () => {
    await expect(loadConfig({ config: await configFile("") }, { env: { ARCBOX_LISTEN: "nope" } })).rejects.toThrow(/environment variable ARCBOX_LISTEN: invalid address "nope"/);
  });
});

describe("ArcBox's data directory", () => {
  /** loadConfig as it runs on `platform` (process.platform is what any platform branch would read). */
  async function onPlatform<T>(platform: NodeJS.Platform, run: () => Promise<T>): Promise<T> {
    const real = Object.getOwnPropertyDescriptor(process, "platform")!;
    Object.defineProperty(process, "platform", { ...real, value: platform });
    try {
      return await run();
    } finally {
      Object.defineProperty(process, "platform", real);
    }
  }
  const noPasswdHome = () => undefined;
  const layout = (config: ControllerConfig) => ({
    dataDir: config.dataDir,
    machinesDir: config.machinesDir,
    hooksDir: config.hooksDir,
    daemonLock: config.daemonLock,
    configFile: config.configFile,
  });
  const under = (root: string, configFile: string | null = null) => ({
    dataDir: root,
    machinesDir: path.join(root, "machines"),
    hooksDir: path.join(root, "hooks/network.d"),
    daemonLock: path.join(root, "run/daemon.lock"),
    configFile,
  });

  for (const platform of ["linux", "darwin"] as const) {
    describe(`on ${platform}`, () => {
      it("is ~/.arcbox with only HOME set, and every default path lies under it", async () => {
        const config = await onPlatform(platform, () => loadConfig({}, { env: { HOME: dir }, passwdHome: noPasswdHome }));
        expect(layout(config)).toEqual(under(path.join(dir, ".arcbox")));
      });

      it("is ARCBOX_DATA_DIR when arcbox's override is set, and its controller.toml is read", async () => {
        const root = path.join(dir, "data");
        await mkdir(root);
        await writeFile(path.join(root, "controller.toml"), "workers = 7\n");
        const config = await onPlatform(platform, () => loadConfig({}, { env: { HOME: "/home/u", ARCBOX_DATA_DIR: root } }));
        expect(layout(config)).toEqual(under(root, path.join(root, "controller.toml")));
        expect(config.workers).toBe(7);
      });

      it("is /var/lib/arcbox without a home directory", async () => {
        const config = await onPlatform(platform, () => loadConfig({}, { env: {}, passwdHome: noPasswdHome }));
        expect(layout(config)).toEqual(under("/var/lib/arcbox"));
      });

      it("takes the home directory from the password database when HOME is unset or empty", async () => {
        for (const env of [{}, { HOME: "" }]) {
          const config = await onPlatform(platform, () => loadConfig({}, { env, passwdHome: () => "/home/p" }));
          expect(config.dataDir).toBe("/home/p/.arcbox");
        }
      });
    });
  }

  it("is ~/.arcbox-dev for arcbox's development profile, read as arcbox reads it", async () => {
    for (const profile of ["development", "dev", " Development "]) {
      expect((await loadConfig({}, { env: { HOME: "/home/u", ARCBOX_PROFILE: profile } })).dataDir).toBe("/home/u/.arcbox-dev");
    }
    for (const profile of ["production", "prod", ""]) {
      expect((await loadConfig({}, { env: { HOME: "/home/u", ARCBOX_PROFILE: profile } })).dataDir).toBe("/home/u/.arcbox");
    }
  });

  it("refuses a profile arcbox does not know instead of guessing, but only when it decides anything", async () => {
    await expect(loadConfig({}, { env: { HOME: "/home/u", ARCBOX_PROFILE: "staging" } })).rejects.toThrow(
      /environment variable ARCBOX_PROFILE: unknown ArcBox profile "staging"/,
    );
    expect((await loadConfig({ dataDir: dir }, { env: { ARCBOX_PROFILE: "staging" } })).dataDir).toBe(dir);
  });

  it("lets --data-dir beat ARCBOX_DATA_DIR, which beats data_dir in the file, which beats the default", async () => {
    const file = await configFile('data_dir = "from-file"\n');
    const env = { HOME: "/home/u" };
    expect((await loadConfig({ config: file }, { env })).dataDir).toBe(path.join(dir, "from-file"));
    expect((await loadConfig({ config: file }, { env: { ...env, ARCBOX_DATA_DIR: "/from/env" } })).dataDir).toBe("/from/env");
    expect((await loadConfig({ config: file, dataDir: "/from/flag" }, { env: { ...env, ARCBOX_DATA_DIR: "/from/env" } })).dataDir).toBe("/from/flag");
    expect((await loadConfig({ config: await configFile("") }, { env })).dataDir).toBe("/home/u/.arcbox");
  });

  it("moves the machines, hooks and daemon lock with data_dir, unless they are set themselves", async () => {
    const file = await configFile('data_dir = "/srv/arcbox"\nhooks_dir = "/etc/hooks"\n');
    const config = await loadConfig({ config: file }, { env: { HOME: "/home/u" } });
    expect(layout(config)).toEqual({ ...under("/srv/arcbox", file), hooksDir: "/etc/hooks" });
    // The daemon keeps its lock beside its machines: a moved machines directory moves the lock with it.
    const moved = await loadConfig({ config: file, machinesDir: "/mnt/vms/machines" }, { env: {} });
    expect(moved.daemonLock).toBe("/mnt/vms/run/daemon.lock");
  });

  it("expands ~/ in the file's paths to the home directory", async () => {
    const file = await configFile('data_dir = "~/arcbox-data"\nhooks_dir = "~/hooks"\n');
    const config = await loadConfig({ config: file }, { env: { HOME: "/home/u" } });
    expect([config.dataDir, config.hooksDir]).toEqual(["/home/u/arcbox-data", "/home/u/hooks"]);
    await expect(loadConfig({ config: file }, { env: {}, passwdHome: noPasswdHome })).rejects.toThrow(
      /controller\.toml:1:1: data_dir: "~\/arcbox-data" names the home directory, but this user has none/,
    );
  });
});

describe("hooks directory settings", () => {
  it("records who named the hooks directory: a flag, the environment or the file (line and column)", async () => {
    const file = await configFile('workers = 2\nhooks_dir = "/from/file"\n');
    expect((await loadConfig({ config: file }, { env: {} })).hooksDirSource).toBe(`${file}:2:1`);
    const fromEnv = await loadConfig({ config: file }, { env: { ARCBOX_HOOKS_DIR: "/from/env" } });
    expect([fromEnv.hooksDir, fromEnv.hooksDirSource]).toEqual(["/from/env", "environment variable ARCBOX_HOOKS_DIR"]);
    const fromFlag = await loadConfig({ config: file, hooksDir: "rel" }, { env: { ARCBOX_HOOKS_DIR: "/from/env" } });
    expect([fromFlag.hooksDir, fromFlag.hooksDirSource]).toEqual([path.resolve("rel"), "option --hooks-dir"]);
  });

  it('takes hooks_dir = "" and --no-hooks as the choice of no hooks', async () => {
    const file = await configFile('hooks_dir = ""\n');
    expect(await loadConfig({ config: file }, { env: {} })).toMatchObject({ hooksDir: null, hooksDirSource: `${file}:1:1` });
    const flagged = await loadConfig({ config: await configFile('hooks_dir = "/x"\n'), noHooks: true }, { env: { ARCBOX_HOOKS_DIR: "/y" } });
    expect(flagged).toMatchObject({ hooksDir: null, hooksDirSource: "option --no-hooks" });
  });

  it("refuses --no-hooks with --hooks-dir, and an empty --hooks-dir", async () => {
    await expect(loadConfig({ noHooks: true, hooksDir: "/x" }, { env: {} })).rejects.toThrow("options --no-hooks and --hooks-dir exclude each other");
    await expect(loadConfig({ hooksDir: "" }, { env: {} })).rejects.toThrow(/option --hooks-dir: must not be empty \(to run without hooks, use --no-hooks/);
  });
});
