/** Property tests: any machine round-trips; unknown keys survive a full re-serialisation. */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { parse, stringify, type TomlTable } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MachineStore, type Machine } from "../../src/store/index.js";
import { canonical } from "../../src/store/toml-codec.js";

const KNOWN = new Set([
  "name", "cpus", "memory_mb", "disk_gb", "kernel", "cmdline", "block_devices", "distro",
  "distro_version", "disk_path", "ssh_key_path", "ip_address", "state", "vm_id", "created_at",
]);

const text = fc.string({ unit: "binary", maxLength: 30 });
const name = fc
  .stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/)
  .filter((n) => !n.endsWith("."));
const pad = (n: number, w = 2) => String(n).padStart(w, "0");
const createdAt = fc
  .record({
    date: fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true }),
    fraction: fc.stringMatching(/^(\.[0-9]{1,9})?$/),
    offset: fc.constantFrom("Z", "+00:00", "-07:00", "+05:30"),
  })
  .map(({ date, fraction, offset }) =>
    `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}${fraction}${offset}`,
  );

const machine: fc.Arbitrary<Machine> = fc
  .record(
    {
      name,
      cpus: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      memory_mb: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
      disk_gb: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
      kernel: text,
      cmdline: text,
      block_devices: fc.array(fc.record({ path: text, read_only: fc.boolean() }), { maxLength: 3 }),
      distro: text,
      distro_version: text,
      disk_path: text,
      ssh_key_path: text,
      ip_address: text,
      state: fc.constantFrom("created", "running", "stopped") as fc.Arbitrary<Machine["state"]>,
      vm_id: text,
      created_at: createdAt,
    },
    { requiredKeys: ["name", "cpus", "memory_mb", "disk_gb", "block_devices", "state", "vm_id", "created_at"] },
  )
  .map((m) => m as Machine);

/** TOML values of every kind smol-toml keeps exactly (integers as bigint, floats as number). */
const tomlValue = fc.letrec((tie) => ({
  scalar: fc.oneof(
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.double({ noDefaultInfinity: false }),
    text,
    fc.boolean(),
  ),
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, tie("scalar"), tie("array"), tie("table")),
  array: fc.array(tie("value"), { maxLength: 3 }),
  table: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), tie("value"), { maxKeys: 3 }),
})).value;
const unknownKeys = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 10 }).filter((k) => !KNOWN.has(k)),
  tomlValue,
  { minKeys: 1, maxKeys: 5 },
);

let dir: string;
let store: MachineStore;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arcbox-prop-"));
  store = new MachineStore({ dir });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("properties", () => {
  it("save then load gives the same machine", async () => {
    await fc.assert(
      fc.asyncProperty(machine, async (m) => {
        await store.remove(m.name);
        await store.save(m);
        const loaded = await store.load(m.name);
        expect(loaded.machine).toStrictEqual(structuredClone(Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined))));
        await store.remove(m.name);
      }),
      { numRuns: 150 },
    );
  });

  it("unknown keys keep their values through an update that re-serialises the file", async () => {
    await fc.assert(
      fc.asyncProperty(machine, unknownKeys, fc.integer({ min: 0, max: 2 ** 32 - 1 }), async (m, extra, cpus) => {
        // a file as a newer arcbox might write it: our keys plus keys we do not know
        const doc: TomlTable = Object.create(null);
        Object.assign(doc, { ...m, cpus: BigInt(m.cpus) }, extra);
        await rm(join(dir, m.name), { recursive: true, force: true });
        await mkdir(join(dir, m.name));
        await writeFile(join(dir, m.name, "config.toml"), stringify(doc, { numbersAsFloat: true }));
        const before = await store.load(m.name);
        await store.update(m.name, (x) => void (x.cpus = cpus === m.cpus ? (cpus + 1) % 2 ** 32 : cpus));
        const after = await store.load(m.name);
        expect(after.unknownKeys.sort()).toEqual(before.unknownKeys.sort());
        const reread = parse((await readFile(join(dir, m.name, "config.toml"))).toString(), { integersAsBigInt: true });
        for (const [key, value] of Object.entries(extra)) expect(canonical(reread[key])).toBe(canonical(value));
        await store.remove(m.name);
      }),
      { numRuns: 150 },
    );
  });
});
