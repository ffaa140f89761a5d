/**
 * Differential tests against arcbox-core's own loader: a generated corpus of config files gets the
 * same verdict from the controller and from arcbox-core and, when accepted, the same field values.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { InvalidConfigError, parseMachineConfig, StoreError } from "../../src/store/index.js";
import { decodeUtf8 } from "../../src/store/config-file.js";
import { coreCheckAll, coreLine, itWithCoreLoader, withoutCreatedAt, type CoreVerdict } from "../helpers/arcbox-core.js";
import { corpusDocument } from "./toml-corpus.js";

const CASES = Number(process.env.ARCBOX_DIFFERENTIAL_CASES ?? 6000);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arcbox-differential-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The controller's reading of one file: accepted with the loader's line for it, or refused with the reason. */
function controllerVerdict(bytes: Buffer, path: string, name: string): { ok: true; line: string; hasCreatedAt: boolean } | { ok: false; reason: string } {
  try {
    const parsed = parseMachineConfig(decodeUtf8(bytes, path), path, name);
    return { ok: true, line: coreLine(parsed.machine), hasCreatedAt: parsed.document.created_at !== undefined };
  } catch (error) {
    if (error instanceof InvalidConfigError || error instanceof StoreError) return { ok: false, reason: error.message };
    throw error;
  }
}

describe("arcbox-core differential", () => {
  itWithCoreLoader(
    `a generated corpus of ${CASES} config files: same verdict and same fields as arcbox-core`,
    async (loader) => {
      const seed = Number(process.env.ARCBOX_DIFFERENTIAL_SEED ?? Date.now() % 2 ** 31);
      const docs = fc.sample(corpusDocument, { numRuns: CASES, seed });
      const names = docs.map((_, i) => `c${i}`);
      const files = docs.map((doc, i) => doc.render(names[i] as string));
      await Promise.all(names.map(async (name, i) => {
        await mkdir(join(dir, name));
        await writeFile(join(dir, name, "config.toml"), files[i] as Buffer);
      }));
      const started = performance.now();
      const verdicts: CoreVerdict[] = await coreCheckAll(loader, dir, names);
      const loaderMs = Math.round(performance.now() - started);
      const disagreements: string[] = [];
      let accepted = 0;
      names.forEach((name, i) => {
        const core = verdicts[i] as CoreVerdict;
        const ours = controllerVerdict(files[i] as Buffer, join(dir, name, "config.toml"), name);
        if (core.ok) accepted++;
        let problem: string | undefined;
        if (core.ok !== ours.ok) problem = `arcbox-core ${core.ok ? "accepts" : "refuses"}, the controller ${ours.ok ? "accepts" : "refuses"}`;
        else if (ours.ok && core.ok) {
          const expected = ours.hasCreatedAt ? core.output : withoutCreatedAt(core.output);
          const actual = ours.hasCreatedAt ? ours.line : withoutCreatedAt(ours.line);
          if (expected !== actual) problem = `fields differ:\n  arcbox-core: ${expected}  controller:  ${actual}`;
        }
        if (problem !== undefined) {
          disagreements.push(`${name}: ${problem}\n  arcbox-core: ${core.output.trim()}\n  controller: ${ours.ok ? "ok" : ours.reason}\n  file: ${JSON.stringify((files[i] as Buffer).toString("utf8"))}`);
        }
      });
      console.log(
        `differential corpus: ${CASES} cases (seed ${seed}; ARCBOX_DIFFERENTIAL_SEED=${seed} repeats it), ${accepted} accepted by arcbox-core, ` +
          `${CASES - accepted} refused, ${disagreements.length} disagreements; loader time ${loaderMs} ms`,
      );
      expect(disagreements.slice(0, 10).join("\n\n"), `${disagreements.length} disagreements (seed ${seed})`).toBe("");
      // The corpus must exercise both verdicts in earnest.
      expect(accepted).toBeGreaterThan(CASES / 5);
      expect(CASES - accepted).toBeGreaterThan(CASES / 5);
    },
    300_000,
  );
});
