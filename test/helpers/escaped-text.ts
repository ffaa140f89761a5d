/**
 * Reads the commands' escaped spelling of a name or path back to its bytes, following the rules as
 * docs/design.md#cli states them (not the code of src/platform/escape-text.ts), so that a test can
 * prove the output faithful: `\\`, `\n`, `\r`, `\t`, `\xNN` (the byte NN), `\uNNNN` and `\UNNNNNNNN`
 * (that code point in UTF-8); any other character is itself.
 */
const TOKEN = /\\(?:([\\nrt])|x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))|([^\\]+)/y;
const SHORT: Record<string, string> = { "\\": "\\", n: "\n", r: "\r", t: "\t" };

/** The bytes `spelling` stands for. Throws on text the rules cannot produce (a lone or unknown escape). */
export function readEscapedText(spelling: string): Buffer {
  const parts: Buffer[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < spelling.length) {
    const at = TOKEN.lastIndex;
    const match = TOKEN.exec(spelling);
    if (match === null) throw new Error(`not an escaped spelling at offset ${at}: ${JSON.stringify(spelling)}`);
    const [, short, byte, bmp, astral, literal] = match;
    if (short !== undefined) parts.push(Buffer.from(SHORT[short]!));
    else if (byte !== undefined) parts.push(Buffer.from([parseInt(byte, 16)]));
    else if (literal !== undefined) parts.push(Buffer.from(literal));
    else parts.push(Buffer.from(String.fromCodePoint(parseInt(bmp ?? astral!, 16))));
  }
  return Buffer.concat(parts);
}
