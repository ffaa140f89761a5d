/**
 * The controller's configuration (DESIGN §6): defaults, the TOML config file, environment and flags.
 * Precedence: flags beat environment, which beats the config file, which beats defaults.
 * Every problem is a `ConfigError` whose message names the source (file:line, variable or flag).
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { parseListenAddress } from "../metrics/listen-address.js";
import { locate, scanLayout } from "../store/toml-layout.js";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LIVENESS_MODES = ["pidfile", "none"] as const;
export type Liveness = (typeof LIVENESS_MODES)[number];

/** The resolved configuration. Durations are in milliseconds; paths are absolute. */
export interface ControllerConfig {
  machinesDir: string;
  hooksDir: string;
  liveness: Liveness;
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
  /** The config file that was read, if any. */
  configFile: string | null;
}

/** A configuration problem: the command exits 2 and touches nothing. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export const DEFAULT_CONFIG_FILE = "/etc/arcbox/controller.toml";

/** Defaults of DESIGN §6; `machinesDir` follows arcbox-core (`~/.arcbox/machines`). */
export function defaultConfig(): ControllerConfig {
  return {
    machinesDir: join(homedir(), ".arcbox", "machines"),
    hooksDir: "/etc/arcbox/hooks/network.d",
    liveness: "pidfile",
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
    configFile: null,
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

const durationText = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === null) {
    ctx.addIssue({ code: "custom", message: `invalid duration ${JSON.stringify(text)} (use e.g. "250ms", "30s", "5m", "1h")` });
    return z.NEVER;
  }
  return ms;
});

const positiveDuration = durationText.refine((ms) => ms > 0, { message: "must be longer than 0" });

const listenText = z.string().superRefine((text, ctx) => {
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
  .string()
  .regex(/^[^/\0]+$/, "must be a file name inside the machine directory, without '/'")
  .refine((name) => name !== "." && name !== "..", "must be a file name, not '.' or '..'");

/** The TOML file's schema: strict, so a misspelt key is an error rather than silently ignored. */
const fileSchema = z.strictObject({
  machines_dir: z.string().min(1).optional(),
  hooks_dir: z.string().min(1).optional(),
  liveness: z.enum(LIVENESS_MODES).optional(),
  pid_file: pidFileText.optional(),
  workers: z.bigint().min(1n).max(256n).transform(Number).optional(),
  resync_interval: durationText.optional(),
  recheck_interval: durationText.optional(),
  startup_grace: durationText.optional(),
  hook_timeout: positiveDuration.optional(),
  shutdown_timeout: positiveDuration.optional(),
  listen: listenText.optional(),
  per_machine_metrics: z.boolean().optional(),
  log_level: z.enum(LOG_LEVELS).optional(),
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
}

/**
 * Resolves the configuration from defaults, the config file (`flags.config`, else
 * `/etc/arcbox/controller.toml` when it exists), the environment and the flags.
 * Throws `ConfigError` for an unreadable or invalid file, or a bad value in any source.
 */
export async function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env): Promise<ControllerConfig> {
  const config = defaultConfig();
  const explicitFile = flags.config !== undefined;
  const file = flags.config ?? DEFAULT_CONFIG_FILE;
  let text: string | null = null;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (explicitFile || code !== "ENOENT") {
      throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
    }
  }
  if (text !== null) {
    applyFile(config, file, text);
    config.configFile = resolve(file);
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
  };
  for (const key of Object.keys(flagNames) as Array<keyof ConfigFlags>) {
    const value = flags[key];
    if (key !== "config" && value !== undefined) applyValue(config, key, value, `option ${flagNames[key]}`);
  }
  config.machinesDir = resolve(config.machinesDir);
  config.hooksDir = resolve(config.hooksDir);
  return config;
}

function applyFile(config: ControllerConfig, file: string, text: string): void {
  let raw: unknown;
  try {
    raw = parseToml(text, { integersAsBigInt: true });
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0]?.replace(/^Invalid TOML document: /, "") ?? "invalid TOML";
      throw new ConfigError(`${file}:${error.line}:${error.column}: ${reason}`);
    }
    throw error;
  }
  const result = fileSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.code === "unrecognized_keys" ? issue.keys[0]! : String(issue.path[0] ?? "");
    const where = locateKey(text, key);
    const reason =
      issue.code === "unrecognized_keys"
        ? `unknown key "${key}" (known: ${Object.keys(fileSchema.shape).join(", ")})`
        : `${key}: ${issue.message}`;
    throw new ConfigError(`${file}${where}: ${reason}`);
  }
  const v = result.data;
  const dir = resolve(file, "..");
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(dir, p));
  if (v.machines_dir !== undefined) config.machinesDir = path(v.machines_dir);
  if (v.hooks_dir !== undefined) config.hooksDir = path(v.hooks_dir);
  if (v.liveness !== undefined) config.liveness = v.liveness;
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
  if (config.resyncIntervalMs < 1000) throw new ConfigError(`${file}${locateKey(text, "resync_interval")}: resync_interval: must be at least 1s`);
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
        throw new ConfigError(`${source}: invalid value "${value}" (expected pidfile or none)`);
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
    case "config":
      return;
  }
}

/** `:line:column` of a root-level `key =` line, or "" when not found. */
function locateKey(text: string, key: string): string {
  const layout = key === "" ? undefined : scanLayout(text);
  const entry = layout && locate(layout, [key]);
  if (!layout || !entry || entry.kind !== "key") return "";
  const { line, column } = layout.position(entry.keyStart);
  return `:${line}:${column}`;
}
