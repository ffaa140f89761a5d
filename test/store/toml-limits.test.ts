/**
 * A reader that cannot be knocked over: nesting past the limit is an invalid file with its line and
 * column, a long value is read (in a worker thread with a large stack when this thread's is too
 * small), no worker thread outlives a read, and one such file never hides another from a listing.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import type { TomlDate } from "smol-toml";
import { describe, expect, it } from "vitest";
import { InvalidConfigError, MAX_CONFIG_BYTES, parseMachineConfig } from "../../src/store/index.js";
import { datetimeText, parseToml } from "../../src/store/toml-document.js";
import { CLI } from "../helpers/cli-process.js";
import { waitFor } from "../helpers/processes.js";
import { configText, useTempStore } from "./temp-store.js";

/** The nesting limit (docs/design.md#validity). */
const MAX_TOML_NESTING = 100;
const BASE = configText("m");
/** BASE's line count: the first line after it. */
const NEXT_LINE = BASE.split("\n").length;

const errorOf = (text: string): InvalidConfigError => {
  try {
    parseMachineConfig(text, "/m/config.toml", "m");
  } catch (error) {
    if (error instanceof InvalidConfigError) return error;
    throw error;
  }
  throw new Error("expected an InvalidConfigError");
};

const nested = (open: string, close: string, depth: number, inner = "") => `${open.repeat(depth)}${inner}${close.repeat(depth)}`;
/** A string of `length` characters that are not all alike, so that a cut or a shift would show. */
const longText = (length: number) =>
  Array.from({ length: Math.ceil(length / 10) }, (_, i) => `${i}`.padStart(9, "-") + "é").join("").slice(0, length);

const VALUES_RULE =
  "arrays and inline tables are nested more than 100 deep (a rule of arcbox-controller's own; " +
  "arcbox-core loads up to about 1,700 levels and crashes on a stack overflow beyond)";
const KEY_RULE =
  "a key of more than 100 dotted parts (a rule of arcbox-controller's own; " +
  "arcbox-core loads up to about 10,000 parts and crashes on a stack overflow beyond)";

describe("nesting", () => {
  it.each([
    ["2,000 nested arrays (a 4 KB file)", `x = ${nested("[", "]", 2000)}\n`, 4 + MAX_TOML_NESTING + 1],
    ["2,000 nested inline tables", `x = ${nested("{ a = ", " }", 2000, "1")}\n`, 4 + MAX_TOML_NESTING * 6 + 1],
    ["arrays inside inline tables", `x = { a = ${nested("[{ b = ", "}]", 60, "1")} }\n`, 10 + 49 * 7 + 2],
    ["500,000 nested arrays (a 1 MiB file)", `x = ${nested("[", "]", 500_000)}\n`, 4 + MAX_TOML_NESTING + 1],
  ])("%s: invalid, at the first bracket past the limit", (_label, tail, column) => {
    const error = errorOf(`${BASE}${tail}`);
    expect(error.message).toBe(`/m/config.toml:${NEXT_LINE}:${column}: ${VALUES_RULE}`);
  });

  it.each([
    ["a dotted key", (parts: string) => `${parts} = 1\n`, 1],
    ["a header", (parts: string) => `[${parts}]\n`, 2],
    ["an array-of-tables header", (parts: string) => `[[${parts}]]\n`, 3],
    ["a key in an inline table", (parts: string) => `x = { ${parts} = 1 }\n`, 7],
  ])("%s of 101 parts: invalid, at its 101st part; 100 parts are read", (_label, write, start) => {
    const keyOf = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`).join(".");
    const error = errorOf(`${BASE}${write(keyOf(MAX_TOML_NESTING + 1))}`);
    expect(error.message).toBe(`/m/config.toml:${NEXT_LINE}:${start + keyOf(MAX_TOML_NESTING).length + 1}: ${KEY_RULE}`);
    expect(parseMachineConfig(`${BASE}${write(keyOf(MAX_TOML_NESTING))}`, "/m/config.toml", "m").unknownKeys).toHaveLength(1);
  });

  it("100 nested arrays and 100 nested inline tables, under a 100-part header, are read", () => {
    const header = Array.from({ length: MAX_TOML_NESTING }, (_, i) => `h${i}`).join(".");
    const text = `${BASE}a = ${nested("[", "]", 100, "1")}\n[${header}]\nb = ${nested("{ c = ", " }", 100, "2")}\n`;
    const { unknownKeys, document } = parseMachineConfig(text, "/m/config.toml", "m");
    expect(unknownKeys).toEqual(["a", "h0"]);
    let a: unknown = document.a;
    for (let i = 0; i < 100; i++) a = (a as unknown[])[0];
    expect(a).toBe(1n);
  });

  it("a syntax error before deep nesting is reported as such", () => {
    const error = errorOf(`${BASE}y = 1 2\nx = ${nested("[", "]", 5000)}\n`);
    expect([error.line, error.column]).toEqual([NEXT_LINE, 7]);
    expect(error.reason).toMatch(/^invalid TOML: /);
  });
});

describe("long values", () => {
  // Each as large as a 1 MiB file allows (longText takes 11 bytes per 10 characters); `cmdline` so that the value is a field.
  const room = Math.floor((MAX_CONFIG_BYTES - BASE.length - 32) / 11) * 10;
  it.each([
    ["a basic string", (s: string) => `"${s}"`],
    ["a literal string", (s: string) => `'${s}'`],
    ["a multi-line basic string", (s: string) => `"""\n${s}"""`],
    ["a multi-line literal string", (s: string) => `'''${s}'''`],
  ])("%s of 200,000 characters, and one filling a 1 MiB file, is read as written", (_label, quote) => {
    for (const length of [200_000, room]) {
      const value = longText(length);
      const text = `${BASE}cmdline = ${quote(value)}\n`;
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(MAX_CONFIG_BYTES);
      expect(parseMachineConfig(text, "/m/config.toml", "m").machine.cmdline).toBe(value);
    }
  });

  it("a long float, a long quoted key and a long array are read", () => {
    const key = longText(300_000);
    const text = `${BASE}f = 1.${"0".repeat(300_000)}1\n"${key}" = 1\nlist = [${"7, ".repeat(100_000)}]\n`;
    const { document } = parseMachineConfig(text, "/m/config.toml", "m");
    expect(document.f).toBe(1);
    expect(document[key]).toBe(1n);
    expect((document.list as unknown[]).length).toBe(100_000);
  });

  it("a syntax error after a long value is found at its line and column", () => {
    const error = errorOf(`${BASE}cmdline = "${longText(200_000)}"\nbad = [1,,]\n`);
    expect([error.line, error.column]).toEqual([NEXT_LINE + 1, 10]);
    expect(error.reason).toMatch(/^invalid TOML: /);
  });

  it("a date with a day its month lacks, after a long value, is read as arcbox-core reads it", () => {
    const { document } = parseToml(`cmdline = "${longText(200_000)}"\nd = 2021-02-30\n`);
    expect(datetimeText(document.d as TomlDate)).toBe("raw:2021-02-30");
  });

  it("is read the same in a process started as a module (`node --input-type=module -e`, the build)", async () => {
    const store = pathToFileURL(join(dirname(CLI), "store", "index.js")).href;
    const code = [
      `import { parseMachineConfig } from ${JSON.stringify(store)};`,
      `const text = ${JSON.stringify(BASE)} + 'cmdline = "' + "c".repeat(300000) + '"\\n';`,
      `console.log(parseMachineConfig(text, "/m/config.toml", "m").machine.cmdline.length);`,
    ].join("\n");
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", code]);
    expect(stdout).toBe("300000\n");
  });

  it.skipIf(process.platform !== "linux")("leaves no thread running after the read", async () => {
    const threads = () => readdirSync("/proc/self/task").length;
    const before = threads();
    for (let i = 0; i < 3; i++) parseMachineConfig(`${BASE}cmdline = "${longText(300_000)}"\n`, "/m/config.toml", "m");
    await waitFor(() => threads() <= before, `the thread count to fall back to ${before} (now ${threads()})`);
  });
});

describe("one file never affects another's listing", () => {
  const t = useTempStore();

  it("loadAll reads every machine: deeply nested ones are invalid with their line and column, a long value is read", async () => {
    await t.put("a-good", configText("a-good"));
    await t.put("deep", `${configText("deep")}x = ${nested("[", "]", 2000)}\n`);
    await t.put("deep-key", `${configText("deep-key")}${Array.from({ length: 20_000 }, () => "k").join(".")} = 1\n`);
    await t.put("long", `${configText("long")}kernel = "${longText(200_000)}"\n`);
    await t.put("z-good", configText("z-good"));
    const { machines, invalid } = await t.store.loadAll();
    expect(machines.map((m) => m.machine.name)).toEqual(["a-good", "long", "z-good"]);
    expect(machines[1]?.machine.kernel).toHaveLength(200_000);
    const where = (error: unknown) => (error instanceof InvalidConfigError ? [error.line, error.column] : [error]);
    expect(invalid.map((i) => [i.name, ...where(i.error)])).toEqual([
      ["deep", NEXT_LINE, 4 + MAX_TOML_NESTING + 1],
      ["deep-key", NEXT_LINE, 2 * MAX_TOML_NESTING + 1],
    ]);
  });
});
