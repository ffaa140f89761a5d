/**
 * TOML text → document and source map in one parse. arcbox-core reads TOML 1.0 (its `toml` crate's
 * parser family, `toml_edit`), so the text is parsed strictly as TOML 1.0 by toml-eslint-parser
 * (`tomlVersion: "1.0.0"`), which also gives every key and value its source range: error positions
 * and minimal edits come from the same parse. The few byte-level rules that parser leaves to its
 * caller are applied here the way toml_edit applies them: one leading BOM is skipped, and a carriage
 * return must start a CRLF line break. toml_edit checks a date's day only against 1–31, so a date
 * such as 2021-02-30 is read (as text that no JavaScript Date holds) where the strict parser refuses it.
 */
import { parse as parseToml11, TomlDate, type TomlTable, type TomlValue } from "smol-toml";
import { parseTOML, type AST } from "toml-eslint-parser";

export type KeyPath = readonly (string | number)[];

/** One `key = value` (kind "key") or `[table]` / `[[array]]` header (kind "header") of the text. */
export interface SourceEntry {
  kind: "key" | "header";
  /** Full path from the root: table path (array tables add their index), then the (dotted) key. */
  path: KeyPath;
  /** Offset of the start of the line holding the entry. */
  lineStart: number;
  keyStart: number;
  keyEnd: number;
  /** Value span (for headers: the end of the header, both). */
  valueStart: number;
  valueEnd: number;
  /** Offset just past the line break that ends the entry's line (or the end of the text). */
  lineEnd: number;
  /** True for a `key = value` of the root table (before any header). */
  root: boolean;
}

/** Where things are in a parsed TOML text; offsets index the text as given (BOM included). */
export interface TomlSource {
  entries: SourceEntry[];
  /** The file's line break style. */
  eol: "\n" | "\r\n";
  /** 1-based line and column (UTF-16 units) of an offset. */
  position(offset: number): { line: number; column: number };
}

/** The text is not TOML 1.0 (as arcbox-core reads it); `offset` is where the parser stopped. */
export class TomlSyntaxError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${line}:${column}: ${reason}`);
  }
}

/** A parsed TOML text: integers as bigint, floats as number, datetimes as smol-toml's TomlDate. */
export interface ParsedToml {
  document: TomlTable;
  source: TomlSource;
}

const BOM = "\ufeff";

/**
 * Parses `text` as TOML 1.0. Throws TomlSyntaxError (with line and column) when arcbox-core's parser
 * would refuse it, saying so when the construct is TOML 1.1 syntax.
 */
export function parseToml(text: string): ParsedToml {
  const skip = text.startsWith(BOM) ? BOM.length : 0;
  const body = skip === 0 ? text : text.slice(skip);
  const position = positions(text);
  const fail = (reason: string, offset: number): never => {
    const { line, column } = position(offset);
    throw new TomlSyntaxError(reason, offset, line, column);
  };
  const loneCr = /\r(?!\n)/.exec(body);
  if (loneCr) fail("a carriage return must be followed by a line feed (CRLF)", loneCr.index + skip);

  let program: AST.TOMLProgram | undefined;
  let parsed = body;
  const lenientDates = new Map<number, string>();
  while (program === undefined) {
    try {
      program = parseTOML(parsed, { tomlVersion: "1.0.0" });
    } catch (error) {
      if (!(error instanceof Error) || typeof (error as { index?: unknown }).index !== "number") throw error;
      const index = (error as unknown as { index: number }).index;
      // The strict parser stops at the last digit of a date with no such day; toml_edit takes days 1–31.
      const date = error.message.startsWith("Unexpected invalid date") ? parsed.slice(index - 9, index + 1) : "";
      if (/^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/.test(date) && !lenientDates.has(index - 9)) {
        lenientDates.set(index - 9, date);
        parsed = `${parsed.slice(0, index - 1)}01${parsed.slice(index + 1)}`;
        continue;
      }
      let reason = error.message.replace(/\.$/, "");
      if (isToml11(text)) reason += " (TOML 1.1 syntax; arcbox-core reads TOML 1.0)";
      return fail(reason, index + skip);
    }
  }
  const builder = new DocumentBuilder(text, skip, lenientDates);
  const document = builder.build(program.body[0]);
  return {
    document,
    source: { entries: builder.entries, eol: text.includes("\r\n") ? "\r\n" : "\n", position },
  };
}

/** Whether a TOML 1.1 parser accepts the text (only asked on the error path, to explain it). */
function isToml11(text: string): boolean {
  try {
    parseToml11(text);
    return true;
  } catch {
    return false;
  }
}

/** The raw text of datetimes that a JavaScript Date cannot hold (a leap second), for comparisons. */
const unrepresentable = new WeakMap<TomlDate, string>();

/** A stable text for a datetime value: its ISO form, or its source text when Date cannot hold it. */
export function datetimeText(value: TomlDate): string {
  const raw = unrepresentable.get(value);
  return raw !== undefined || Number.isNaN(value.getTime()) ? `raw:${raw ?? "?"}` : value.toISOString();
}

/** A null-prototype table, so that keys like `__proto__` stay plain keys. */
export function newTable(): TomlTable {
  return Object.create(null) as TomlTable;
}

class DocumentBuilder {
  readonly entries: SourceEntry[] = [];

  constructor(
    private readonly text: string,
    private readonly skip: number,
    /** Dates with a day their month lacks, by body offset: read as written, held as text. */
    private readonly lenientDates: Map<number, string>,
  ) {}

  build(top: AST.TOMLTopLevelTable): TomlTable {
    const root = newTable();
    for (const node of top.body) {
      if (node.type === "TOMLKeyValue") {
        this.keyValue(root, node, [], true);
        continue;
      }
      const table = this.tableAt(root, node.resolvedKey);
      const [start, end] = this.span(node.range[0], this.headerEnd(node));
      this.entries.push({
        kind: "header",
        path: node.resolvedKey,
        lineStart: this.lineStart(start),
        keyStart: start,
        keyEnd: end,
        valueStart: end,
        valueEnd: end,
        lineEnd: this.lineEnd(end),
        root: false,
      });
      for (const kv of node.body) this.keyValue(table, kv, node.resolvedKey, false);
    }
    return root;
  }

  private keyValue(table: TomlTable, node: AST.TOMLKeyValue, at: KeyPath, root: boolean): void {
    const keys = node.key.keys.map(keyName);
    const [keyStart, keyEnd] = this.span(node.key.range[0], node.key.range[1]);
    const [valueStart, valueEnd] = this.span(node.value.range[0], node.value.range[1]);
    this.entries.push({
      kind: "key",
      path: [...at, ...keys],
      lineStart: this.lineStart(keyStart),
      keyStart,
      keyEnd,
      valueStart,
      valueEnd,
      lineEnd: this.lineEnd(valueEnd),
      root,
    });
    setPath(table, keys, this.value(node.value));
  }

  private value(node: AST.TOMLContentNode): TomlValue {
    switch (node.type) {
      case "TOMLArray":
        return node.elements.map((element) => this.value(element));
      case "TOMLInlineTable": {
        const table = newTable();
        for (const kv of node.body) setPath(table, kv.key.keys.map(keyName), this.value(kv.value));
        return table;
      }
      default:
        switch (node.kind) {
          case "integer":
            return node.bigint;
          case "string":
          case "float":
          case "boolean":
            return node.value;
          default: {
            const lenient = this.lenientDates.get(node.range[0]);
            const written = lenient === undefined ? node.datetime : `${lenient}${node.datetime.slice(10)}`;
            const date = new TomlDate(written);
            if (lenient !== undefined || Number.isNaN(date.getTime())) unrepresentable.set(date, written);
            return date;
          }
        }
    }
  }

  /** The table at a header's resolved path, creating tables and array elements on the way. */
  private tableAt(root: TomlTable, path: KeyPath): TomlTable {
    let current: TomlTable | TomlValue[] = root;
    path.forEach((part, i) => {
      const container = current as Record<string | number, TomlValue | undefined>;
      let next = container[part];
      if (next === undefined) {
        next = typeof path[i + 1] === "number" ? [] : newTable();
        container[part] = next;
      }
      current = next as TomlTable | TomlValue[];
    });
    return current as TomlTable;
  }

  /** Offsets of the body (BOM skipped) → offsets of the text. */
  private span(start: number, end: number): [number, number] {
    return [start + this.skip, end + this.skip];
  }

  private headerEnd(node: AST.TOMLTable): number {
    const close = node.kind === "array" ? "]]" : "]";
    return this.text.indexOf(close, node.key.range[1] + this.skip) - this.skip + close.length;
  }

  private lineStart(offset: number): number {
    return this.text.lastIndexOf("\n", offset - 1) + 1;
  }

  private lineEnd(offset: number): number {
    const newline = this.text.indexOf("\n", offset);
    return newline < 0 ? this.text.length : newline + 1;
  }
}

function keyName(key: AST.TOMLBare | AST.TOMLQuoted): string {
  return key.type === "TOMLBare" ? key.name : key.value;
}

/** Sets a dotted key's value, creating the intermediate tables (the parser has ruled out conflicts). */
function setPath(table: TomlTable, keys: string[], value: TomlValue): void {
  let current = table;
  for (const key of keys.slice(0, -1)) {
    let next = current[key];
    if (next === undefined || typeof next !== "object" || Array.isArray(next) || next instanceof TomlDate) {
      next = newTable();
      current[key] = next;
    }
    current = next as TomlTable;
  }
  current[keys[keys.length - 1] as string] = value;
}

function positions(text: string): TomlSource["position"] {
  let lineStarts: number[] | undefined;
  return (offset) => {
    if (lineStarts === undefined) {
      lineStarts = [0];
      for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lineStarts.push(i + 1);
    }
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((lineStarts[mid] ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - (lineStarts[lo] ?? 0) + 1 };
  };
}

/**
 * The entry that best describes `path`: the one with exactly that path, else the one with the
 * longest path that is a prefix of it (e.g. the `[[block_devices]]` header of a missing key).
 */
export function locate(source: TomlSource, path: KeyPath): SourceEntry | undefined {
  let best: SourceEntry | undefined;
  let bestLength = 0;
  for (const entry of source.entries) {
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
export function rootEntries(source: TomlSource): SourceEntry[] {
  return source.entries.filter((e) => e.root);
}

