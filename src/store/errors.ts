/**
 * Typed errors of the machine store. Every message names the file (or machine) and the problem,
 * so it can be shown to a person as it is.
 */
import { getSystemErrorMap } from "node:util";

/** Base class of every error the store throws on purpose. */
export class StoreError extends Error {
  /** The file or directory the error is about, when there is one. */
  readonly path: string | undefined;

  constructor(message: string, path?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.path = path;
  }
}

/** The machine has no directory or no `config.toml`. */
export class MachineNotFoundError extends StoreError {
  readonly machine: string;

  constructor(machine: string, path: string) {
    super(`${path}: machine "${machine}" not found`, path);
    this.machine = machine;
  }
}

/** One problem found in a config file; `line`/`column` are 1-based and absent when unknown. */
export interface ConfigIssue {
  line?: number;
  column?: number;
  reason: string;
  /** Dotted key path the problem is about (`cpus`, `block_devices[1].read_only`), when known. */
  key?: string;
}

/** Formats `path:line:column: reason`, leaving out the parts that are unknown. */
export function formatIssue(path: string, issue: ConfigIssue): string {
  let where = path;
  if (issue.line !== undefined) {
    where += `:${issue.line}`;
    if (issue.column !== undefined) where += `:${issue.column}`;
  }
  return `${where}: ${issue.reason}`;
}

/**
 * A config file (or machine directory) that arcbox-core would not accept. `line`, `column`, `reason`
 * and `key` describe the first problem in file order; `issues` lists all that were found.
 */
export class InvalidConfigError extends StoreError {
  override readonly path: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly reason: string;
  readonly key: string | undefined;
  readonly issues: readonly ConfigIssue[];

  constructor(path: string, issue: ConfigIssue, options?: ErrorOptions & { issues?: readonly ConfigIssue[] }) {
    super(formatIssue(path, issue), path, options);
    this.path = path;
    this.line = issue.line;
    this.column = issue.column;
    this.reason = issue.reason;
    this.key = issue.key;
    this.issues = options?.issues ?? [issue];
  }
}

/** The file changed between the read and the write of a read-modify-write; nothing was written. */
export class ConflictError extends StoreError {
  override readonly path: string;

  constructor(path: string, detail: string) {
    super(`${path}: changed by another writer (${detail}); nothing was written, read it again and retry`, path);
    this.path = path;
  }
}

/**
 * Marks a problem that only the controller's own stricter rules find (name rule, name equal to its
 * directory, no symlink, no FIFO, at most 1 MiB, nested at most 100 deep), saying what arcbox-core
 * does with such a file (docs/design.md#validity); by default that it loads it.
 */
export function controllerRule(reason: string, arcboxCore = "arcbox-core would load it"): string {
  return `${reason} (a rule of arcbox-controller's own; ${arcboxCore})`;
}

/** A machine name that is not `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` or ends in `.`. */
export class InvalidNameError extends StoreError {
  readonly machineName: string;

  constructor(machineName: string, reason: string, path?: string) {
    super(`${path ?? "machine name"}: invalid machine name ${JSON.stringify(machineName)}: ${controllerRule(reason)}`, path);
    this.machineName = machineName;
  }
}

/**
 * A file-system operation failed (e.g. ENOSPC while writing). The message names the file, the
 * operation and the errno: `/m/web/config.toml: write (temp file …) failed: ENOSPC (no space left on device)`.
 */
export class StoreIoError extends StoreError {
  override readonly path: string;
  readonly operation: string;
  readonly code: string | undefined;

  constructor(path: string, operation: string, cause: unknown) {
    const code = errnoCode(cause);
    super(`${path}: ${operation} failed: ${describeFailure(cause, code)}`, path, { cause });
    this.path = path;
    this.operation = operation;
    this.code = code;
  }
}

/** The `code` of a Node.js system error (`ENOENT`, `ENOSPC`, ...), if it is one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

/**
 * `ENOSPC (no space left on device)` for a system error, the message otherwise. Node's own message
 * (`ENOSPC: no space left on device, write '/proc/self/fd/23/…'`) is not repeated: it would name the
 * code twice and a descriptor path instead of the file.
 */
function describeFailure(cause: unknown, code: string | undefined): string {
  const message = cause instanceof Error ? cause.message : String(cause);
  if (code === undefined) return message;
  const errno = (cause as { errno?: unknown }).errno;
  const known = typeof errno === "number" ? getSystemErrorMap().get(errno) : undefined;
  const description = known?.[0] === code ? known[1] : /^[A-Z0-9_]+: ([^,]+)/.exec(message)?.[1];
  return description ? `${code} (${description})` : code;
}
