import { describe, expect, it } from "vitest";
import { escapeHelpText, escapeLabelValue, familyHeader } from "../../src/metrics/exposition.js";
import { renderHealthReport } from "../../src/metrics/health.js";
import {
  ListenAddressError,
  formatListenAddress,
  isLoopbackAddress,
  parseListenAddress,
} from "../../src/metrics/listen-address.js";
import { parseExposition } from "./exposition-parser.js";

describe("exposition escaping", () => {
  it("escapes backslash, double quote and line feed in label values, in that order of precedence", () => {
    expect(escapeLabelValue("plain.name_with-dashes")).toBe("plain.name_with-dashes");
    expect(escapeLabelValue('a"b')).toBe('a\\"b');
    expect(escapeLabelValue("a\\b")).toBe("a\\\\b");
    expect(escapeLabelValue("a\nb")).toBe("a\\nb");
    // A literal backslash followed by n must not turn into a line feed when read back.
    expect(escapeLabelValue("\\n")).toBe("\\\\n");
    expect(escapeLabelValue('\\"\n')).toBe('\\\\\\"\\n');
  });

  it("round-trips any label value through the text format", () => {
    const values = ['"', "\\", "\n", '\\"\\n\n', "é ü 🙂", "{}=,", "tab\there"];
    const text = values.map((v, i) => `m{i="${i}",v="${escapeLabelValue(v)}"} 1`).join("\n");
    expect(parseExposition(text).samples.map((s) => s.labels.v)).toEqual(values);
  });

  it("escapes HELP text (backslash and line feed, quotes kept)", () => {
    expect(escapeHelpText('say "hi"\\\nbye')).toBe('say "hi"\\\\\\nbye');
    expect(familyHeader("m", "gauge", "two\nlines")).toBe("# HELP m two\\nlines\n# TYPE m gauge\n");
  });
});

describe("listen addresses", () => {
  it("parses host:port, [IPv6]:port and :port", () => {
    expect(parseListenAddress("127.0.0.1:9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(parseListenAddress("[::1]:9464")).toEqual({ host: "::1", port: 9464 });
    expect(parseListenAddress("[::]:0")).toEqual({ host: "::", port: 0 });
    expect(parseListenAddress("localhost:1")).toEqual({ host: "localhost", port: 1 });
    expect(parseListenAddress(":9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(parseListenAddress("0.0.0.0:65535")).toEqual({ host: "0.0.0.0", port: 65535 });
  });

  it.each([
    ["9464", /expected "HOST:PORT"/],
    ["::1:9464", /IPv6 host in brackets/],
    ["[localhost]:9464", /not an IPv6 address/],
    ["127.0.0.1:", /port "" is not a number/],
    ["127.0.0.1:65536", /port "65536"/],
    ["127.0.0.1:-1", /port "-1"/],
    ["127.0.0.1:http", /port "http"/],
  ])("rejects %j", (text, message) => {
    expect(() => parseListenAddress(text)).toThrow(ListenAddressError);
    expect(() => parseListenAddress(text)).toThrow(message);
    expect(() => parseListenAddress(text)).toThrow(`metrics listen address "${text}"`);
  });

  it("tells loopback addresses from others", () => {
    for (const ip of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) expect(isLoopbackAddress(ip), ip).toBe(true);
    for (const ip of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "fe80::1", "localhost", ""]) {
      expect(isLoopbackAddress(ip), ip).toBe(false);
    }
  });

  it("formats IPv6 hosts in brackets", () => {
    expect(formatListenAddress("::1", 80)).toBe("[::1]:80");
    expect(formatListenAddress("127.0.0.1", 80)).toBe("127.0.0.1:80");
  });
});

describe("health reports", () => {
  it("passes with no checks", () => {
    expect(renderHealthReport("readyz", [], false)).toEqual({ status: 200, body: "ok\n" });
    expect(renderHealthReport("readyz", [], true)).toEqual({ status: 200, body: "readyz check passed\n" });
  });

  it("says 'no detail' for a failing check without one", () => {
    expect(renderHealthReport("healthz", [{ name: "loop", ok: false }], false).body).toBe(
      "[-]loop failed: no detail\nhealthz check failed\n",
    );
  });
});
