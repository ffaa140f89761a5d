/**
 * Where things are in a TOML text: the byte spans of every key/value line and table header.
 * Used to point errors at `line:column` and to edit single values in place. It reads text that
 * smol-toml already accepted; anything it does not understand makes it give up (`undefined`),
 * and callers fall back (no position, or a full re-serialisation).
 */
import { parse } from "smol-toml";

export type KeyPath = readonly (string | number)[];

/** One `key = value` line (kind "key") or `[table]` / `[[array]]` header (kind "header"). */
export interface LayoutEntry {
  kind: "key" | "header";
  /** Full path from the root: table path, then the (dotted) key; array tables add their index. */
  path: KeyPath;
  /** Offset of the start of the line holding the key or header. */
  lineStart: number;
  keyStart: number;
  keyEnd: number;
  /** Value span (for headers: the end of the header, both). */
  valueStart: number;
  valueEnd: number;
  /** Offset just past the entry's line break (or the end of the text). */
  lineEnd: number;
}

export interface TomlLayout {
  entries: LayoutEntry[];
  /** Offset of the first table header's line, or the text length when there is none. */
  rootEnd: number;
  /** The file's line break style. */
  eol: "\n" | "\r\n";
  /** 1-based line and column (UTF-16 units) of an offset. */
  position(offset: number): { line: number; column: number };
}

class LayoutUnknown extends Error {}

const BARE_KEY = /[A-Za-z0-9_-]/;
const SCALAR_END = /[ \t\r\n,\]}#]/;

class Cursor {
  pos = 0;
  constructor(readonly text: string) {}

  peek(): string | undefined {
    return this.text[this.pos];
  }
  startsWith(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }
  fail(): never {
    throw new LayoutUnknown();
  }
  skipSpaces(): void {
    while (this.peek() === " " || this.peek() === "\t") this.pos++;
  }
  skipComment(): void {
    if (this.peek() !== "#") return;
    while (this.pos < this.text.length && this.peek() !== "\n") this.pos++;
  }
  atLineEnd(): boolean {
    return this.pos >= this.text.length || this.peek() === "\n" || this.startsWith("\r\n");
  }
  eatLineEnd(): void {
    if (this.startsWith("\r\n")) this.pos += 2;
    else if (this.peek() === "\n") this.pos++;
    else if (this.pos < this.text.length) this.fail();
  }
  /** Spaces, line breaks and comments, as allowed inside arrays. */
  skipBlank(): void {
    for (;;) {
      this.skipSpaces();
      if (this.peek() === "#") this.skipComment();
      else if (this.peek() === "\n") this.pos++;
      else if (this.startsWith("\r\n")) this.pos += 2;
      else return;
    }
  }

  readKey(): string[] {
    const parts: string[] = [];
    for (;;) {
      this.skipSpaces();
      parts.push(this.readSimpleKey());
      this.skipSpaces();
      if (this.peek() !== ".") return parts;
      this.pos++;
    }
  }

  private readSimpleKey(): string {
    const start = this.pos;
    if (this.peek() === '"') {
      this.skipBasicString();
      const raw = this.text.slice(start, this.pos);
      return raw.includes("\\") ? decodeBasicString(raw) : raw.slice(1, -1);
    }
    if (this.peek() === "'") {
      this.skipLiteralString();
      return this.text.slice(start + 1, this.pos - 1);
    }
    while (BARE_KEY.test(this.peek() ?? " ")) this.pos++;
    if (this.pos === start) this.fail();
    return this.text.slice(start, this.pos);
  }

  skipBasicString(): void {
    this.pos++;
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === "\n") this.fail();
      this.pos += c === "\\" ? 2 : 1;
      if (c === '"') return;
    }
  }

  skipLiteralString(): void {
    const end = this.text.indexOf("'", this.pos + 1);
    const newline = this.text.indexOf("\n", this.pos + 1);
    if (end < 0 || (newline >= 0 && newline < end)) this.fail();
    this.pos = end + 1;
  }

  private skipMultiline(quote: '"""' | "'''"): void {
    this.pos += 3;
    for (;;) {
      if (this.pos >= this.text.length) this.fail();
      if (quote === '"""' && this.peek() === "\\") {
        this.pos += 2;
        continue;
      }
      if (this.startsWith(quote)) {
        this.pos += 3;
        // Up to two quotes right before the closing delimiter belong to the content.
        for (let i = 0; i < 2 && this.peek() === quote[0]; i++) this.pos++;
        return;
      }
      this.pos++;
    }
  }

  skipValue(): void {
    if (this.startsWith('"""')) return this.skipMultiline('"""');
    if (this.startsWith("'''")) return this.skipMultiline("'''");
    if (this.peek() === '"') return this.skipBasicString();
    if (this.peek() === "'") return this.skipLiteralString();
    if (this.peek() === "[") return this.skipArray();
    if (this.peek() === "{") return this.skipInlineTable();
    const start = this.pos;
    while (!SCALAR_END.test(this.peek() ?? "\n")) this.pos++;
    if (this.pos === start) this.fail();
    // A datetime may separate date and time with a space.
    if (/^\d{4}-\d{2}-\d{2}$/.test(this.text.slice(start, this.pos)) && /^ \d{2}:/.test(this.text.slice(this.pos, this.pos + 4))) {
      this.pos++;
      while (!SCALAR_END.test(this.peek() ?? "\n")) this.pos++;
    }
  }

  private skipArray(): void {
    this.pos++;
    for (;;) {
      this.skipBlank();
      if (this.peek() === "]") {
        this.pos++;
        return;
      }
      this.skipValue();
      this.skipBlank();
      if (this.peek() === ",") this.pos++;
      else if (this.peek() !== "]") this.fail();
    }
  }

  private skipInlineTable(): void {
    this.pos++;
    for (;;) {
      this.skipBlank();
      if (this.peek() === "}") {
        this.pos++;
        return;
      }
      this.readKey();
      if (this.peek() !== "=") this.fail();
      this.pos++;
      this.skipSpaces();
      this.skipValue();
      this.skipBlank();
      if (this.peek() === ",") this.pos++;
      else if (this.peek() !== "}") this.fail();
    }
  }
}

function decodeBasicString(raw: string): string {
  const value = parse(`k = ${raw}`).k;
  if (typeof value !== "string") throw new LayoutUnknown();
  return value;
}

/** Resolves a header's key to a path, numbering array tables (`[[block_devices]]` → block_devices, 0, 1, ...). */
class TablePaths {
  private readonly arrayCounts = new Map<string, number>();

  resolve(parts: string[], isArray: boolean): (string | number)[] {
    const path: (string | number)[] = [];
    parts.forEach((part, i) => {
      path.push(part);
      const id = JSON.stringify(path);
      const count = this.arrayCounts.get(id);
      if (isArray && i === parts.length - 1) {
        this.arrayCounts.set(id, (count ?? 0) + 1);
        path.push(count ?? 0);
      } else if (count !== undefined) {
        path.push(count - 1);
      }
    });
    return path;
  }
}

/** Scans `text` (valid TOML) into its layout; `undefined` when the text uses a form it does not know. */
export function scanLayout(text: string): TomlLayout | undefined {
  const cursor = new Cursor(text);
  const entries: LayoutEntry[] = [];
  const tables = new TablePaths();
  let table: (string | number)[] = [];
  let rootEnd = text.length;
  try {
    while (cursor.pos < text.length) {
      const lineStart = cursor.pos;
      cursor.skipSpaces();
      if (cursor.peek() === "#") cursor.skipComment();
      if (cursor.atLineEnd()) {
        cursor.eatLineEnd();
        continue;
      }
      const keyStart = cursor.pos;
      if (cursor.peek() === "[") {
        const isArray = cursor.startsWith("[[");
        cursor.pos += isArray ? 2 : 1;
        const parts = cursor.readKey();
        if (!cursor.startsWith(isArray ? "]]" : "]")) cursor.fail();
        cursor.pos += isArray ? 2 : 1;
        const headerEnd = cursor.pos;
        table = tables.resolve(parts, isArray);
        rootEnd = Math.min(rootEnd, lineStart);
        cursor.skipSpaces();
        cursor.skipComment();
        cursor.eatLineEnd();
        entries.push({
          kind: "header",
          path: table,
          lineStart,
          keyStart,
          keyEnd: headerEnd,
          valueStart: headerEnd,
          valueEnd: headerEnd,
          lineEnd: cursor.pos,
        });
        continue;
      }
      const parts = cursor.readKey();
      const keyEnd = trimEnd(text, keyStart, cursor.pos);
      if (cursor.peek() !== "=") cursor.fail();
      cursor.pos++;
      cursor.skipSpaces();
      const valueStart = cursor.pos;
      cursor.skipValue();
      const valueEnd = cursor.pos;
      cursor.skipSpaces();
      cursor.skipComment();
      cursor.eatLineEnd();
      entries.push({
        kind: "key",
        path: [...table, ...parts],
        lineStart,
        keyStart,
        keyEnd,
        valueStart,
        valueEnd,
        lineEnd: cursor.pos,
      });
    }
  } catch (error) {
    if (error instanceof LayoutUnknown) return undefined;
    throw error;
  }
  const lineStarts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  return {
    entries,
    rootEnd,
    eol: text.includes("\r\n") ? "\r\n" : "\n",
    position(offset) {
      let lo = 0;
      let hi = lineStarts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if ((lineStarts[mid] ?? 0) <= offset) lo = mid;
        else hi = mid - 1;
      }
      return { line: lo + 1, column: offset - (lineStarts[lo] ?? 0) + 1 };
    },
  };
}

function trimEnd(text: string, start: number, end: number): number {
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return end;
}

/**
 * The entry that best describes `path`: the one with exactly that path, else the one with the
 * longest path that is a prefix of it (e.g. the `[[block_devices]]` header of a missing key).
 */
export function locate(layout: TomlLayout, path: KeyPath): LayoutEntry | undefined {
  let best: LayoutEntry | undefined;
  let bestLength = 0;
  for (const entry of layout.entries) {
    const n = entry.path.length;
    if (n <= bestLength || n > path.length) continue;
    if (entry.path.every((part, i) => part === path[i])) {
      best = entry;
      bestLength = n;
    }
  }
  return best;
}

/** Root-table `key = value` entries (before the first header), in file order. */
export function rootEntries(layout: TomlLayout): LayoutEntry[] {
  return layout.entries.filter((e) => e.kind === "key" && e.lineStart < layout.rootEnd);
}
