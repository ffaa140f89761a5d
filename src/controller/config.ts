/**
 * The controller's configuration (docs/design.md#configuration): defaults, the TOML config file,
 * environment and flags. Precedence: flags beat environment, which beats the config file, which beats
 * defaults. Every default path lies under ArcBox's data directory (./data-dir.ts). Every problem is a
 * `ConfigError` whose message names the source (file:line, variable or flag).
 */
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { parseListenAddress } from "../metrics/listen-address.js";
import { describeTomlValue } from "../store/schema.js";
import { locate, parseToml, TomlSyntaxError, type TomlSource } from "../store/toml-document.js";
import { arcboxDataDir, DATA_DIR_VARIABLE, homeDirectory, passwdHomeDirectory, type DataDirChoice } from "./data-dir.js";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LIVENESS_MODES = ["daemon", "pidfile", "none"] as const;
export type Liveness = (typeof LIVENESS_MODES)[number];
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Longest duration the controller accepts: Node.js timers cannot wait longer (2^31-1 ms, about 24.8 days). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** The resolved configuration. Durations are in milliseconds; paths are absolute. */
export interface ControllerConfig {
  /** ArcBox's data directory: the root every default path lies under. */
  dataDir: string;
  machinesDir: string;
  /** Who named `machinesDir` (`option --machines-dir`, `…/controller.toml:3` …), or null for the default. */
  machinesDirSource: string | null;
  /** The network hooks directory, or null: no hooks, by choice (`hooks_dir = ""`, `--no-hooks`). */
  hooksDir: string | null;
  /**
   * Who named `hooksDir` (or chose no hooks), or null when it is the default under `dataDir`. A named
   * directory must exist; the default may be missing (a new host), and then recoveries run no hook.
   */
  hooksDirSource: string | null;
  liveness: Liveness;
  /**
   * The arcbox daemon's lock file (`liveness = "daemon"`): the daemon holds a `flock` on it while it
   * lives. Default: `run/daemon.lock` in the parent of `machinesDir` (arcbox's `--data-dir` layout).
   */
  daemonLock: string;
  /** How often the daemon's lock is probed (`liveness = "daemon"`). */
  daemonPollIntervalMs: number;
  /** File name of the VM's pid file inside each machine directory. */
  pidFile: string;
  workers: number;
  resyncIntervalMs: number;
  /**
   * How often a `running` machine whose VM is alive is checked again; 0 disables. A VM that
   * crashes leaves its pid file behind, and no file event would tell.
   */
  recheckIntervalMs: number;
  startupGraceMs: number;
  hookTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** `HOST:PORT` (IPv6 as `[::1]:9464`); port 0 picks a free port. */
  listen: string;
  perMachineMetrics: boolean;
  logLevel: LogLevel;
  /** `json` lines or `pretty` (readable) lines; `undefined`: pretty on a terminal, json otherwise. */
  logFormat: LogFormat | undefined;
  /** The config file that was read, if any. */
  configFile: string | null;
  /** Run as root even over a machines directory another user can write (see src/store/trust.ts). */
  allowUntrustedMachinesDir: boolean;
  /**
   * Show what a failing hook printed on stderr on the landing page and at /activity, which anyone who
   * can reach `listen` may read. Off by default: it stays in the log.
   */
  showHookOutput: boolean;
}

/** A configuration problem: the command exits 2 and touches nothing. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** The controller's config file in a data directory: read when `--config` is not given and it exists. */
export function defaultConfigFile(dataDir: string): string {
  return join(dataDir, "controller.toml");
}

/** `run/daemon.lock` beside the machines directory: where arcbox's daemon keeps its lock. */
export function defaultDaemonLock(machinesDir: string): string {
  return join(dirname(resolve(machinesDir)), "run", "daemon.lock");
}

/** The hooks directory's default under a data directory. */
export function defaultHooksDir(dataDir: string): string {
  return join(dataDir, "hooks", "network.d");
}

/**
 * The defaults of docs/design.md#configuration for a data directory (default: arcbox's own for this
 * process's environment): machines, hooks and the daemon's lock under it.
 */
export function defaultConfig(dataDir: string = arcboxDataDir(process.env).path): ControllerConfig {
  const root = resolve(dataDir);
  const machinesDir = join(root, "machines");
  return {
    dataDir: root,
    machinesDir,
    machinesDirSource: null,
    hooksDir: defaultHooksDir(root),
    hooksDirSource: null,
    liveness: "daemon",
    daemonLock: defaultDaemonLock(machinesDir),
    daemonPollIntervalMs: 1000,
    pidFile: "vm.pid",
    workers: 4,
    resyncIntervalMs: 5 * 60_000,
    recheckIntervalMs: 30_000,
    startupGraceMs: 30_000,
    hookTimeoutMs: 30_000,
    shutdownTimeoutMs: 30_000,
    listen: "127.0.0.1:9464",
    perMachineMetrics: true,
    logLevel: "info",
    logFormat: undefined,
    configFile: null,
    allowUntrustedMachinesDir: false,
    showHookOutput: false,
  };
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Parses a duration such as `"250ms"`, `"30s"`, `"5m"`, `"1h"` or `"1m30s"` into milliseconds.
 * Returns `null` when the text is not a duration.
 */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim();
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(trimmed)) return null;
  let total = 0;
  for (const part of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(part[1]) * UNIT_MS[part[2] as keyof typeof UNIT_MS];
  }
  return Math.round(total);
}

/**
 * The option that makes a schema word its type error in TOML's terms, with the value found:
 * `expected an integer, found a string ("x")`, where zod would speak of JavaScript types.
 */
const expecting = (what: string) => ({
  error: (issue: { code?: string; input?: unknown }) => (issue.code === "invalid_type" ? `expected ${what}, found ${describeTomlValue(issue.input)}` : undefined),
});

const durationText = z.string(expecting('a duration such as "30s"')).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === null) {
    ctx.addIssue({ code: "custom", message: `invalid duration ${JSON.stringify(text)} (use e.g. "250ms", "30s", "5m", "1h")` });
    return z.NEVER;
  }
  if (ms > MAX_DURATION_MS) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(text)} is too long: at most "596h" (about 24.8 days, the longest a timer can wait)` });
    return z.NEVER;
  }
  return ms;
});

const positiveDuration = durationText.refine((ms) => ms > 0, { message: "must be longer than 0" });

const listenText = z.string(expecting('an address such as "127.0.0.1:9464"')).superRefine((text, ctx) => {
  const problem = listenProblem(text);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** Why `text` is not a usable `HOST:PORT`, or null when it is. */
function listenProblem(text: string): string | null {
  try {
    parseListenAddress(text);
    return null;
  } catch (error) {
    return (error as Error).message.replace(/^metrics listen address "[^"]*": /, "");
  }
}

const pidFileText = z
  .string(expecting("a string"))
  .regex(/^[^/\0]+$/, "must be a file name inside the machine directory, without '/'")
  .refine((name) => name !== "." && name !== "..", "must be a file name, not '.' or '..'");

const pathText = z.string(expecting("a string")).min(1, "must not be empty");

/** The TOML file's schema: strict, so a misspelt key is an error rather than silently ignored. */
const fileSchema = z.strictObject({
  data_dir: pathText.optional(),
  machines_dir: pathText.optional(),
  // "" is a choice: no hooks.
  hooks_dir: z.string(expecting("a string")).optional(),
  liveness: z.enum(LIVENESS_MODES).optional(),
  daemon_lock: pathText.optional(),
  daemon_poll_interval: durationText.refine((ms) => ms >= 10, { message: "must be at least 10ms" }).optional(),
  pid_file: pidFileText.optional(),
  workers: z.bigint(expecting("an integer")).min(1n, "must be from 1 to 256").max(256n, "must be from 1 to 256").transform(Number).optional(),
  resync_interval: durationText.optional(),
  recheck_interval: durationText.optional(),
  startup_grace: durationText.optional(),
  hook_timeout: positiveDuration.optional(),
  shutdown_timeout: positiveDuration.optional(),
  listen: listenText.optional(),
  per_machine_metrics: z.boolean(expecting("true or false")).optional(),
  log_level: z.enum(LOG_LEVELS).optional(),
  log_format: z.enum(LOG_FORMATS).optional(),
  allow_untrusted_machines_dir: z.boolean(expecting("true or false")).optional(),
  show_hook_output: z.boolean(expecting("true or false")).optional(),
});

type FileSettings = z.infer<typeof fileSchema>;

/** The keys a config file may hold, in the order of the documentation. */
export const CONFIG_KEYS: readonly string[] = Object.keys(fileSchema.shape);

/** Options given on the command line; `undefined` means not given. */
export interface ConfigFlags {
  config?: string;
  dataDir?: string;
  machinesDir?: string;
  hooksDir?: string;
  /** `--no-hooks`: recoveries run no network hook (not together with `hooksDir`). */
  noHooks?: boolean;
  liveness?: string;
  listen?: string;
  workers?: string;
  logLevel?: string;
  logFormat?: string;
}

/** What the defaults depend on besides the flags: the environment and the user's home directory. */
export interface ConfigHost {
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** The home directory the password database gives this user (used when `HOME` is unset); default os.userInfo(). */
  passwdHome?: () => string | undefined;
}

/** A setting's value, as the config file names it, with where it was found. */
interface FilePath {
  path: string;
  source: string;
}

/**
 * Resolves the configuration from defaults, the config file (`flags.config`, else `controller.toml`
 * in the data directory when it exists), the environment and the flags. The data directory is the
 * flag's, else `ARCBOX_DATA_DIR`, else the file's `data_dir`, else arcbox's default (see
 * ./data-dir.ts); the machines and hooks directories default under it, and `daemonLock` to
 * `run/daemon.lock` beside the machines directory. Throws `ConfigError` for an unreadable or invalid
 * file, a bad value in any source, an unknown `ARCBOX_PROFILE` when it is needed, or `--no-hooks`
 * with `--hooks-dir`.
 */
export async function loadConfig(flags: ConfigFlags, host: ConfigHost = {}): Promise<ControllerConfig> {
  const env = host.env ?? process.env;
  const passwdHome = host.passwdHome ?? passwdHomeDirectory;
  if (flags.noHooks && flags.hooksDir !== undefined) throw new ConfigError("options --no-hooks and --hooks-dir exclude each other");
  if (flags.dataDir === "") throw new ConfigError("option --data-dir: must not be empty");
  const arcboxDefault = (): DataDirChoice => {
    try {
      return arcboxDataDir(env, passwdHome);
    } catch (error) {
      throw new ConfigError(`environment variable ARCBOX_PROFILE: ${(error as Error).message}`);
    }
  };
  const envDataDir = env[DATA_DIR_VARIABLE] === "" ? undefined : env[DATA_DIR_VARIABLE];
  const early = flags.dataDir ?? envDataDir;

  // The default config file is the data directory's, as far as it is known before the file is read.
  const fileName = flags.config ?? defaultConfigFile(resolve(early ?? arcboxDefault().path));
  const file = await readConfigFile(fileName, flags.config !== undefined, () => homeDirectory(env, passwdHome));

  const dataDir = resolve(early ?? file?.paths.data_dir?.path ?? arcboxDefault().path);
  const config = defaultConfig(dataDir);
  if (file) {
    applySettings(config, file.settings);
    config.configFile = resolve(fileName);
  }

  const machinesDir = file?.paths.machines_dir;
  if (machinesDir) [config.machinesDir, config.machinesDirSource] = [machinesDir.path, machinesDir.source];
  const hooksDir = file?.paths.hooks_dir;
  if (hooksDir) [config.hooksDir, config.hooksDirSource] = [hooksDir.path === "" ? null : hooksDir.path, hooksDir.source];

  const fromEnv: Array<[string, keyof typeof FLAG_NAMES]> = [
    ["ARCBOX_MACHINES_DIR", "machinesDir"],
    ["ARCBOX_HOOKS_DIR", "hooksDir"],
    ["ARCBOX_LISTEN", "listen"],
  ];
  for (const [variable, key] of fromEnv) {
    const value = env[variable];
    if (value !== undefined && value !== "") applyValue(config, key, value, `environment variable ${variable}`);
  }
  for (const key of Object.keys(FLAG_NAMES) as Array<keyof typeof FLAG_NAMES>) {
    const value = flags[key];
    if (value !== undefined) applyValue(config, key, value, `option ${FLAG_NAMES[key]}`);
  }
  if (flags.noHooks) [config.hooksDir, config.hooksDirSource] = [null, "option --no-hooks"];
  config.machinesDir = resolve(config.machinesDir);
  if (config.hooksDir !== null) config.hooksDir = resolve(config.hooksDir);
  config.daemonLock = file?.paths.daemon_lock?.path ?? defaultDaemonLock(config.machinesDir);
  return config;
}

/** The flags that set a value, with their names for messages. */
const FLAG_NAMES = {
  machinesDir: "--machines-dir",
  hooksDir: "--hooks-dir",
  liveness: "--liveness",
  listen: "--listen",
  workers: "--workers",
  logLevel: "--log-level",
  logFormat: "--log-format",
} as const;

/** A config file's settings, and its paths resolved (relative to the file; `~/` to the home directory) with where each is. */
interface ConfigFileContents {
  settings: FileSettings;
  paths: Partial<Record<"data_dir" | "machines_dir" | "hooks_dir" | "daemon_lock", FilePath>>;
}

/**
 * Reads and checks a config file. Returns null when `file` does not exist and nobody named it; throws
 * ConfigError when it cannot be read or is invalid.
 */
async function readConfigFile(file: string, named: boolean, home: () => string | undefined): Promise<ConfigFileContents | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (!named && (error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  let source: TomlSource;
  try {
    // The parser of machine configs: TOML 1.0, integers as bigint, and the same clear syntax errors.
    ({ document: raw, source } = parseToml(text));
  } catch (error) {
    if (error instanceof TomlSyntaxError) throw new ConfigError(`${file}:${error.line}:${error.column}: invalid TOML: ${error.reason}`);
    throw error;
  }
  const result = fileSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.code === "unrecognized_keys" ? issue.keys[0]! : String(issue.path[0] ?? "");
    const reason =
      issue.code === "unrecognized_keys" ? `unknown key "${key}" (known: ${CONFIG_KEYS.join(", ")})` : `${key}: ${describeIssue(issue)}`;
    throw new ConfigError(`${file}${locateKey(source, key)}: ${reason}`);
  }
  const settings = result.data;
  if (settings.resync_interval !== undefined && settings.resync_interval < 1000) {
    throw new ConfigError(`${file}${locateKey(source, "resync_interval")}: resync_interval: must be at least 1s`);
  }
  const paths: ConfigFileContents["paths"] = {};
  for (const key of ["data_dir", "machines_dir", "hooks_dir", "daemon_lock"] as const) {
    const value = settings[key];
    if (value === undefined) continue;
    const where = `${file}${locateKey(source, key)}`;
    paths[key] = { path: value === "" ? "" : filePath(value, dirname(resolve(file)), home, where, key), source: where };
  }
  return { settings, paths };
}

/** A path of the config file, absolute: `~/x` in the home directory, a relative one beside the file. */
function filePath(value: string, fileDir: string, home: () => string | undefined, where: string, key: string): string {
  if (value === "~" || value.startsWith("~/")) {
    const dir = home();
    if (dir === undefined) throw new ConfigError(`${where}: ${key}: ${JSON.stringify(value)} names the home directory, but this user has none`);
    return join(dir, value.slice(1));
  }
  return isAbsolute(value) ? value : resolve(fileDir, value);
}

/** Applies a config file's settings but its paths (the caller applies those, with their sources). */
function applySettings(config: ControllerConfig, v: FileSettings): void {
  if (v.liveness !== undefined) config.liveness = v.liveness;
  if (v.daemon_poll_interval !== undefined) config.daemonPollIntervalMs = v.daemon_poll_interval;
  if (v.pid_file !== undefined) config.pidFile = v.pid_file;
  if (v.workers !== undefined) config.workers = v.workers;
  if (v.resync_interval !== undefined) config.resyncIntervalMs = v.resync_interval;
  if (v.recheck_interval !== undefined) config.recheckIntervalMs = v.recheck_interval;
  if (v.startup_grace !== undefined) config.startupGraceMs = v.startup_grace;
  if (v.hook_timeout !== undefined) config.hookTimeoutMs = v.hook_timeout;
  if (v.shutdown_timeout !== undefined) config.shutdownTimeoutMs = v.shutdown_timeout;
  if (v.listen !== undefined) config.listen = v.listen;
  if (v.per_machine_metrics !== undefined) config.perMachineMetrics = v.per_machine_metrics;
  if (v.log_level !== undefined) config.logLevel = v.log_level;
  if (v.log_format !== undefined) config.logFormat = v.log_format;
  if (v.allow_untrusted_machines_dir !== undefined) config.allowUntrustedMachinesDir = v.allow_untrusted_machines_dir;
  if (v.show_hook_output !== undefined) config.showHookOutput = v.show_hook_output;
}

/** A schema issue in TOML's terms, with the value found (zod's own messages speak of JavaScript types). */
function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_value":
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(", ")}; found ${describeTomlValue(issue.input)}`;
    case "too_small":
    case "too_big":
      return `${issue.message}; found ${describeTomlValue(issue.input)}`;
    default:
      return issue.message;
  }
}

function applyValue(config: ControllerConfig, key: keyof typeof FLAG_NAMES, value: string, source: string): void {
  switch (key) {
    case "machinesDir":
      if (value === "") throw new ConfigError(`${source}: must not be empty`);
      [config.machinesDir, config.machinesDirSource] = [value, source];
      return;
    case "hooksDir":
      if (value === "") throw new ConfigError(`${source}: must not be empty (to run without hooks, use --no-hooks or hooks_dir = "")`);
      [config.hooksDir, config.hooksDirSource] = [value, source];
      return;
    case "liveness":
      if (!(LIVENESS_MODES as readonly string[]).includes(value)) {
        throw new ConfigError(`${source}: invalid value "${value}" (expected ${LIVENESS_MODES.join(", ")})`);
      }
      config.liveness = value as Liveness;
      return;
    case "listen":
      {
        const problem = listenProblem(value);
        if (problem) throw new ConfigError(`${source}: invalid address "${value}": ${problem}`);
      }
      config.listen = value;
      return;
    case "workers": {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n < 1 || n > 256) {
        throw new ConfigError(`${source}: invalid value "${value}" (expected a whole number from 1 to 256)`);
      }
      config.workers = n;
      return;
    }
    case "logLevel":
      if (!(LOG_LEVELS as readonly string[]).includes(value)) {
        throw new ConfigError(`${source}: invalid value "${value}" (expected one of ${LOG_LEVELS.join(", ")})`);
      }
      config.logLevel = value as LogLevel;
      return;
    case "logFormat":
      if (!(LOG_FORMATS as readonly string[]).includes(value)) {
        throw new ConfigError(`${source}: invalid value "${value}" (expected json or pretty)`);
      }
      config.logFormat = value as LogFormat;
      return;
  }
}

/** `:line:column` of a root-level key (its `[table]` header when it is defined by one), or "" when not found. */
function locateKey(source: TomlSource, key: string): string {
  const entry = key === "" ? undefined : locate(source, [key]);
  if (entry === undefined || entry.path.length !== 1) return "";
  const at = source.position(entry.keyStart);
  return `:${at.line}:${at.column}`;
}
