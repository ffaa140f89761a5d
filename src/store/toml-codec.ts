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
  TomlSyntaxError,
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
 * Parses and validates config text exactly as arcbox-core's loader would. `expectedName` (the
 * directory name) must equal the `name` key when given. Throws InvalidConfigError naming
 * `path:line:column` (where known) and the reason; never anything else for bad input.
 */
export function parseMachineConfig(
  text: string,
  path: string,
  expectedName?: string,
  now: () => Date = () => new Date(),
): ParsedMachineConfig {
  let document: TomlTable;
  let source: TomlSource;
  try {
    ({ document, source } = parseToml(text));
  } catch (error) {
    if (!(error instanceof TomlSyntaxError)) throw error;
    throw new InvalidConfigError(
      path,
      { line: error.line, column: error.column, reason: `invalid TOML: ${error.reason}` },
      { cause: error },
    );
  }
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
  const document = machineToDocument(machine, base);
  const check = machineDocumentSchema.safeParse(document, { reportInput: true });
  if (!check.success) {
    const issue = check.error.issues[0];
    const key = formatKeyPath((issue?.path ?? []) as KeyPath);
    const detail =
      issue?.code === "invalid_type" ? describeTypeIssue(issue.expected, issue.input) : (issue?.message ?? "invalid");
    throw new InvalidConfigError(path, { key, reason: `refusing to write an invalid machine: ${key}: ${detail}` });
  }
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
 * Applies `change` to `text` (as parsed into `parsed`) by editing only the bytes of those values
 * (keeping quoting style, comments, order and layout). A new `ip_address` line goes where a
 * key-sorted file (arcbox-core with toml 0.5) would have it when the root keys are sorted, else right
 * before the `state` line (where toml 0.8's declaration order puts it). Returns `undefined` when no
 * such edit is possible or the result would not read back as exactly the document with the change
 * applied; else the edited text and what it reads back as.
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
  const entryOf = (key: string) => roots.find((e) => e.path.length === 1 && e.path[0] === key);
  const stateEntry = entryOf("state");
  if (!stateEntry) return undefined;
  const style = text[stateEntry.valueStart] === "'" ? "literal" : "basic";
  const edits: { at: number; end: number; insert: string }[] = [];
  const expected = newTable();
  Object.assign(expected, document);

  if (change.state !== undefined && change.state !== document.state) {
    edits.push({ at: stateEntry.valueStart, end: stateEntry.valueEnd, insert: quoteString(change.state, style) });
    expected.state = change.state;
  }
  if (change.ip_address !== undefined && change.ip_address !== document.ip_address) {
    const ipEntry = entryOf("ip_address");
    if (change.ip_address === null) {
      if (ipEntry) edits.push({ at: ipEntry.lineStart, end: ipEntry.lineEnd, insert: "" });
      delete expected.ip_address;
    } else if (ipEntry) {
      const ipStyle = text[ipEntry.valueStart] === "'" ? "literal" : "basic";
      edits.push({ at: ipEntry.valueStart, end: ipEntry.valueEnd, insert: quoteString(change.ip_address, ipStyle) });
      expected.ip_address = change.ip_address;
    } else {
      const before = insertionPoint(roots, stateEntry);
      const indent = text.slice(before.lineStart, before.keyStart);
      const separator = text.slice(before.keyEnd, before.valueStart);
      const line = `${indent}ip_address${separator}${quoteString(change.ip_address, style)}${source.eol}`;
      edits.push({ at: before.lineStart, end: before.lineStart, insert: line });
      expected.ip_address = change.ip_address;
    }
  }
  let edited = text;
  for (const edit of edits.sort((a, b) => b.at - a.at)) {
    edited = edited.slice(0, edit.at) + edit.insert + edited.slice(edit.end);
  }
  // Values made of plain characters cannot change whether TOML 1.0 accepts the text, only what it
  // holds: that is checked with a quick parse (the original was judged by the strict one). Anything
  // else is judged by the strict parse again.
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

function insertionPoint(roots: SourceEntry[], stateEntry: SourceEntry): SourceEntry {
  const keys = roots.map((e) => String(e.path[0]));
  const sorted = keys.every((k, i) => i === 0 || (keys[i - 1] as string) <= k);
  if (!sorted) return stateEntry;
  return roots.find((e) => String(e.path[0]) > "ip_address") ?? stateEntry;
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
