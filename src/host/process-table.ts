/**
 * The system's process table: whether a pid names a zombie, and when the process started. Two
 * implementations answer the same question:
 * - `proc`: Linux's `/proc/<pid>/stat` (state, start time in clock ticks since boot) and `/proc/stat`
 *   (boot time); no process is spawned.
 * - `ps`: `ps -o stat=,lstart= -p <pid>`, which macOS and Linux (procps) both understand. This is
 *   how the controller reads processes on macOS, and it runs in CI on Linux too.
 * `ARCBOX_PROCESS_TABLE=proc|ps` chooses; by default `proc` where `/proc` exists, else `ps`.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";

/** What the process table says about one pid. */
export type ProcessLookup =
  /** No such process. */
  | { kind: "absent" }
  /** The process exists. `startedMs` (ms since the epoch) is absent when it cannot be read. */
  | { kind: "present"; zombie: boolean; startedMs?: number }
  /** The table could not be read for this pid (hidden by hidepid, ps failed): nothing is known. */
  | { kind: "unknown"; detail: string };

export interface ProcessTable {
  readonly name: ProcessTableName;
  /** Looks a pid up. Never throws. */
  lookup(pid: number): Promise<ProcessLookup>;
}

export const PROCESS_TABLE_NAMES = ["proc", "ps"] as const;
export type ProcessTableName = (typeof PROCESS_TABLE_NAMES)[number];

/** The environment variable that selects the implementation. */
export const PROCESS_TABLE_ENV = "ARCBOX_PROCESS_TABLE";

/**
 * The process table to use: `ARCBOX_PROCESS_TABLE` when set, else `/proc` where it exists, else
 * `ps`. Throws a TypeError naming the variable for any other value.
 */
export function defaultProcessTable(env: NodeJS.ProcessEnv = process.env): ProcessTable {
  const chosen = env[PROCESS_TABLE_ENV];
  if (chosen !== undefined && chosen !== "") {
    if (!(PROCESS_TABLE_NAMES as readonly string[]).includes(chosen)) {
      throw new TypeError(`${PROCESS_TABLE_ENV}=${chosen}: expected ${PROCESS_TABLE_NAMES.join(" or ")}`);
    }
    return processTable(chosen as ProcessTableName);
  }
  return processTable(existsSync("/proc/self/stat") ? "proc" : "ps");
}

/** The implementation called `name`. */
export function processTable(name: ProcessTableName): ProcessTable {
  return name === "proc" ? procTable : psTable;
}

// ---- /proc ------------------------------------------------------------------------------------

const procTable: ProcessTable = {
  name: "proc",
  async lookup(pid) {
    let text: string;
    try {
      text = await readFile(`/proc/${pid}/stat`, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ESRCH") return { kind: "absent" };
      return { kind: "unknown", detail: `/proc/${pid}/stat: ${code ?? String(error)}` };
    }
    const stat = parseProcStat(text);
    if (stat === undefined) return { kind: "unknown", detail: `/proc/${pid}/stat has an unexpected format` };
    const bootSeconds = await readBootTimeSeconds();
    const zombie = stat.state === "Z";
    if (bootSeconds === undefined) return { kind: "present", zombie };
    return { kind: "present", zombie, startedMs: (bootSeconds + stat.startTicks / clockTicksPerSecond()) * 1000 };
  },
};

/**
 * Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may itself
 * contain spaces and parentheses, so fields are counted after the last `)`. Returns undefined when
 * the line does not have the expected shape.
 */
export function parseProcStat(text: string): { state: string; startTicks: number } | undefined {
  const end = text.lastIndexOf(")");
  if (end < 0) return undefined;
  const fields = text.slice(end + 1).trim().split(/\s+/);
  // fields[0] is field 3 (state); starttime is field 22.
  const state = fields[0];
  const startTicks = Number(fields[22 - 3]);
  if (state === undefined || !Number.isSafeInteger(startTicks) || startTicks < 0) return undefined;
  return { state, startTicks };
}

/** `btime` of /proc/stat. Read every time: it moves when the wall clock is stepped (NTP). */
async function readBootTimeSeconds(): Promise<number | undefined> {
  try {
    const match = /^btime\s+(\d+)\s*$/m.exec(await readFile("/proc/stat", "utf8"));
    return match?.[1] === undefined ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Linux's USER_HZ, which is 100 on every common configuration. */
const DEFAULT_CLOCK_TICKS = 100;
let clockTicks: number | undefined;

function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 }).trim());
      clockTicks = Number.isSafeInteger(value) && value > 0 ? value : DEFAULT_CLOCK_TICKS;
    } catch {
      clockTicks = DEFAULT_CLOCK_TICKS;
    }
  }
  return clockTicks;
}

// ---- ps ---------------------------------------------------------------------------------------

/** How long one `ps` may take before the lookup gives up (and says "unknown"). */
const PS_TIMEOUT_MS = 5_000;

/**
 * `ps` in the C locale with UTC times, so `lstart` reads the same everywhere:
 * `Thu Nov 26 06:11:45 2026` (one-second resolution, truncated).
 */
const PS_ENV = { PATH: "/bin:/usr/bin", LC_ALL: "C", TZ: "UTC0" };

const psTable: ProcessTable = {
  name: "ps",
  lookup(pid) {
    return new Promise((resolve) => {
      execFile("ps", ["-o", "stat=,lstart=", "-p", String(pid)], { env: PS_ENV, timeout: PS_TIMEOUT_MS, maxBuffer: 64 * 1024 }, (error, stdout) => {
        const line = stdout.trim();
        if (line === "") {
          // ps exits 1 with no output when the pid does not exist; anything else is a failure.
          const code = (error as { code?: unknown } | null)?.code;
          resolve(code === 1 ? { kind: "absent" } : { kind: "unknown", detail: `ps -p ${pid}: ${error?.message ?? "no output"}` });
          return;
        }
        const parsed = parsePsLine(line);
        resolve(parsed ?? { kind: "unknown", detail: `ps -p ${pid}: unexpected output ${JSON.stringify(line.slice(0, 80))}` });
      });
    });
  },
};

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Parses one `ps -o stat=,lstart=` line read with TZ=UTC0 (`Ss   Thu Nov 26 06:11:45 2026`).
 * Returns undefined when it does not have that shape.
 */
export function parsePsLine(line: string): ProcessLookup | undefined {
  const match = /^(\S+)\s+\w{3}\s+(\w{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})$/.exec(line.trim());
  if (!match) return undefined;
  const [, stat, month, day, hour, minute, second, year] = match as unknown as [string, string, string, string, string, string, string, string];
  const monthIndex = MONTHS.indexOf(month);
  if (monthIndex < 0) return undefined;
  const startedMs = Date.UTC(Number(year), monthIndex, Number(day), Number(hour), Number(minute), Number(second));
  return { kind: "present", zombie: stat.startsWith("Z"), startedMs };
}
