/**
 * config.toml text <-> Machine: parsing with exact error positions, full serialisation that keeps
 * unknown keys, and minimal in-place edits of `state` / `ip_address` that keep every other byte.
 * Every text produced here is parsed back and compared with the intended document before use.
 * Reading is toml-document's TOML 1.0 parse (what arcbox-core reads); writing is smol-toml's.
 */
import { parse as parseQuickly, stringify, TomlDate, type TomlTable, type TomlValue } from "smol-toml";
import { InvalidConfigError, StoreError, controllerRule, type ConfigIssue } from "./errors.js";
import { PERSISTED_STATES, type Machine, type PersistedState } from "./machine.js";
import {
  BLOCK_DEVICE_KEYS,
  describeTomlValue,
  describeTypeIssue,
  I64_MIN,
  MACHINE_KEYS,
  machineDocumentSchema,
  machineFromDocument,
  orderMachineKeys,
  U64_TOML_MAX,
} from "./schema.js";
import {
  datetimeText,
  locate,
  newTable,
  parseToml,
  rootEntries,
  TomlNestingError,
  TomlSyntaxError,
  type ParsedToml,
  type KeyPath,
  type SourceEntry,
  type TomlSource,
} from "./toml-document.js";

/** A parsed, valid config: the machine, the whole document (unknown keys included) and its unknown keys. */
export interface ParsedMachineConfig {
  machine: Machine;
  document: TomlTable;
  /** Where every key and value is in the text (for minimal edits). */
  source: TomlSource;
  /** Keys arcbox-core does not know: `foo`, `block_devices[1].bar`. */
  unknownKeys: string[];
}

const KNOWN_KEYS = new Set<string>(MACHINE_KEYS);
const KNOWN_DEVICE_KEYS = new Set<string>(BLOCK_DEVICE_KEYS);

/**
 * What arcbox-core does with a text nested deeper than the controller reads (measured with its
 * loader: inline tables load up to some 1,650 levels, arrays 1,820, key parts 10,000; one level
 * more aborts the process with "has overflowed its stack").
 */
const ARCBOX_CORE_ON_NESTING = {
  values: "arcbox-core loads up to about 1,700 levels and crashes on a stack overflow beyond",
  key: "arcbox-core loads up to about 10,000 parts and crashes on a stack overflow beyond",
} as const;

/**
 * Parses and validates config text exactly as arcbox-core's loader would. `expectedName` (the
 * directory name) must equal the `name` key when given. Throws InvalidConfigError naming
 * `path:line:column` (where known) and the reason, and nothing else: should reading the text fail
 * in a way the reader does not foresee, that is an InvalidConfigError for this file too, saying so.
 */
export function parseMachineConfig(
  text: string,
  path: string,
  expectedName?: string,
  now: () => Date = () => new Date(),
): ParsedMachineConfig {
  try {
    return validateMachineConfig(parseConfigToml(text, path), path, expectedName, now);
  } catch (error) {
    if (error instanceof InvalidConfigError) throw error;
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const reason = `reading it failed unexpectedly (${detail}); the file may well be valid`;
    throw new InvalidConfigError(path, { reason }, { cause: error });
  }
}

/** The text as TOML 1.0; throws InvalidConfigError where it is not, or nests deeper than the controller reads. */
function parseConfigToml(text: string, path: string): ParsedToml {
  try {
    return parseToml(text);
  } catch (error) {
    if (error instanceof TomlNestingError) {
      const reason = controllerRule(error.reason, ARCBOX_CORE_ON_NESTING[error.what]);
      throw new InvalidConfigError(path, { line: error.line, column: error.column, reason }, { cause: error });
    }
    if (!(error instanceof TomlSyntaxError)) throw error;
    throw new InvalidConfigError(
      path,
      { line: error.line, column: error.column, reason: `invalid TOML: ${error.reason}` },
      { cause: error },
    );
  }
}

/** The machine of a parsed config, checked against the schema and the name rule; throws InvalidConfigError. */
function validateMachineConfig(
  { document, source }: ParsedToml,
  path: string,
  expectedName: string | undefined,
  now: () => Date,
): ParsedMachineConfig {
  if (Object.keys(document).length === 0) {
    throw new InvalidConfigError(path, {
      line: 1,
      column: 1,
      reason: "the file has no keys; a machine config needs name, cpus, memory_mb, disk_gb, state and vm_id",
    });
  }
  const where = (keyPath: KeyPath): Pick<ConfigIssue, "line" | "column"> => {
    const entry = locate(source, keyPath);
    return entry ? source.position(entry.keyStart) : {};
  };

  const issues: ConfigIssue[] = [];
  for (const [keyPath, value] of integersBeyondI64(document)) {
    // TOML integers are 64-bit signed; arcbox-core's parser rejects larger ones as a syntax error.
    issues.push({ ...where(keyPath), key: formatKeyPath(keyPath), reason: `${formatKeyPath(keyPath)}: integer ${value} does not fit in 64 bits (TOML integers are i64)` });
  }
  const result = machineDocumentSchema.safeParse(document, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = formatKeyPath(issue.path as KeyPath);
      const detail =
        issue.code === "invalid_type" ? describeTypeIssue(issue.expected, issue.input) : issue.message;
      issues.push({ ...where(issue.path as KeyPath), key, reason: `${key}: ${detail}` });
    }
  } else if (expectedName !== undefined && result.data.name !== expectedName) {
    issues.push({
      ...where(["name"]),
      key: "name",
      reason: controllerRule(
        `name: ${JSON.stringify(result.data.name)} does not match its directory name ${JSON.stringify(expectedName)}`,
        `arcbox-core loads it, but then takes the machine for ${JSON.stringify(result.data.name)}: its state updates would fail, and a save would write a second directory`,
      ),
    });
  }
  if (issues.length > 0 || !result.success) {
    issues.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0));
    const first = issues[0] as ConfigIssue;
    throw new InvalidConfigError(path, first, { issues });
  }
  return {
    machine: machineFromDocument(result.data, now),
    document,
    source,
    unknownKeys: unknownKeysOf(document),
  };
}

/** Every integer outside i64 in `value`, with where it is (a plain walk: this runs on every read). */
function integersBeyondI64(value: unknown, at: (string | number)[] = [], found: [KeyPath, bigint][] = []): [KeyPath, bigint][] {
  if (typeof value === "bigint") {
    if (value < I64_MIN || value > U64_TOML_MAX) found.push([[...at], value]);
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      at.push(i);
      integersBeyondI64(value[i], at, found);
      at.pop();
    }
  } else if (isTable(value)) {
    for (const k in value) {
      at.push(k);
      integersBeyondI64(value[k], at, found);
      at.pop();
    }
  }
  return found;
}

/** `block_devices[1].read_only` from a key path. */
export function formatKeyPath(path: KeyPath): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : out ? `.${part}` : part;
  return out || "(root)";
}

function unknownKeysOf(document: TomlTable): string[] {
  const unknown = Object.keys(document).filter((k) => !KNOWN_KEYS.has(k));
  const devices = document.block_devices;
  if (Array.isArray(devices)) {
    devices.forEach((device, i) => {
      if (isTable(device)) {
        for (const k of Object.keys(device)) {
          if (!KNOWN_DEVICE_KEYS.has(k)) unknown.push(formatKeyPath(["block_devices", i, k]));
        }
      }
    });
  }
  return unknown;
}

function isTable(value: unknown): value is TomlTable {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof TomlDate);
}

/**
 * The document for `machine`: known keys in arcbox-core's declaration order, then the unknown keys
 * of `base` (the file being replaced) with their values; unknown keys of the i-th block device
 * are kept on the i-th block device.
 */
export function machineToDocument(machine: Machine, base?: TomlTable): TomlTable {
  const doc = newTable();
  const baseDevices = Array.isArray(base?.block_devices) ? base.block_devices : [];
  for (const key of MACHINE_KEYS) {
    const value = machine[key];
    if (value === undefined) continue;
    if (key === "cpus") {
      doc.cpus = Number.isInteger(machine.cpus) ? BigInt(machine.cpus) : machine.cpus;
    } else if (key === "block_devices") {
      doc.block_devices = machine.block_devices.map((device, i) => {
        const table = newTable();
        table.path = device.path;
        table.read_only = device.read_only;
        const old = baseDevices[i];
        if (isTable(old)) {
          for (const [k, v] of Object.entries(old)) if (!KNOWN_DEVICE_KEYS.has(k)) table[k] = v;
        }
        return table;
      });
    } else {
      doc[key] = value as TomlValue;
    }
  }
  if (base) for (const [k, v] of Object.entries(base)) if (!KNOWN_KEYS.has(k)) doc[k] = v;
  return doc;
}

/**
 * The document of `machine` (unknown keys of `base` kept), when the schema accepts it. Throws
 * InvalidConfigError (`refusing to write an invalid machine: <key>: <problem>`) when it does not.
 */
export function checkMachine(machine: Machine, path: string, base?: TomlTable): TomlTable {
  const document = machineToDocument(machine, base);
  const check = machineDocumentSchema.safeParse(document, { reportInput: true });
  if (!check.success) {
    const issue = check.error.issues[0];
    const key = formatKeyPath((issue?.path ?? []) as KeyPath);
    const detail =
      issue?.code === "invalid_type" ? describeTypeIssue(issue.expected, issue.input) : (issue?.message ?? "invalid");
    throw new InvalidConfigError(path, { key, reason: `refusing to write an invalid machine: ${key}: ${detail}` });
  }
  return document;
}

/** A text to write, with what it reads back as (so the writer need not parse it once more). */
export interface CheckedText {
  text: string;
  parsed: ParsedMachineConfig;
}

/**
 * Full serialisation of `machine` (unknown keys of `base` kept), checked by parsing it back.
 * Throws InvalidConfigError when the machine itself is invalid, StoreError when the text would
 * not read back as the same document.
 */
export function serializeMachine(machine: Machine, path: string, base?: TomlTable): CheckedText {
  const document = checkMachine(machine, path, base);
  // numbersAsFloat: every integer is a bigint here, so every number is a float and stays one.
  let text: string;
  try {
    text = stringify(document, { numbersAsFloat: true });
  } catch (error) {
    // An unknown key holds a datetime smol-toml cannot write (a leap second, a day its month lacks).
    throw new StoreError(`${path}: cannot serialise machine "${machine.name}": ${(error as Error).message}; nothing was written`, path, { cause: error });
  }
  const parsed = readBack(text, document, path, machine.name);
  if (!parsed) {
    throw new StoreError(`${path}: cannot serialise machine "${machine.name}" faithfully; nothing was written`, path);
  }
  return { text, parsed };
}

/** The changes a minimal edit can make. `ip_address: null` removes the key. */
export interface MinimalChange {
  state?: PersistedState;
  ip_address?: string | null;
}

/**
 * Applies `change` to `text` (as parsed into `parsed`) by editing only the bytes that hold those
 * values (keeping quoting style, comments, order and layout). `state` keeps the form it is written
 * in: a string gets the new string; serde's table form (`state = { running = {} }`,
 * `state.running = {}`, `[state.running]`, or `[state]` with `running = {}`) gets the new variant's
 * name in place of the old one's. A new `ip_address` line goes where a key-sorted file (arcbox-core
 * with toml 0.5) would have it when the root keys are sorted, else right before the `state` line
 * (where toml 0.8's declaration order puts it), or after the last root key when `state` is a table
 * of its own. Returns `undefined` when no such edit is possible or the result would not read back
 * as exactly the document with the change applied; else the edited text and what it reads back as.
 */
export function editInPlace(
  text: string,
  parsed: Pick<ParsedMachineConfig, "document" | "source"> & Partial<Pick<ParsedMachineConfig, "machine" | "unknownKeys">>,
  change: MinimalChange,
  path: string,
  expectedName: string,
): CheckedText | undefined {
  const { document, source } = parsed;
  const roots = rootEntries(source);
  const state = stateSite(text, source, document.state);
  if (!state) return undefined;
  const edits: { at: number; end: number; insert: string }[] = [];
  const expected = newTable();
  Object.assign(expected, document);

  if (change.state !== undefined && change.state !== state.current) {
    edits.push({ at: state.start, end: state.end, insert: state.write(change.state) });
    expected.state = state.value(change.state);
  }
  if (change.ip_address !== undefined && change.ip_address !== document.ip_address) {
    const ipEntry = roots.find((e) => e.path.length === 1 && e.path[0] === "ip_address");
    if (change.ip_address === null) {
      if (ipEntry) edits.push({ at: ipEntry.lineStart, end: ipEntry.lineEnd, insert: "" });
      delete expected.ip_address;
    } else if (ipEntry) {
      const ipStyle = text[ipEntry.valueStart] === "'" ? "literal" : "basic";
      edits.push({ at: ipEntry.valueStart, end: ipEntry.valueEnd, insert: quoteString(change.ip_address, ipStyle) });
      expected.ip_address = change.ip_address;
    } else {
      const place = insertionPoint(roots, state.rootEntry);
      if (!place) return undefined;
      const { at, like } = place;
      const indent = text.slice(like.lineStart, like.keyStart);
      const separator = text.slice(like.keyEnd, like.valueStart);
      edits.push({ at, end: at, insert: `${indent}ip_address${separator}${quoteString(change.ip_address, state.style)}${source.eol}` });
      expected.ip_address = change.ip_address;
    }
  }
  let edited = text;
  for (const edit of edits.sort((a, b) => b.at - a.at)) {
    edited = edited.slice(0, edit.at) + edit.insert + edited.slice(edit.end);
  }
  return checkEdit(edited, expected, parsed, change, path, expectedName);
}

/**
 * The edited text with what it reads back as, when that is exactly `expected`. Values made of plain
 * characters cannot change whether TOML 1.0 accepts the text, only what it holds: that is checked
 * with a quick parse (the original was judged by the strict one). Anything else is judged by the
 * strict parse again.
 */
function checkEdit(
  edited: string,
  expected: TomlTable,
  parsed: Partial<Pick<ParsedMachineConfig, "machine" | "unknownKeys">>,
  change: MinimalChange,
  path: string,
  expectedName: string,
): CheckedText | undefined {
  const plain =
    (change.state === undefined || (PERSISTED_STATES as readonly string[]).includes(change.state)) &&
    (change.ip_address === undefined || change.ip_address === null || PLAIN_VALUE.test(change.ip_address));
  if (plain) {
    if (quickReadBack(edited, expected) && parsed.machine && parsed.unknownKeys) {
      const machine: Machine = { ...parsed.machine };
      if (change.state !== undefined) machine.state = change.state;
      if (change.ip_address === null) delete machine.ip_address;
      else if (change.ip_address !== undefined) machine.ip_address = change.ip_address;
      return { text: edited, parsed: withLazySource({ machine: orderMachineKeys(machine), document: expected, unknownKeys: parsed.unknownKeys }, edited) };
    }
  }
  const reread = readBack(edited, expected, path, expectedName);
  return reread && { text: edited, parsed: reread };
}

/** Where and how `state` is written: the bytes naming it, and how to write another state there. */
interface StateSite {
  /** The state the text holds (the variant's name in the table form). */
  current: string;
  start: number;
  end: number;
  /** Text for another state in place of `start`..`end`: the same kind of string, or of key. */
  write(state: PersistedState): string;
  /** What the document then holds for `state`. */
  value(state: PersistedState): TomlValue;
  /** The root `key = value` that holds `state` (absent when `state` is a table with its own header). */
  rootEntry: SourceEntry | undefined;
  /** The quoting of the state's string value ("basic" for the table form). */
  style: "literal" | "basic";
}

/**
 * How `state` is written in `text`: a string, or serde's table form `{ <variant> = {} }` in any of
 * its spellings (inline table, dotted key, header), where the one place naming the variant is the
 * last part of the key that defines `state.<variant>`. Undefined for anything else.
 */
function stateSite(text: string, source: TomlSource, state: TomlValue | undefined): StateSite | undefined {
  const rootEntry = rootEntries(source).find((e) => e.path[0] === "state");
  if (typeof state === "string") {
    if (rootEntry === undefined || rootEntry.path.length !== 1) return undefined;
    const style = text[rootEntry.valueStart] === "'" ? "literal" : "basic";
    const write = (next: string) => quoteString(next, style);
    return { current: state, start: rootEntry.valueStart, end: rootEntry.valueEnd, write, value: (next) => next, rootEntry, style };
  }
  const variants = isTable(state) ? Object.keys(state) : [];
  const variant = variants[0];
  if (variants.length !== 1 || variant === undefined) return undefined;
  const entry = source.entries.find((e) => e.path.length === 2 && e.path[0] === "state" && e.path[1] === variant);
  const part = entry?.keyParts[entry.keyParts.length - 1];
  if (part === undefined) return undefined;
  const quote = text[part.start];
  const write = (next: string) => (quote === "'" ? `'${next}'` : quote === '"' ? `"${next}"` : next);
  const value = (next: string) => {
    const table = newTable();
    table[next] = newTable();
    return table;
  };
  return { current: variant, start: part.start, end: part.end, write, value, rootEntry, style: "basic" };
}

/** A value of plain characters (what `state` values and usual IP addresses are): quoted as it is, in either style. */
const PLAIN_VALUE = /^[A-Za-z0-9.:_\-/]*$/;

/** Whether smol-toml reads `text` as exactly `expected`. */
function quickReadBack(text: string, expected: TomlTable): boolean {
  try {
    return canonical(parseQuickly(text, { integersAsBigInt: true })) === canonical(expected);
  } catch {
    return false;
  }
}

/**
 * A parsed config whose source map is made (by the strict parse) only when asked for: it is needed
 * only for another minimal edit of the same text. Throws from that getter only if the text no longer
 * parses, which the quick read-back has ruled out.
 */
function withLazySource(known: Omit<ParsedMachineConfig, "source">, text: string): ParsedMachineConfig {
  let source: TomlSource | undefined;
  return Object.defineProperty({ ...known } as ParsedMachineConfig, "source", {
    enumerable: true,
    get: () => (source ??= parseToml(text).source),
  });
}

/**
 * Where a new `ip_address` line goes, and the entry whose layout it copies: in a key-sorted file
 * before the first root key after it; else before the root entry of `state`; else (`state` has a
 * header of its own, after the root keys) after the last root key.
 */
function insertionPoint(roots: SourceEntry[], stateEntry: SourceEntry | undefined): { at: number; like: SourceEntry } | undefined {
  const keys = roots.map((e) => String(e.path[0]));
  const sorted = keys.every((k, i) => i === 0 || (keys[i - 1] as string) <= k);
  const next = sorted ? roots.find((e) => String(e.path[0]) > "ip_address") : stateEntry;
  if (next) return { at: next.lineStart, like: next };
  const last = roots[roots.length - 1];
  return last && { at: last.lineEnd, like: last };
}

/** `value` as a TOML string: 'literal' when asked and possible, else "basic" with escapes. */
function quoteString(value: string, style: "literal" | "basic"): string {
  // eslint-disable-next-line no-control-regex
  if (style === "literal" && !/['\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) return `'${value}'`;
  return stringify({ v: value }).slice("v = ".length).trimEnd();
}

/** `text` parsed, when it is a valid config for `expectedName` whose document equals `expected` exactly; else undefined. */
export function readBack(text: string, expected: TomlTable, path: string, expectedName: string): ParsedMachineConfig | undefined {
  try {
    const reread = parseMachineConfig(text, path, expectedName);
    return canonical(reread.document) === canonical(expected) ? reread : undefined;
  } catch (error) {
    if (error instanceof InvalidConfigError) return undefined;
    throw error;
  }
}

/**
 * A string that is equal for two TOML values exactly when they hold the same data: types are
 * tagged (1 vs 1.0), table key order does not matter. The sign of a float zero is not kept
 * (smol-toml writes -0.0 as 0.0), and datetimes compare to the millisecond (what TomlDate holds).
 * A datetime a JavaScript Date cannot hold (a leap second) compares by its text.
 */
export function canonical(value: unknown): string {
  if (typeof value === "bigint") return `i${value}`;
  if (typeof value === "number") return `f${value === 0 ? 0 : value}`;
  if (typeof value === "string") return `s${JSON.stringify(value)}`;
  if (typeof value === "boolean") return `b${value}`;
  if (value instanceof TomlDate) return `d${datetimeText(value)}`;
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (isTable(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  throw new TypeError(`not a TOML value: ${describeTomlValue(value)}`);
}
