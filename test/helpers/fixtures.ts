/**
 * Where the config files written by the Rust core live: `../shared/fixtures/rust` beside the repo
 * (ARCBOX_FIXTURES_DIR overrides).
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the fixtures directory (holding `toml05/` and `toml08/`). */
export const FIXTURES_DIR: string =
  process.env.ARCBOX_FIXTURES_DIR ?? fileURLToPath(new URL("../../../shared/fixtures/rust/", import.meta.url));

/** `layout/name` of every fixture machine, e.g. `toml05/dev`. Throws when the directory is missing. */
export function fixtureMachines(): string[] {
  const out: string[] = [];
  for (const layout of readdirSync(FIXTURES_DIR, { withFileTypes: true })) {
    if (!layout.isDirectory()) continue;
    for (const machine of readdirSync(join(FIXTURES_DIR, layout.name), { withFileTypes: true })) {
      if (machine.isDirectory()) out.push(`${layout.name}/${machine.name}`);
    }
  }
  return out.sort();
}

/** Path of one fixture's config.toml, e.g. `fixtureConfig("toml05/dev")`. */
export function fixtureConfig(id: string): string {
  return join(FIXTURES_DIR, id, "config.toml");
}

/** Same as FIXTURES_DIR (the name other test suites import). */
export const fixturesDir: string = FIXTURES_DIR;
