/**
 * Names and paths from the disk in the output of the built CLI's read-only commands: a newline in a
 * name forges no row or line, a terminal escape or a bidi control reaches no terminal as it is, a
 * name that is not UTF-8 is shown faithfully, and no two names are ever shown alike
 * (docs/design.md#cli).
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli, type CliResult } from "../helpers/cli-process.js";
import { readEscapedText } from "../helpers/escaped-text.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

/** Machine directories with hostile names (each holding a config.toml), and the spelling each must have. */
const HOSTILE: ReadonlyArray<{ name: Buffer; spelled: string }> = [
  { name: Buffer.from("a\nFORGED   running   yes"), spelled: "a\\nFORGED   running   yes" },
  { name: Buffer.from("\x1b[31mred"), spelled: "\\x1b[31mred" },
  { name: Buffer.from("\u202eevil"), spelled: "\\u202eevil" },
  { name: Buffer.from("back\\nslash"), spelled: "back\\\\nslash" },
  { name: Buffer.from([0x66, 0xff]), spelled: "f\\xff" },
  { name: Buffer.from([0x66, 0xfe]), spelled: "f\\xfe" },
];
/** Not UTF-8: no machine for arcbox-core, so `NoConfig`; the others break the name rule, so `Invalid`. */
const NOT_UTF8 = new Set(["f\\xff", "f\\xfe"]);

/** What no line of output may hold as it is: control and format characters (bidi ones too), line separators, U+FFFD. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\ufffd]/u;

/** Checks that `text` is lines of printable text, each ended by a newline. */
function expectPrintableLines(text: string): void {
  for (const line of linesOf(text)) expect(line).not.toMatch(UNSAFE);
}

let root: string;
let config: string;
let machines: string;

beforeEach(async () => {
  root = await makeTempDir("names");
  config = path.join(root, "controller.toml");
  machines = path.join(root, "machines");
  await writeFile(config, "# defaults\n");
  await mkdir(machines);
  for (const { name } of HOSTILE) {
    const dir = Buffer.concat([Buffer.from(`${machines}/`), name]);
    await mkdir(dir);
    await writeFile(Buffer.concat([dir, Buffer.from("/config.toml")]), machineToml("hostile"));
  }
  await writeMachine(machines, "ok", machineToml("ok"));
  // A config value is text from the disk too.
  await writeMachine(machines, "web", machineToml("web", { ip: "10.0.2.15\\nFORGED" }));
});
afterEach(() => removeTempDir(root));

function arcbox(args: string[]): Promise<CliResult> {
  return runCli(["--config", config, "--no-hooks", ...args]);
}

/** The lines of `text`, which must end in a newline. */
function linesOf(text: string): string[] {
  expect(text.endsWith("\n")).toBe(true);
  return text.slice(0, -1).split("\n");
}

describe("get", () => {
  it("prints one row per entry, each name escaped, faithful and distinct, and nothing a terminal acts on", async () => {
    const result = await arcbox(["get", "-d", machines]);
    expect(result.code).toBe(0);
    expectPrintableLines(result.stdout);
    const [header, ...rows] = linesOf(result.stdout);
    expect(rows).toHaveLength(HOSTILE.length + 2);
    const stateColumn = header!.indexOf("STATE");
    const statusColumn = header!.indexOf("STATUS");
    const byName = new Map(rows.map((row) => [row.slice(0, stateColumn).trimEnd(), row.slice(statusColumn)]));
    expect(byName.size).toBe(rows.length);
    for (const { name, spelled } of HOSTILE) {
      expect(byName.get(spelled), spelled).toMatch(NOT_UTF8.has(spelled) ? /^NoConfig$/ : /^Invalid: .*invalid machine name/);
      expect(readEscapedText(spelled)).toEqual(name);
    }
    expect(byName.get("ok")).toBe("NeedsRecovery");
    expect(rows.find((row) => row.startsWith("web "))).toMatch(/^web\s+running\s+no\s+10\.0\.2\.15\\nFORGED\s/);
  });

  it("gives in JSON each name and path as that same spelling, faithful and distinct, never a replacement character", async () => {
    const result = await arcbox(["get", "-d", machines, "-o", "json"]);
    expect(result.code).toBe(0);
    expectPrintableLines(result.stdout);
    const rows = JSON.parse(result.stdout) as Array<{ name: string; path: string; status: string; ip_address: string | null }>;
    expect(rows).toHaveLength(HOSTILE.length + 2);
    expect(new Set(rows.map((row) => row.name)).size).toBe(rows.length);
    for (const { name, spelled } of HOSTILE) {
      const row = rows.find((candidate) => candidate.name === spelled);
      expect(row, spelled).toMatchObject({ status: NOT_UTF8.has(spelled) ? "NoConfig" : "Invalid", path: `${machines}/${spelled}` });
      expect(readEscapedText(row!.name)).toEqual(name);
      expect(readEscapedText(row!.path)).toEqual(Buffer.concat([Buffer.from(`${machines}/`), name]));
    }
    expect(rows.find((row) => row.name === "web")?.ip_address).toBe("10.0.2.15\\nFORGED");
  });
});

describe("validate", () => {
  it("prints one line per problem, each naming the escaped path, and nothing a terminal acts on", async () => {
    const result = await arcbox(["validate", "-d", machines]);
    expect(result.code).toBe(1);
    expectPrintableLines(result.stdout);
    // The names that are not UTF-8 are no machines (arcbox-core cannot list them): nothing to validate.
    const problems = HOSTILE.filter(({ spelled }) => !NOT_UTF8.has(spelled));
    const lines = linesOf(result.stdout);
    expect(lines).toHaveLength(problems.length);
    for (const { spelled } of problems) {
      expect(lines.filter((line) => line.startsWith(`${machines}/${spelled}: invalid machine name "${spelled}"`)), spelled).toHaveLength(1);
    }
    expect(result.stderr).toBe(`${problems.length} of ${problems.length + 2} configs invalid\n`);
  });
});

describe("a path holding a newline in an error message", () => {
  it("forges no line in validate, get or their notes on stderr", async () => {
    const forged = path.join(root, "dir\nFORGED: all good");
    const spelled = path.join(root, "dir\\nFORGED: all good");
    await writeMachine(forged, "broken", 'name = "broken"\ncpus = = 4\n');

    // The config's problem, one line: `path:line:col: reason`, the path escaped.
    const problem = new RegExp(`^${escapeRegExp(spelled)}/broken/config\\.toml:2:\\d+: [^\\n]*$`);
    const validate = await arcbox(["validate", "-d", forged]);
    expect(validate.code).toBe(1);
    expect(linesOf(validate.stdout)).toEqual([expect.stringMatching(problem)]);

    const get = await arcbox(["get", "-d", forged]);
    expect(linesOf(get.stdout)).toHaveLength(2);
    const json = JSON.parse((await arcbox(["get", "-d", forged, "-o", "json"])).stdout) as Array<{ path: string; error: string }>;
    expect(json).toEqual([expect.objectContaining({ path: `${spelled}/broken`, error: expect.stringMatching(problem) })]);

    // A file in the machines directory's place: one line on stderr.
    const file = `${forged}-file`;
    await writeFile(file, "");
    for (const command of ["get", "validate"]) {
      const result = await arcbox([command, "-d", file]);
      expect(result.code, command).toBe(2);
      const line = `arcbox-controller: cannot list machines: ${spelled}-file: read directory failed: ENOTDIR (not a directory)`;
      expect(linesOf(result.stderr), command).toEqual([line]);
    }
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
