/**
 * TOML text → document and source map in one parse. arcbox-core reads TOML 1.0 (its `toml` crate's
 * parser family, `toml_edit`), so the text is parsed strictly as TOML 1.0 by toml-eslint-parser
 * (`tomlVersion: "1.0.0"`), which also gives every key and value its source range: error positions
 * and minimal edits come from the same parse. The few byte-level rules that parser leaves to its
 * caller are applied here the way toml_edit applies them: one leading BOM is skipped, and a carriage
 * return must start a CRLF line break. toml_edit checks a date's day only against 1–31, so a date
 * such as 2021-02-30 is read (as text that no JavaScript Date holds) where the strict parser refuses it.
 */
import { parse as parseToml11, TomlDate, TomlError, type TomlTable, type TomlValue } from "smol-toml";
import { parseTOML, type AST } from "toml-eslint-parser";
import { parseTomlInWorker } from "./toml-worker.js";

export type KeyPath = readonly (string | number)[];

/**
 * One `key = value` (kind "key"), `[table]` / `[[array]]` header (kind "header") or `key = value`
 * inside an inline table (kind "inline") of the text.
 */
export interface SourceEntry {
  kind: "key" | "header" | "inline";
  /** Full path from the root: table path (array tables add their index), then the (dotted) key. */
  path: KeyPath;
  /** Where each part of the entry's own (dotted) key is written, quotes included. */
  keyParts: readonly { start: number; end: number }[];
  /** Offset of the start of the line holding the entry (past a BOM). */
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

/**
 * The deepest nesting read: arrays and inline tables inside one another, and parts of one dotted
 * key (in a header or a `key = value`). A machine config nests 3 deep; arcbox-core's parser
 * recurses on both, and so does any reader of the document.
 */
export const MAX_TOML_NESTING = 100;

/**
 * The text nests deeper than MAX_TOML_NESTING (`values`: arrays and inline tables; `key`: parts of
 * one key). It may be valid TOML; it is refused all the same, at the first place past the limit.
 */
export class TomlNestingError extends TomlSyntaxError {
  constructor(
    readonly what: "values" | "key",
    offset: number,
    line: number,
    column: number,
  ) {
    const reason = what === "values"
      ? `arrays and inline tables are nested more than ${MAX_TOML_NESTING} deep`
      : `a key of more than ${MAX_TOML_NESTING} dotted parts`;
    super(reason, offset, line, column);
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
 * would refuse it, saying so when the construct is TOML 1.1 syntax, and TomlNestingError where it
 * nests deeper than MAX_TOML_NESTING. A value too long for this thread's stack is parsed in a worker
 * thread (see toml-worker.ts); should that worker fail, the plain Error it throws is passed on.
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
  const tooDeep = firstTooDeepValue(text);
  if (tooDeep !== undefined) {
    const offset = offsetOf(text, tooDeep.line, tooDeep.column);
    throw new TomlNestingError("values", offset, tooDeep.line, tooDeep.column);
  }

  let program: AST.TOMLProgram | undefined;
  let parsed = body;
  const lenientDates = new Map<number, string>();
  const strict = new StrictParser();
  while (program === undefined) {
    try {
      program = strict.parse(parsed);
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
  const builder = new DocumentBuilder(text, skip, lenientDates, position);
  const document = builder.build(program.body[0]);
  return {
    document,
    source: { entries: builder.entries, eol: text.includes("\r\n") ? "\r\n" : "\n", position },
  };
}

/**
 * toml-eslint-parser's strict TOML 1.0 parse, on this thread; a text whose parse overflows this
 * thread's stack (a long string or number: see toml-worker.ts) is parsed again in a worker, and so
 * are this parser's later texts (the same text with a date mended).
 */
class StrictParser {
  private inWorker = false;

  parse(text: string): AST.TOMLProgram {
    if (!this.inWorker) {
      try {
        return parseTOML(text, { tomlVersion: "1.0.0" });
      } catch (error) {
        if (!isStackOverflow(error)) throw error;
        this.inWorker = true;
      }
    }
    return parseTomlInWorker(text);
  }
}

function isStackOverflow(error: unknown): boolean {
  return error instanceof RangeError && /call stack/i.test(error.message);
}

/**
 * Where arrays and inline tables first nest deeper than MAX_TOML_NESTING in `text`, if they do:
 * smol-toml's `maxDepth` stops there, without recursing any deeper. Only a text with more brackets
 * and braces than the limit can nest that deep, so most texts are not parsed for it at all. Any other
 * problem of the text is left to the strict parse.
 */
function firstTooDeepValue(text: string): { line: number; column: number } | undefined {
  let brackets = 0;
  for (let i = 0; i < text.length && brackets <= MAX_TOML_NESTING; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) brackets++;
  }
  if (brackets <= MAX_TOML_NESTING) return undefined;
  try {
    parseToml11(text, { maxDepth: MAX_TOML_NESTING });
  } catch (error) {
    if (error instanceof TomlError && /excessively nested/.test(error.message)) return { line: error.line, column: error.column };
  }
  return undefined;
}

/** The offset of a 1-based line and column (UTF-16 units) of `text`. */
function offsetOf(text: string, line: number, column: number): number {
  let start = 0;
  for (let n = 1; n < line; n++) start = text.indexOf("\n", start) + 1;
  return start + column - 1;
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
    private readonly position: TomlSource["position"],
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
        keyParts: this.keyParts(node.key),
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

  private keyValue(table: TomlTable, node: AST.TOMLKeyValue, at: KeyPath, root: boolean, kind: "key" | "inline" = "key"): void {
    const keys = node.key.keys.map(keyName);
    const [keyStart, keyEnd] = this.span(node.key.range[0], node.key.range[1]);
    const [valueStart, valueEnd] = this.span(node.value.range[0], node.value.range[1]);
    const path = [...at, ...keys];
    this.entries.push({
      kind,
      path,
      keyParts: this.keyParts(node.key),
      lineStart: this.lineStart(keyStart),
      keyStart,
      keyEnd,
      valueStart,
      valueEnd,
      lineEnd: this.lineEnd(valueEnd),
      root,
    });
    setPath(table, keys, this.value(node.value, path));
  }

  /** The value of `node`, found at `at` (entries inside inline tables are recorded with their full path). */
  private value(node: AST.TOMLContentNode, at: KeyPath): TomlValue {
    switch (node.type) {
      case "TOMLArray":
        return node.elements.map((element, i) => this.value(element, element.type === "TOMLValue" ? at : [...at, i]));
      case "TOMLInlineTable": {
        const table = newTable();
        for (const kv of node.body) this.keyValue(table, kv, at, false, "inline");
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

  /** Where each part of a key is written; throws TomlNestingError at the first part past MAX_TOML_NESTING. */
  private keyParts(key: AST.TOMLKey): SourceEntry["keyParts"] {
    const parts = key.keys.map((part) => {
      const [start, end] = this.span(part.range[0], part.range[1]);
      return { start, end };
    });
    const beyond = parts[MAX_TOML_NESTING];
    if (beyond !== undefined) {
      const { line, column } = this.position(beyond.start);
      throw new TomlNestingError("key", beyond.start, line, column);
    }
    return parts;
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

  /** The start of the line holding `offset`; on the first line, just past the BOM (which stays first). */
  private lineStart(offset: number): number {
    return Math.max(this.skip, this.text.lastIndexOf("\n", offset - 1) + 1);
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
 * longest path that is a prefix of it (e.g. the `[[block_devices]]` header of a missing key). Keys
 * inside inline tables are not looked at: a problem there is shown at the key holding the table.
 */
export function locate(source: TomlSource, path: KeyPath): SourceEntry | undefined {
  let best: SourceEntry | undefined;
  let bestLength = 0;
  for (const entry of source.entries) {
    const n = entry.path.length;
    if (entry.kind === "inline") continue;
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

