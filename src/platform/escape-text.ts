/**
 * How text from the disk (machine names, paths, the messages that embed them) is spelled in the
 * commands' text output: printable, on one line, and different for any two different byte strings,
 * so that a name can neither forge a row or line, nor steer the terminal, nor pass for another name.
 *
 * The spelling, and how to read it back (docs/design.md#cli):
 * - `\\` is one backslash; `\n`, `\r`, `\t` are newline, carriage return, tab;
 * - `\xNN` is the byte NN: another control character below 0x80 (ESC is `\x1b`, DEL `\x7f`), or a
 *   byte that is not part of valid UTF-8 (a name that is not UTF-8: `f\xff`);
 * - `\uNNNN` and `\UNNNNNNNN` are that code point, written in UTF-8: C1 controls, format characters
 *   (bidi controls such as U+202E, which reorder what a terminal shows; zero-width characters, which
 *   hide a difference between two names), the line and paragraph separators U+2028 and U+2029, and
 *   lone surrogates (`\ud800`, which a JavaScript string can hold but UTF-8 cannot);
 * - every other character is itself.
 */
import { isUtf8 } from "node:buffer";

/** The backslash, which starts every escape, and the characters shown escaped (see above). */
const ESCAPED = /[\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };
const utf8 = new TextDecoder("utf-8");

/**
 * The spelling of `text` described above: a string as it is, bytes (a name read as a Buffer) as
 * UTF-8 where they are valid UTF-8 and as `\xNN` per byte where they are not. Never throws.
 */
export function escapeText(text: string | Uint8Array): string {
  return typeof text === "string" ? text.replace(ESCAPED, escapeCharacter) : escapeBytes(text);
}

function escapeCharacter(character: string): string {
  const short = SHORT_ESCAPES[character];
  if (short !== undefined) return short;
  const code = character.codePointAt(0)!;
  if (code < 0x80) return `\\x${hex(code, 2)}`;
  return code > 0xffff ? `\\U${hex(code, 8)}` : `\\u${hex(code, 4)}`;
}

/** Each run of valid UTF-8 spelled as its text; each byte outside one as `\xNN`. */
function escapeBytes(bytes: Uint8Array): string {
  let spelled = "";
  let runStart = 0;
  let at = 0;
  while (at < bytes.length) {
    const length = sequenceLength(bytes[at]!);
    if (length > 0 && at + length <= bytes.length && isUtf8(bytes.subarray(at, at + length))) {
      at += length;
      continue;
    }
    spelled += escapeText(utf8.decode(bytes.subarray(runStart, at))) + `\\x${hex(bytes[at]!, 2)}`;
    runStart = ++at;
  }
  return spelled + escapeText(utf8.decode(bytes.subarray(runStart)));
}

/** How many bytes a UTF-8 sequence starting with `lead` has, or 0 when no sequence can start with it. */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

function hex(value: number, digits: number): string {
  return value.toString(16).padStart(digits, "0");
}
