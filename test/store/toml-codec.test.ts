/** Full serialisation keeps unknown values exact; every produced text reads back as intended. */
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parseMachineConfig } from "../../src/store/index.js";
import { canonical, editInPlace, serializeMachine } from "../../src/store/toml-codec.js";
import { configText, sampleMachine } from "./temp-store.js";

describe("serializeMachine", () => {
  it("keeps bigints exact and floats as floats in unknown keys", () => {
    const source = configText(
      "m",
      "big = 9223372036854775807\nsmall = -9223372036854775808\nwhole_float = 4.0\nfrac = 0.1\nexp = 1e300\nspecial = [inf, -inf, nan]\nhex = 0xff\n",
    );
    const { machine, document } = parseMachineConfig(source, "/m/config.toml", "m");
    const { text } = serializeMachine({ ...machine, cpus: 3 }, "/m/config.toml", document);
    const reread = parse(text, { integersAsBigInt: true });
    expect(reread.big).toBe(9223372036854775807n);
    expect(reread.small).toBe(-9223372036854775808n);
    expect(reread.whole_float).toBe(4);
    expect(text).toContain("whole_float = 4.0\n");
    expect(reread.frac).toBe(0.1);
    expect(reread.exp).toBe(1e300);
    expect(canonical(reread.special)).toBe(canonical([Infinity, -Infinity, NaN]));
    expect(reread.hex).toBe(255n);
    expect(reread.cpus).toBe(3n);
  });

  it("writes a machine with no block devices as `block_devices = []`, and memory beyond 2^53 exactly", () => {
    const { text } = serializeMachine(sampleMachine("m", { block_devices: [], memory_mb: 2n ** 63n - 1n }), "/x");
    expect(text).toContain("block_devices = []\n");
    expect(text).toContain("memory_mb = 9223372036854775807\n");
    expect(parseMachineConfig(text, "/x", "m").machine.memory_mb).toBe(2n ** 63n - 1n);
  });
});

describe("editInPlace", () => {
  it("returns undefined rather than a text that would not read back as intended", () => {
    const text = configText("m");
    const parsed = parseMachineConfig(text, "/x", "m");
    // a state value the schema refuses cannot be written by a minimal edit
    expect(editInPlace(text, parsed, { state: "starting" as never }, "/x", "m")).toBeUndefined();
    expect(editInPlace(text, parsed, { state: "running" }, "/x", "m")?.text).toBe(text.replace('"stopped"', '"running"'));
  });

  it("removing an ip_address the file does not have leaves the text as it is", () => {
    const text = configText("m");
    const parsed = parseMachineConfig(text, "/x", "m");
    expect(editInPlace(text, parsed, { ip_address: null }, "/x", "m")?.text).toBe(text);
  });

  it("a changed ip_address keeps the quoting of the value it replaces", () => {
    const basic = configText("m", 'ip_address = "10.0.0.2"\n');
    expect(editInPlace(basic, parseMachineConfig(basic, "/x", "m"), { ip_address: "10.0.0.3" }, "/x", "m")?.text).toBe(
      basic.replace('"10.0.0.2"', '"10.0.0.3"'),
    );
    const literal = configText("m", "ip_address = '10.0.0.2'\n");
    expect(editInPlace(literal, parseMachineConfig(literal, "/x", "m"), { ip_address: "10.0.0.3" }, "/x", "m")?.text).toBe(
      literal.replace("'10.0.0.2'", "'10.0.0.3'"),
    );
  });

  it("edits state and an ip_address written after it in one minimal edit, whatever their lengths", () => {
    // Hand-written order: state before ip_address, so the later edit must be applied first.
    const text = configText("m", 'ip_address = "10.0.0.2"\n');
    const parsed = parseMachineConfig(text, "/x", "m");
    const edited = editInPlace(text, parsed, { state: "running", ip_address: "192.168.100.200" }, "/x", "m");
    expect(edited?.text).toBe(text.replace('"stopped"', '"running"').replace('"10.0.0.2"', '"192.168.100.200"'));
    const shorter = editInPlace(text, parsed, { state: "created", ip_address: null }, "/x", "m");
    expect(shorter?.text).toBe(text.replace('"stopped"', '"created"').replace('ip_address = "10.0.0.2"\n', ""));
  });

  it("treats 1 and 1.0 as different values and ignores table key order", () => {
    expect(canonical(1n)).not.toBe(canonical(1));
    expect(canonical({ a: 1n, b: "x" })).toBe(canonical({ b: "x", a: 1n }));
  });
});
