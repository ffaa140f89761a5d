/**
 * docs/design.md is the contract: every citation of it in the code and tests resolves to one of its
 * anchors, nothing cites the retired design file, and its metric and configuration tables name
 * exactly what the code defines.
 */
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CONFIG_KEYS } from "../../src/controller/config.js";
import { ControllerMetrics } from "../../src/metrics/controller-metrics.js";
import { documentedMetrics } from "../manifests/design-metrics.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const design = await readFile(path.join(repoRoot, "docs/design.md"), "utf8");
const anchors = [...design.matchAll(/<a id="([a-z0-9-]+)"><\/a>/g)].map((match) => match[1]!);

/** The project's own text files: code, tests, benches, scripts, manifests and docs (not images). */
async function textFiles(): Promise<string[]> {
  const files = [path.join(repoRoot, "README.md")];
  for (const dir of ["src", "test", "bench", "scripts", "manifests", "docs", ".ci"]) {
    const entries = await readdir(path.join(repoRoot, dir), { recursive: true, withFileTypes: true });
    files.push(...entries.filter((entry) => entry.isFile() && !entry.name.endsWith(".png")).map((entry) => path.join(entry.parentPath, entry.name)));
  }
  return files;
}

describe("docs/design.md", () => {
  it("gives every anchor once, each right before a heading", () => {
    expect(new Set(anchors).size).toBe(anchors.length);
    for (const anchor of anchors) expect(design, anchor).toMatch(new RegExp(`<a id="${anchor}"></a>\\n#{2,3} `));
    expect(anchors).toEqual(expect.arrayContaining(["files", "validity", "write-protocol", "reconcile-rules", "instance-lock", "shutdown"]));
    expect(anchors).toEqual(expect.arrayContaining(["liveness", "hooks", "hooks-directory", "cli", "exit-codes", "configuration", "data-dir", "metrics", "layers"]));
  });

  it("resolves every citation in the code, tests, manifests and docs to one of its anchors, and nothing cites the retired file", async () => {
    const retired = new RegExp(["DESIGN", "(?: ?§|\\.md|'s)"].join(""));
    let citations = 0;
    for (const file of await textFiles()) {
      const text = await readFile(file, "utf8");
      const where = path.relative(repoRoot, file);
      expect(retired.test(text), `${where} cites the retired design file`).toBe(false);
      for (const match of text.matchAll(/design\.md#([A-Za-z0-9-]+)/g)) {
        citations++;
        expect(anchors, `${where}: design.md#${match[1]}`).toContain(match[1]);
      }
    }
    expect(citations).toBeGreaterThan(20);
  });

  it("lists exactly the arcbox_ metrics the controller registers, with their types", async () => {
    const metrics = new ControllerMetrics({ version: "test", daemonLiveness: true, perMachineMetrics: true });
    metrics.setMachine("web", "running", false, true);
    const exposed = [...(await metrics.metricsText()).matchAll(/^# TYPE (arcbox_\S+) (\S+)$/gm)].map((match): [string, string] => [match[1]!, match[2]!]);
    expect(new Map([...documentedMetrics(design)].sort())).toEqual(new Map(exposed.sort()));
  });

  it("lists exactly the keys the config file may hold, in the loader's order", () => {
    const section = design.split('<a id="configuration"></a>')[1]!.split("<a id=")[0]!;
    const keys = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((match) => match[1]);
    expect(keys).toEqual([...CONFIG_KEYS]);
  });
});
