/**
 * The controller's configuration (DESIGN §6): defaults, the TOML config file, environment and flags.
 * Precedence: flags beat environment, which beats the config file, which beats defaults.
 * Every problem is a `ConfigError` whose message names the source (file:line, variable or flag).
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { parseListenAddress } from "../metrics/listen-address.js";
import { describeTomlValue } from "../store/schema.js";
import { locate, parseToml, TomlSyntaxError, type TomlSource } from "../store/toml-document.js";

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
  machinesDir: string;
  hooksDir: string;
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
}

/** A configuration problem: the command exits 2 and touches nothing. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export const DEFAULT_CONFIG_FILE = "/etc/arcbox/controller.toml";

/**
 * The config files read when `--config` is not given: the first that exists. On macOS, where the
 * controller is a per-user launchd agent beside arcbox's own, `~/.arcbox/controller.toml` comes first.
 */
export function defaultConfigFiles(platform: NodeJS.Platform = process.platform): string[] {
  return platform === "darwin" ? [join(homedir(), ".arcbox", "controller.toml"), DEFAULT_CONFIG_FILE] : [DEFAULT_CONFIG_FILE];
}

/** `run/daemon.lock` beside the machines directory: where arcbox's daemon keeps its lock. */
export function defaultDaemonLock(machinesDir: string): string {
  return join(dirname(resolve(machinesDir)), "run", "daemon.lock");
}

/**
 * Defaults of DESIGN §6. `machinesDir` follows arcbox (`~/.arcbox/machines`). On macOS, where
 * arcbox keeps everything per user, the hooks default to `~/.arcbox/hooks/network.d`.
 */
export function defaultConfig(platform: NodeJS.Platform = process.platform): ControllerConfig {
  const machinesDir = join(homedir(), ".arcbox", "machines");
  return {
    machinesDir,
    hooksDir: platform === "darwin" ? join(homedir(), ".arcbox", "hooks", "network.d") : "/etc/arcbox/hooks/network.d",
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

/** The TOML file's schema: strict, so a misspelt key is an error rather than silently ignored. */
const fileSchema = z.strictObject({
  machines_dir: z.string(expecting("a string")).min(1, "must not be empty").optional(),
  hooks_dir: z.string(expecting("a string")).min(1, "must not be empty").optional(),
  liveness: z.enum(LIVENESS_MODES).optional(),
  daemon_lock: z.string(expecting("a string")).min(1, "must not be empty").optional(),
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
});

/** Options given on the command line; `undefined` means not given. */
export interface ConfigFlags {
  config?: string;
  machinesDir?: string;
  hooksDir?: string;
  liveness?: string;
  listen?: string;
  workers?: string;
  logLevel?: string;
  logFormat?: string;
}

/**
 * Resolves the configuration from defaults, the config file (`flags.config`, else the first of
 * {@link defaultConfigFiles} that exists), the environment and the flags. `daemonLock` follows the
 * final `machinesDir` unless set explicitly. Throws `ConfigError` for an unreadable or invalid file,
 * or a bad value in any source.
 */
export async function loadConfig(
  flags: ConfigFlags,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): Promise<ControllerConfig> {
  const config = defaultConfig(platform);
  let explicitDaemonLock: string | undefined;
  const candidates = flags.config !== undefined ? [flags.config] : defaultConfigFiles(platform);
  for (const file of candidates) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (flags.config === undefined && code === "ENOENT") continue;
      throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
    }
    explicitDaemonLock = applyFile(config, file, text);
    config.configFile = resolve(file);
    break;
  }

  const fromEnv: Array<[string, keyof ConfigFlags]> = [
    ["ARCBOX_MACHINES_DIR", "machinesDir"],
    ["ARCBOX_HOOKS_DIR", "hooksDir"],
    ["ARCBOX_LISTEN", "listen"],
  ];
  for (const [variable, key] of fromEnv) {
    const value = env[variable];
    if (value !== undefined && value !== "") applyValue(config, key, value, `environment variable ${variable}`);
  }
  const flagNames: Record<keyof ConfigFlags, string> = {
    config: "--config",
    machinesDir: "--machines-dir",
    hooksDir: "--hooks-dir",
    liveness: "--liveness",
    listen: "--listen",
    workers: "--workers",
    logLevel: "--log-level",
    logFormat: "--log-format",
  };
  for (const key of Object.keys(flagNames) as Array<keyof ConfigFlags>) {
    const value = flags[key];
    if (key !== "config" && value !== undefined) applyValue(config, key, value, `option ${flagNames[key]}`);
  }
  config.machinesDir = resolve(config.machinesDir);
  config.hooksDir = resolve(config.hooksDir);
  config.daemonLock = explicitDaemonLock ?? defaultDaemonLock(config.machinesDir);
  return config;
}

/** Returns the file's `daemon_lock` (resolved) when it sets one. */
function applyFile(config: ControllerConfig, file: string, text: string): string | undefined {
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
    const where = locateKey(source, key);
    const reason =
      issue.code === "unrecognized_keys"
        ? `unknown key "${key}" (known: ${Object.keys(fileSchema.shape).join(", ")})`
        : `${key}: ${describeIssue(issue)}`;
    throw new ConfigError(`${file}${where}: ${reason}`);
  }
  const v = result.data;
  const dir = resolve(file, "..");
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(dir, p));
  if (v.machines_dir !== undefined) config.machinesDir = path(v.machines_dir);
  if (v.hooks_dir !== undefined) config.hooksDir = path(v.hooks_dir);
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
  if (config.resyncIntervalMs < 1000) throw new ConfigError(`${file}${locateKey(source, "resync_interval")}: resync_interval: must be at least 1s`);
  return v.daemon_lock === undefined ? undefined : path(v.daemon_lock);
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

function applyValue(config: ControllerConfig, key: keyof ConfigFlags, value: string, source: string): void {
  switch (key) {
    case "machinesDir":
    case "hooksDir":
      if (value === "") throw new ConfigError(`${source}: must not be empty`);
      config[key] = value;
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
    case "config":
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
