/** The spelling of names and paths in the commands' text output: printable, one line, read back to the same bytes. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { escapeText } from "../../src/platform/escape-text.js";
import { readEscapedText } from "../helpers/escaped-text.js";

/** What may never reach a terminal as it is: control and format characters, line separators, surrogates. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** Byte strings of valid UTF-8 text (any code point) and bytes at random, mixed. */
const textBytes = fc.string({ unit: "binary", maxLength: 8 }).map((text) => Buffer.from(text));
const byteStrings = fc.array(fc.oneof(fc.uint8Array({ maxLength: 8 }), textBytes), { maxLength: 6 }).map((parts) => Buffer.concat(parts));

describe("escapeText", () => {
  it.each([
    ["a newline, a carriage return and a tab", "a\nb\rc\td", "a\\nb\\rc\\td"],
    ["a terminal escape, NUL and DEL", "\x1b[31mred\x00\x7f", "\\x1b[31mred\\x00\\x7f"],
    ["a C1 control (NEL, CSI)", "a\u0085b\u009b", "a\\u0085b\\u009b"],
    ["the line and paragraph separators", "a\u2028b\u2029c", "a\\u2028b\\u2029c"],
    ["bidi controls, which reorder what a terminal shows", "\u202eevil\u2066\u200f\u061c", "\\u202eevil\\u2066\\u200f\\u061c"],
    ["invisible characters that hide a difference", "w\u200beb\ufeff\u00ad", "w\\u200beb\\ufeff\\u00ad"],
    ["a format character beyond the BMP", "tag\u{e0041}", "tag\\U000e0041"],
    ["a lone surrogate", "x\ud800y", "x\\ud800y"],
    ["a backslash, so that a literal backslash-n is no newline", "back\\nslash", "back\\\\nslash"],
    ["printable text, other scripts and spaces as they are", "web-1 é 日本 😀 \"q\" a  b", "web-1 é 日本 😀 \"q\" a  b"],
  ])("escapes %s", (_what, text, spelled) => {
    expect(escapeText(text)).toBe(spelled);
  });

  it.each([
    ["an invalid byte per \\xNN", [0x66, 0xff], "f\\xff"],
    ["another invalid byte differently", [0x66, 0xfe], "f\\xfe"],
    ["a truncated sequence byte by byte", [0xe2, 0x82, 0x41], "\\xe2\\x82A"],
    ["an overlong encoding", [0xc0, 0xaf], "\\xc0\\xaf"],
    ["an encoded surrogate", [0xed, 0xa0, 0x80], "\\xed\\xa0\\x80"],
    ["a code point beyond U+10FFFF", [0xf4, 0x90, 0x80, 0x80], "\\xf4\\x90\\x80\\x80"],
    ["valid UTF-8 between invalid bytes as text", [0xff, 0xe2, 0x82, 0xac, 0x0a, 0xfe], "\\xff€\\n\\xfe"],
    ["a character it escapes in a string the same way in bytes", [...Buffer.from("\u202e\\")], "\\u202e\\\\"],
  ])("spells bytes: %s", (_what, bytes, spelled) => {
    expect(escapeText(Buffer.from(bytes))).toBe(spelled);
  });

  it("spells a name that is not UTF-8 unlike any UTF-8 name, a literal `f\\xff` included", () => {
    expect(escapeText(Buffer.from([0x66, 0xff]))).not.toBe(escapeText("f\\xff"));
  });

  it("gives every byte string a printable one-line spelling that reads back to the same bytes", () => {
    fc.assert(
      fc.property(byteStrings, (bytes) => {
        const spelled = escapeText(bytes);
        expect(spelled).not.toMatch(UNSAFE);
        expect(readEscapedText(spelled)).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it("spells a string as it spells its UTF-8 bytes", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 20 }), fc.string({ unit: "binary", maxLength: 20 }), (a, b) => {
        for (const text of [a, b]) expect(escapeText(text)).toBe(escapeText(Buffer.from(text)));
      }),
    );
  });
});
