/**
 * `created_at` as arcbox-core reads it: chrono's `DateTime<Utc>: FromStr` (chrono 0.4.23), a relaxed
 * RFC 3339. Its rules, each checked against arcbox-core's loader:
 * - date `Y-M-D`: the year has 1 to 4 digits, or a sign and any number of digits; month and day 1 or
 *   2 digits; whitespace may stand before each number and before each `-`;
 * - then exactly `T` or a space (a lowercase `t` is refused), then `h:m:s` the same way (1 or 2 digits
 *   each, whitespace allowed around them), hour 0–23, minute 0–59, second 0–60 (60 is a leap second);
 * - an optional fraction `.` + at least one digit: the first 9 digits count, further digits are
 *   dropped (so 10 or more fraction digits are accepted);
 * - the offset: `Z`, `z`, `UTC` in any case, or a sign, two digits of hours, any run of `:` and
 *   whitespace, two digits of minutes (0–59); the offset must be less than 24 hours;
 * - whitespace may follow; nothing else may. Whitespace is Unicode White_Space (Rust's
 *   `char::is_whitespace`), also before the year.
 * - the date must exist in the proleptic Gregorian calendar, years −262144 ..= 262143, also once the
 *   offset is applied.
 */

/** A `created_at` value as chrono holds it: a UTC instant with nanoseconds (and a leap-second flag). */
export interface ChronoInstant {
  /** Milliseconds since the epoch (a leap second counts as the second before it). */
  epochMs: number;
  /** How chrono's `to_rfc3339` writes it (`2026-04-27T04:13:21.482913+00:00`). */
  rfc3339: string;
}

// Rust's char::is_whitespace (Unicode White_Space); JavaScript's \s differs (U+FEFF in, U+0085 out).
const WHITESPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
const MIN_YEAR = -262144;
const MAX_YEAR = 262143;

class Reject extends Error {}

class Scanner {
  i = 0;
  constructor(readonly s: string) {}

  get rest(): string {
    return this.s.slice(this.i);
  }
  trim(): void {
    while (this.i < this.s.length && WHITESPACE.test(this.s[this.i] as string)) this.i++;
  }
  literal(c: string): void {
    if (this.s[this.i] !== c) throw new Reject();
    this.i++;
  }
  /** ASCII digits: at least `min`, at most `max` (more digits are left for the next item). */
  digits(min: number, max: number): number {
    const start = this.i;
    while (this.i < this.s.length && this.i - start < max && isDigit(this.s[this.i])) this.i++;
    if (this.i - start < min) throw new Reject();
    // Beyond 2^53 the value is inexact, but it is then far outside every range checked later.
    return Number(this.s.slice(start, this.i));
  }
  /** A chrono `Numeric` item: leading whitespace, then the digits. */
  numeric(max: number): number {
    this.trim();
    return this.digits(1, max);
  }
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

function parseFields(s: string) {
  const p = new Scanner(s);
  p.trim();
  let year: number;
  if (p.s[p.i] === "-" || p.s[p.i] === "+") {
    const negative = p.s[p.i] === "-";
    p.i++;
    year = p.digits(1, Infinity) * (negative ? -1 : 1);
  } else {
    year = p.digits(1, 4);
  }
  p.trim();
  p.literal("-");
  const month = p.numeric(2);
  p.trim();
  p.literal("-");
  const day = p.numeric(2);
  // The date ends here; exactly one `T` or space must lead to the time.
  if (p.s[p.i] !== "T" && p.s[p.i] !== " ") throw new Reject();
  p.i++;
  const hour = p.numeric(2);
  p.trim();
  p.literal(":");
  const minute = p.numeric(2);
  p.trim();
  p.literal(":");
  const second = p.numeric(2);
  let nano = 0;
  if (p.s[p.i] === ".") {
    p.i++;
    const start = p.i;
    const first = p.digits(1, 9);
    nano = first * 10 ** (9 - (p.i - start));
    while (isDigit(p.s[p.i])) p.i++;
  }
  p.trim();
  const offset = parseOffset(p);
  p.trim();
  if (p.i !== p.s.length) throw new Reject();
  return { year, month, day, hour, minute, second, nano, offset };
}

function parseOffset(p: Scanner): number {
  const c = p.s[p.i];
  if (c === "Z" || c === "z") {
    p.i++;
    return 0;
  }
  if (c === "U" || c === "u") {
    if (p.s.slice(p.i + 1, p.i + 3).toLowerCase() !== "tc") throw new Reject();
    p.i += 3;
    return 0;
  }
  if (c !== "+" && c !== "-") throw new Reject();
  p.i++;
  if (!isDigit(p.s[p.i]) || !isDigit(p.s[p.i + 1])) throw new Reject();
  const hours = Number(p.s.slice(p.i, p.i + 2));
  p.i += 2;
  while (p.i < p.s.length && (p.s[p.i] === ":" || WHITESPACE.test(p.s[p.i] as string))) p.i++;
  const m1 = p.s[p.i];
  if (m1 === undefined || m1 < "0" || m1 > "5" || !isDigit(p.s[p.i + 1])) throw new Reject();
  const minutes = Number(p.s.slice(p.i, p.i + 2));
  p.i += 2;
  const seconds = hours * 3600 + minutes * 60;
  return c === "-" ? -seconds : seconds;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Milliseconds since the epoch of a proleptic Gregorian date and time (any year Date can hold). */
function utcMs(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime();
}

/**
 * Reads `value` exactly as arcbox-core's chrono does (see the module's doc). Returns the instant, or
 * undefined when arcbox-core would refuse the value.
 */
export function parseCreatedAt(value: string): ChronoInstant | undefined {
  let f: ReturnType<typeof parseFields>;
  try {
    f = parseFields(value);
  } catch (error) {
    if (error instanceof Reject) return undefined;
    throw error;
  }
  if (f.year < MIN_YEAR || f.year > MAX_YEAR || f.month < 1 || f.month > 12) return undefined;
  if (f.day < 1 || f.day > daysInMonth(f.year, f.month)) return undefined;
  if (f.hour > 23 || f.minute > 59 || f.second > 60) return undefined;
  if (Math.abs(f.offset) >= 86_400) return undefined;
  const leap = f.second === 60;
  const epochMs = utcMs(f.year, f.month, f.day, f.hour, f.minute, leap ? 59 : f.second) - f.offset * 1000;
  const utc = new Date(epochMs);
  const year = utc.getUTCFullYear();
  if (year < MIN_YEAR || year > MAX_YEAR) return undefined;
  return { epochMs: epochMs + Math.floor(f.nano / 1e6), rfc3339: formatRfc3339(utc, leap, f.nano) };
}

/** chrono's `to_rfc3339` of a UTC instant (whole seconds in `utc`). */
function formatRfc3339(utc: Date, leap: boolean, nano: number): string {
  const year = utc.getUTCFullYear();
  const yyyy =
    year >= 0 && year <= 9999 ? String(year).padStart(4, "0") : `${year < 0 ? "-" : "+"}${String(Math.abs(year)).padStart(4, "0")}`;
  const two = (n: number) => String(n).padStart(2, "0");
  const second = leap ? 60 : utc.getUTCSeconds();
  let fraction = "";
  if (nano !== 0) {
    const nine = String(nano).padStart(9, "0");
    fraction = nano % 1_000_000 === 0 ? `.${nine.slice(0, 3)}` : nano % 1000 === 0 ? `.${nine.slice(0, 6)}` : `.${nine}`;
  }
  return `${yyyy}-${two(utc.getUTCMonth() + 1)}-${two(utc.getUTCDate())}T${two(utc.getUTCHours())}:${two(utc.getUTCMinutes())}:${two(second)}${fraction}+00:00`;
}
