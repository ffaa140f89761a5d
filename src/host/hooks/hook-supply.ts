/**
 * Which hooks a recovery runs (docs/design.md#hooks-directory). A directory someone named must be
 * usable, or nothing starts; one that vanishes or stops being trusted later fails each recovery. No
 * hooks is either a choice (`hooks_dir = ""`, `--no-hooks`) or the default directory missing on a
 * new host, and then every recovery says so. It never silently means "recovered with no hook".
 */
import { stat } from "node:fs/promises";
import { NoAnswerError, OverdueCalls } from "../../platform/deadline.js";
import { cachedHookDiscovery, checkHooksDirectoryTrust, HooksDirectoryError, type DiscoveredHooks } from "./discovery.js";
import type { ExecutableHookOptions } from "./executable-hook.js";
import type { NetworkHook } from "./network-hook.js";

/** The hooks of one recovery. */
export interface HookSet {
  hooks: readonly NetworkHook[];
  /** Why the recovery runs no hook for want of a directory (hooks off, the default one missing); absent otherwise. */
  noHooks?: string;
}

/** Gives each recovery its hooks. */
export interface HookSupply {
  /** The hooks to run now, in order. Rejects when a directory that must be used cannot be: the recovery fails. */
  current(): Promise<HookSet>;
}

/** Where the executable hooks are: a directory, or null for none; `source` names who chose it (null: the default). */
export interface HooksSetting {
  dir: string | null;
  source: string | null;
}

/** What the start-up check found, to be logged once. */
export interface HooksNotice {
  level: "info" | "warn";
  message: string;
  /** Log fields: `hooks_dir`, the hooks found. */
  fields: Record<string, unknown>;
}

/** How the hooks stand now, for the landing page and `get`. */
export interface HooksStatus {
  /** True when recoveries run no hook although nobody chose that (the default directory is missing). */
  warning: boolean;
  text: string;
}

export interface DirectoryHookSupplyOptions extends ExecutableHookOptions {
  /** Told of every fresh discovery (the known hooks' metrics; warnings for skipped entries). */
  onDiscovered?: (found: DiscoveredHooks) => void;
}

/** In-process hooks (library use), always the same. */
export function fixedHooks(hooks: readonly NetworkHook[]): HookSupply {
  const set: HookSet = { hooks };
  return { current: async () => set };
}

/** The executable hooks of a hooks directory, or none by choice. */
export class DirectoryHookSupply implements HookSupply {
  readonly #setting: HooksSetting;
  readonly #discover: (() => Promise<DiscoveredHooks & { changed: boolean }>) | undefined;
  readonly #onDiscovered: DirectoryHookSupplyOptions["onDiscovered"];
  readonly #calls: OverdueCalls;
  /** The default directory was missing at start and has not appeared since: recoveries run no hook. */
  #defaultMissing = false;
  #lastHooks: readonly string[] | undefined;

  constructor(setting: HooksSetting, options: DirectoryHookSupplyOptions = {}) {
    this.#setting = setting;
    this.#onDiscovered = options.onDiscovered;
    this.#calls = options.calls ?? new OverdueCalls();
    const { onDiscovered: _ignored, ...hookOptions } = options;
    this.#discover = setting.dir === null ? undefined : cachedHookDiscovery(setting.dir, { ...hookOptions, calls: this.#calls });
  }

  /**
   * The start-up check: resolves with what to log once. Throws {@link HooksDirectoryError} when a
   * named directory is missing, or any directory is not a directory, is not trusted or cannot be read;
   * the message then says who named it. A missing default directory is a warning, as is one without
   * any hook to run, and one that does not answer (a hung mount: each recovery fails until it does).
   */
  async check(): Promise<HooksNotice> {
    const { dir, source } = this.#setting;
    if (dir === null) return { level: "info", message: `running without network hooks (${source ?? "hooks off"})`, fields: {} };
    let found: DiscoveredHooks;
    try {
      found = await this.#answered(dir, "the check", async () => {
        await checkHooksDirectoryTrust(dir);
        return this.#discovered();
      });
    } catch (error) {
      if (error instanceof HooksDirectoryError && error.code === "ETIMEDOUT") return { level: "warn", message: error.message, fields: { hooks_dir: dir } };
      if (error instanceof HooksDirectoryError && error.code === "ENOENT" && source === null) {
        this.#defaultMissing = true;
        const message = `no hooks directory: the default ${dir} does not exist, so recoveries run no network hook until it does (create it, or set hooks_dir = "" to run without hooks)`;
        return { level: "warn", message, fields: { hooks_dir: dir } };
      }
      throw withSource(error, source);
    }
    const hooks = found.hooks.map((hook) => hook.name);
    if (hooks.length > 0) return { level: "info", message: "network hooks", fields: { hooks_dir: dir, hooks } };
    const message = `hooks directory ${dir} holds no hook to run: recoveries run none`;
    return { level: "warn", message, fields: { hooks_dir: dir, skipped: found.skipped.length } };
  }

  async current(): Promise<HookSet> {
    const { dir, source } = this.#setting;
    if (dir === null) return { hooks: [], noHooks: `hooks are off (${source ?? "no hooks directory"})` };
    return this.#answered(dir, "a look", async () => {
      if (this.#defaultMissing) {
        if (!(await exists(dir))) return { hooks: [], noHooks: `the default hooks directory ${dir} does not exist` };
        this.#defaultMissing = false; // from now on it must be there
      }
      return { hooks: (await this.#discovered()).hooks };
    });
  }

  /**
   * `work` on the hooks directory, within the file system deadline: one that does not answer (a hung
   * mount) rejects with HooksDirectoryError code ETIMEDOUT, and so does every later look until it has.
   */
  async #answered<T>(dir: string, what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await this.#calls.run(dir, `${what} of ${dir}`, work);
    } catch (error) {
      if (!(error instanceof NoAnswerError)) throw error;
      throw new HooksDirectoryError(dir, "ETIMEDOUT", `does not answer (a hung mount?): ${error.message}; recoveries fail until it does`, { cause: error });
    }
  }

  /** How the hooks stand, as far as the last check or recovery found. */
  status(): HooksStatus {
    const { dir, source } = this.#setting;
    if (dir === null) return { warning: false, text: `off (${source ?? "no hooks directory"})` };
    if (this.#defaultMissing) return { warning: true, text: `none: the default hooks directory ${dir} does not exist; recoveries run no hook` };
    const hooks = this.#lastHooks;
    return { warning: false, text: hooks === undefined ? dir : `${hooks.length === 0 ? "none" : hooks.join(", ")} in ${dir}` };
  }

  async #discovered(): Promise<DiscoveredHooks> {
    const found = await this.#discover!();
    if (found.changed) {
      this.#lastHooks = found.hooks.map((hook) => hook.name);
      this.#onDiscovered?.(found);
    }
    return found;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (error: unknown) => (error as NodeJS.ErrnoException).code !== "ENOENT",
  );
}

/** A hooks-directory error of the start-up check, saying who named the directory and how to go on. */
function withSource(error: unknown, source: string | null): unknown {
  if (!(error instanceof HooksDirectoryError) || source === null) return error;
  const detail = error.message.slice(`hooks directory ${error.path} `.length);
  const hint = error.code === "ENOENT" || error.code === "ENOTDIR" ? `; fix the path, or run without hooks: --no-hooks or hooks_dir = ""` : "";
  return new HooksDirectoryError(error.path, error.code, `${detail} (named by ${source})${hint}`, { cause: error });
}
