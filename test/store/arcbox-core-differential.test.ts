/**
 * Differential tests against arcbox-core's own loader: a generated corpus of config files gets the
 * same verdict from the controller and from arcbox-core and, when accepted, the same field values.
 */
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { InvalidConfigError, MachineStore, parseMachineConfig, StoreError, type Machine } from "../../src/store/index.js";
import { decodeUtf8 } from "../../src/store/config-file.js";
import { coreCheckAll, coreLine, coreRun, itWithCoreLoader, withoutCreatedAt, type CoreVerdict } from "../helpers/arcbox-core.js";
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

describe("deep nesting and long values", () => {
  const nest = (open: string, close: string, depth: number, inner = "") => `${open.repeat(depth)}${inner}${close.repeat(depth)}`;
  const key = (parts: number) => Array.from({ length: parts }, (_, i) => `k${i}`).join(".");
  const text = (length: number) =>
    Array.from({ length: Math.ceil(length / 10) }, (_, i) => `${i}`.padStart(9, "-") + "é").join("").slice(0, length);
  /** Characters of `text` that fit in a 1 MiB file beside the base config (11 bytes per 10 characters). */
  const FILLING = Math.floor((1024 * 1024 - 400) / 11) * 10;
  const device = (i: number) => `{ path = "/d/${i}.img", read_only = ${i % 2 === 0} }`;
  const devices = (n: number) => `[${Array.from({ length: n }, (_, i) => device(i)).join(", ")}]`;

  /** Within the limit: arcbox-core's verdict and fields are the controller's. */
  const WITHIN: [string, string][] = [
    ["3 nested arrays", `x = ${nest("[", "]", 3)}`],
    ["100 nested arrays", `x = ${nest("[", "]", 100)}`],
    ["100 nested inline tables", `x = ${nest("{ a = ", " }", 100, "1")}`],
    ["arrays and inline tables 100 deep together", `x = ${nest("[{ a = ", " }]", 50, "1")}`],
    ["a dotted key of 100 parts", `${key(100)} = 1`],
    ["a header of 100 parts, a key of 100 parts in it, a value 100 deep", `[${key(100)}]\n${key(100)} = ${nest("[", "]", 100)}`],
    ["an array-of-tables header of 100 parts", `[[${key(100)}]]`],
    ["a basic string of 200,000 characters", `kernel = "${text(200_000)}"`],
    ["a basic string filling a 1 MiB file", `kernel = "${text(FILLING)}"`],
    ["a literal string filling a 1 MiB file", `kernel = '${text(FILLING)}'`],
    ["a multi-line basic string filling a 1 MiB file", `kernel = """\n${text(FILLING)}"""`],
    ["a multi-line literal string filling a 1 MiB file", `kernel = '''${text(FILLING)}'''`],
    ["a multi-line literal string of 200,000 characters", `cmdline = '''\n${text(200_000)}'''`],
    ["an array of 200,000 integers", `x = [${"1, ".repeat(200_000)}]`],
    ["5,000 block devices in one array", `block_devices = ${devices(5000)}`],
    ["a float of 300,000 digits and a quoted key of 300,000 characters", `f = 1.${"0".repeat(300_000)}1\n"${text(300_000)}" = 2`],
    ["a string of 200,000 characters, then a syntax error", `kernel = "${text(200_000)}"\nx = [1,,]`],
  ];
  /** Beyond the limit: the controller's rule, and what arcbox-core does (which its message states). */
  const BEYOND: [string, string, "values" | "key", "loads" | "crashes"][] = [
    ["101 nested arrays", `x = ${nest("[", "]", 101)}`, "values", "loads"],
    ["1,800 nested arrays", `x = ${nest("[", "]", 1800)}`, "values", "loads"],
    ["2,000 nested arrays", `x = ${nest("[", "]", 2000)}`, "values", "crashes"],
    ["500,000 nested arrays (1 MiB)", `x = ${nest("[", "]", 500_000)}`, "values", "crashes"],
    ["101 nested inline tables", `x = ${nest("{ a = ", " }", 101, "1")}`, "values", "loads"],
    ["1,600 nested inline tables", `x = ${nest("{ a = ", " }", 1600, "1")}`, "values", "loads"],
    ["2,000 nested inline tables", `x = ${nest("{ a = ", " }", 2000, "1")}`, "values", "crashes"],
    ["a dotted key of 101 parts", `${key(101)} = 1`, "key", "loads"],
    ["a dotted key of 10,000 parts", `${key(10_000)} = 1`, "key", "loads"],
    ["a dotted key of 20,000 parts", `${key(20_000)} = 1`, "key", "crashes"],
    ["a header of 101 parts", `[${key(101)}]`, "key", "loads"],
    ["a header of 20,000 parts", `[${key(20_000)}]`, "key", "crashes"],
    ["a key of 101 parts in an inline table", `x = { ${key(101)} = 1 }`, "key", "loads"],
  ];
  const RULE = {
    values: "arrays and inline tables are nested more than 100 deep (a rule of arcbox-controller's own; " +
      "arcbox-core loads up to about 1,700 levels",
    key: "a key of more than 100 dotted parts (a rule of arcbox-controller's own; arcbox-core loads up to about 10,000 parts",
  };
  const base = (name: string) =>
    `name = "${name}"\ncpus = 1\nmemory_mb = 2\ndisk_gb = 3\nstate = "running"\nvm_id = "v"\ncreated_at = "2026-04-27T05:01:09.120004Z"\n`;

  itWithCoreLoader(
    `${WITHIN.length} files within the nesting limit, long values among them: arcbox-core's verdict and fields; ` +
      `${BEYOND.length} beyond it: the controller's rule, whose message says what arcbox-core does`,
    async (loader) => {
      type Case = { label: string; tail: string; what?: "values" | "key"; core?: "loads" | "crashes" };
      const cases: Case[] = [
        ...WITHIN.map(([label, tail]) => ({ label, tail })),
        ...BEYOND.map(([label, tail, what, core]) => ({ label, tail, what, core })),
      ];
      const names = cases.map((_, i) => `n${i}`);
      const files = cases.map(({ tail }, i) => Buffer.from(`${base(names[i] as string)}${tail}\n`));
      await mkdir(join(dir, "limits"));
      for (const [i, name] of names.entries()) {
        expect((files[i] as Buffer).length, cases[i]?.label).toBeLessThanOrEqual(1024 * 1024);
        await mkdir(join(dir, "limits", name));
        await writeFile(join(dir, "limits", name, "config.toml"), files[i] as Buffer);
      }
      const verdicts = await coreCheckAll(loader, join(dir, "limits"), names);
      for (const [i, { label, what, core }] of cases.entries()) {
        const verdict = verdicts[i] as CoreVerdict;
        const ours = controllerVerdict(files[i] as Buffer, join(dir, "limits", names[i] as string, "config.toml"), names[i] as string);
        const said = `${label}: arcbox-core: ${verdict.output.slice(0, 200)}; controller: ${ours.ok ? "ok" : ours.reason.slice(0, 300)}`;
        if (what === undefined) {
          expect(verdict.code, said).toBeLessThanOrEqual(1);
          expect(ours.ok, said).toBe(verdict.ok);
          if (ours.ok) expect(ours.line === verdict.output, said).toBe(true);
        } else {
          expect(!ours.ok && ours.reason.includes(`: ${RULE[what]}`), said).toBe(true);
          expect(!ours.ok && /config\.toml:\d+:\d+: /.test(ours.reason), said).toBe(true);
          if (core === "loads") expect(verdict.ok, said).toBe(true);
          else expect(verdict.code === 134 && verdict.output.includes("has overflowed its stack"), said).toBe(true);
        }
      }
    },
    300_000,
  );
});

describe("files the controller writes load in arcbox-core", () => {
  itWithCoreLoader(
    "store writes (minimal edits of state and ip_address, full re-serialisation) of generated configs: every other field unchanged",
    async (loader) => {
      const seed = Number(process.env.ARCBOX_DIFFERENTIAL_SEED ?? Date.now() % 2 ** 31) + 1;
      const store = new MachineStore({ dir: join(dir, "writes") });
      await mkdir(store.dir);
      const docs = fc.sample(corpusDocument, { numRuns: 1500, seed });
      const expected = new Map<string, Machine>();
      let edits = 0;
      for (const [i, doc] of docs.entries()) {
        const name = `w${i}`;
        await mkdir(join(store.dir, name));
        const original = doc.render(name);
        await writeFile(join(store.dir, name, "config.toml"), original);
        let before: Machine;
        try {
          before = (await store.load(name)).machine;
        } catch (error) {
          if (error instanceof StoreError) continue;
          throw error;
        }
        // Each kind of write the controller makes: recovery's state change, an IP change or removal
        // (minimal edits), and a change no minimal edit covers (full re-serialisation).
        const kind = i % 4;
        const write = () =>
          kind === 0
            ? store.updateState(name, before.state === "running" ? "stopped" : "running")
            : kind === 1
              ? store.updateIp(name, "10.0.2.15")
              : kind === 2
                ? store.updateIp(name, null)
                : store.update(name, (m) => void (m.cpus = m.cpus === 1 ? 2 : 1));
        let after;
        try {
          after = await write();
        } catch (error) {
          // A full re-serialisation (kind 3, or a layout no minimal edit can handle) refuses a value it
          // cannot write faithfully, such as a leap-second datetime in an unknown key: nothing is written.
          if (error instanceof StoreError && /cannot serialise/.test(error.message)) {
            expect(readFileSync(join(store.dir, name, "config.toml"))).toEqual(original);
            continue;
          }
          throw error;
        }
        const changed = kind === 0 ? "state" : kind === 3 ? "cpus" : "ip_address";
        const { [changed]: _a, ...restBefore } = before as unknown as Record<string, unknown>;
        const { [changed]: _b, ...restAfter } = after.machine as unknown as Record<string, unknown>;
        // Without created_at each read says "now" (and a full re-serialisation writes that "now").
        if (!original.includes("created_at")) delete restBefore.created_at, delete restAfter.created_at;
        expect(restAfter).toEqual(restBefore);
        expected.set(name, after.machine);
        edits++;
      }
      const names = [...expected.keys()];
      const verdicts = await coreCheckAll(loader, store.dir, names);
      const problems = names.flatMap((name, i) => {
        const core = verdicts[i] as CoreVerdict;
        const ours = coreLine(expected.get(name) as Machine);
        const hasCreatedAt = (expected.get(name) as Machine).created_at !== undefined && /created_at/.test(readFileSync(join(store.dir, name, "config.toml"), "utf8"));
        const same = hasCreatedAt ? core.output === ours : withoutCreatedAt(core.output) === withoutCreatedAt(ours);
        return same ? [] : [`${name}: arcbox-core: ${core.output.trim()}\n  controller: ${ours.trim()}\n  file: ${JSON.stringify(readFileSync(join(store.dir, name, "config.toml"), "utf8"))}`];
      });
      console.log(`controller writes: ${edits} files written (seed ${seed}), ${problems.length} that arcbox-core reads differently`);
      expect(edits).toBeGreaterThan(200);
      expect(problems.slice(0, 5).join("\n\n")).toBe("");
    },
    300_000,
  );

  itWithCoreLoader("machines saved by the controller from generated machines load in arcbox-core with the same fields", async (loader) => {
    const store = new MachineStore({ dir: join(dir, "saves") });
    const text = fc.string({ unit: fc.constantFrom("a", "é", "中", "😀", "\n", "\t", '"', "\\", "'", "\u0001", " ", "#") });
    const machines = fc.sample(
      fc.record({
        cpus: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        memory_mb: fc.bigInt(0n, 2n ** 63n - 1n),
        disk_gb: fc.bigInt(0n, 2n ** 63n - 1n),
        kernel: fc.option(text, { nil: undefined }),
        cmdline: fc.option(text, { nil: undefined }),
        ip_address: fc.option(text, { nil: undefined }),
        state: fc.constantFrom("created", "running", "stopped"),
        vm_id: text,
        block_devices: fc.array(fc.record({ path: text, read_only: fc.boolean() }), { maxLength: 3 }),
        created_at: fc.constantFrom("2026-04-27T04:13:21.482913Z", "2026-11-26T01:20:05.087735497Z", "2026-04-27T04:13:21+02:00"),
      }),
      { numRuns: 300 },
    );
    const names = machines.map((_, i) => `s${i}`);
    for (const [i, m] of machines.entries()) await store.save({ name: names[i] as string, ...m } as Machine);
    const verdicts = await coreCheckAll(loader, store.dir, names);
    for (const [i, name] of names.entries()) {
      expect((verdicts[i] as CoreVerdict).output, name).toBe(coreLine((await store.load(name)).machine));
    }
  });

  itWithCoreLoader("machines written by arcbox-core load in the controller with the same fields", async (loader) => {
    const store = new MachineStore({ dir: join(dir, "by-core") });
    const written: string[] = [];
    for (const [i, state] of ["created", "running", "stopped"].entries()) {
      for (const ip of [undefined, "10.0.2.15"]) {
        const name = `core-${i}-${ip ? "ip" : "noip"}`;
        await coreRun(loader, ["write", store.dir, name, state, ...(ip ? [ip] : [])]);
        written.push(name);
      }
    }
    const verdicts = await coreCheckAll(loader, store.dir, written);
    for (const [i, name] of written.entries()) {
      const { machine } = await store.load(name);
      expect(coreLine(machine), name).toBe((verdicts[i] as CoreVerdict).output);
    }
  });
});
