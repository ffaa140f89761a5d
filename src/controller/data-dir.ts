/**
 * ArcBox's data directory, found the way arcbox finds it (docs/design.md#data-dir): arcbox-constants'
 * `HostLayout::resolve_for_profile_from_env`. An explicit directory wins; then a non-empty
 * `ARCBOX_DATA_DIR`; then the profile's directory in the home directory (`~/.arcbox`, or
 * `~/.arcbox-dev` with `ARCBOX_PROFILE=development`); without a home, `/var/lib/arcbox`. The same on
 * Linux and macOS.
 */
import { userInfo } from "node:os";
import { join } from "node:path";

/** arcbox's own override of its data directory. */
export const DATA_DIR_VARIABLE = "ARCBOX_DATA_DIR";
/** arcbox's profile: `production` (default) or `development`. */
export const PROFILE_VARIABLE = "ARCBOX_PROFILE";
/** Where arcbox keeps its data when no home directory can be found. */
export const NO_HOME_DATA_DIR = "/var/lib/arcbox";

/** A data directory and what chose it, for messages (`environment variable ARCBOX_DATA_DIR`, …). */
export interface DataDirChoice {
  path: string;
  source: string;
}

/** The home directory, as Rust's `dirs::home_dir()` finds it: a non-empty `HOME`, else the password database. */
export function homeDirectory(env: NodeJS.ProcessEnv, passwdHome: () => string | undefined = passwdHomeDirectory): string | undefined {
  const home = env.HOME;
  if (home !== undefined && home !== "") return home;
  const fromPasswd = passwdHome();
  return fromPasswd === undefined || fromPasswd === "" ? undefined : fromPasswd;
}

/** The home directory of this process's user in the password database, or undefined when it has none. */
export function passwdHomeDirectory(): string | undefined {
  try {
    return userInfo().homedir;
  } catch {
    return undefined; // no entry for this uid (a container's arbitrary user)
  }
}

/**
 * The name of the profile's directory in the home directory. arcbox parses the profile trimmed and
 * case-insensitively; it falls back to production for a value it does not know, which the controller
 * refuses instead (a typo would make it manage another profile's machines): throws an Error naming
 * the value.
 */
export function profileDirectoryName(profile: string | undefined): string {
  if (profile === undefined || profile === "") return ".arcbox";
  switch (profile.trim().toLowerCase()) {
    case "production":
    case "prod":
      return ".arcbox";
    case "development":
    case "dev":
      return ".arcbox-dev";
    default:
      throw new Error(`unknown ArcBox profile ${JSON.stringify(profile)} (expected production or development)`);
  }
}

/**
 * arcbox's default data directory for this environment, without an explicit one: `ARCBOX_DATA_DIR`
 * when set and not empty, else the profile's directory in the home directory, else
 * {@link NO_HOME_DATA_DIR}. Throws an Error for an unknown `ARCBOX_PROFILE`.
 */
export function arcboxDataDir(env: NodeJS.ProcessEnv, passwdHome?: () => string | undefined): DataDirChoice {
  const override = env[DATA_DIR_VARIABLE];
  if (override !== undefined && override !== "") return { path: override, source: `environment variable ${DATA_DIR_VARIABLE}` };
  const name = profileDirectoryName(env[PROFILE_VARIABLE]);
  const home = homeDirectory(env, passwdHome);
  if (home === undefined) return { path: NO_HOME_DATA_DIR, source: "the default without a home directory" };
  return { path: join(home, name), source: `the default in the home directory${name === ".arcbox" ? "" : ` (${PROFILE_VARIABLE})`}` };
}
