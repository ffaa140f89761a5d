/**
 * A fault of the reader itself (an exception it does not foresee) makes that one file invalid, with
 * the fault named; it never escapes a listing. No real input causes one any more, so the parser is
 * made to throw on a marked text.
 */
import { describe, expect, it, vi } from "vitest";
import { InvalidConfigError } from "../../src/store/index.js";
import { configText, useTempStore } from "./temp-store.js";

const MARK = "# make the parser fail";

vi.mock("toml-eslint-parser", async (importOriginal) => {
  const actual = await importOriginal<typeof import("toml-eslint-parser")>();
  return {
    ...actual,
    parseTOML: (text: string, options: Parameters<typeof actual.parseTOML>[1]) => {
      if (text.includes(MARK)) throw new TypeError("Cannot read properties of undefined (reading 'range')");
      return actual.parseTOML(text, options);
    },
  };
});

describe("an unexpected exception while reading one file", () => {
  const t = useTempStore();

  it("makes that file invalid, saying what failed; every other machine is listed", async () => {
    await t.put("a", configText("a"));
    await t.put("faulty", configText("faulty", `${MARK}\n`));
    await t.put("z", configText("z"));
    const { machines, invalid } = await t.store.loadAll();
    expect(machines.map((m) => m.machine.name)).toEqual(["a", "z"]);
    expect(invalid.map((i) => i.name)).toEqual(["faulty"]);
    const error = invalid[0]?.error;
    expect(error).toBeInstanceOf(InvalidConfigError);
    expect(error?.message).toBe(
      `${t.dir}/faulty/config.toml: reading it failed unexpectedly ` +
        "(TypeError: Cannot read properties of undefined (reading 'range')); the file may well be valid",
    );
    await expect(t.store.load("faulty")).rejects.toBeInstanceOf(InvalidConfigError);
  });
});
