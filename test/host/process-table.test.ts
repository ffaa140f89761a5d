/**
 * Both process tables (/proc, and ps as on macOS) against real processes: they must agree.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { defaultProcessTable, parseProcStat, parsePsLine, PROCESS_TABLE_NAMES, processTable } from "../../src/host/process-table.js";
import { makeTempDir, processState, readPidFileIfPresent, removeTempDir, runToCompletion, startProcess, stopProcess, waitFor } from "../helpers/processes.js";

const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) await stopProcess(child);
});

describe.each(PROCESS_TABLE_NAMES)("the %s process table", (name) => {
  const table = processTable(name);

  it("gives a running process's start time to within the table's resolution", async () => {
    const before = Date.now();
    const child = await startProcess("sleep", ["30"]);
    children.push(child);
    const after = Date.now();
    const found = await table.lookup(child.pid);
    expect(found).toMatchObject({ kind: "present", zombie: false });
    const started = (found as { startedMs: number }).startedMs;
    // /proc: the boot time is whole seconds; ps: lstart is truncated to the second.
    expect(started).toBeGreaterThanOrEqual(before - 2_000);
    expect(started).toBeLessThanOrEqual(after + 50);
  });

  it("says absent for a pid that no longer runs", async () => {
    const pid = await runToCompletion("true", []);
    expect(await table.lookup(pid)).toEqual({ kind: "absent" });
  });

  it("recognises a zombie", async () => {
    const dir = await makeTempDir("zombie");
    try {
      const marker = path.join(dir, "pid");
      const parent = await startProcess("sh", ["-c", `sleep 0.1 & echo $! > '${marker}.tmp' && mv '${marker}.tmp' '${marker}'; exec sleep 30`]);
      children.push(parent);
      const zombie = await waitFor(() => readPidFileIfPresent(marker), "the zombie's pid");
      await waitFor(async () => (await processState(zombie)) === "Z", "the child to become a zombie");
      expect(await table.lookup(zombie)).toMatchObject({ kind: "present", zombie: true });
    } finally {
      await removeTempDir(dir);
    }
  });
});

describe("process tables agree", () => {
  it("on this process and on pid 1", async () => {
    for (const pid of [process.pid, 1]) {
      const [proc, ps] = await Promise.all(PROCESS_TABLE_NAMES.map((name) => processTable(name).lookup(pid)));
      expect(proc).toMatchObject({ kind: "present", zombie: false });
      expect(ps).toMatchObject({ kind: "present", zombie: false });
      const a = (proc as { startedMs: number }).startedMs;
      const b = (ps as { startedMs: number }).startedMs;
      expect(Math.abs(a - b)).toBeLessThanOrEqual(2_000);
    }
  });
});

describe("defaultProcessTable", () => {
  it("follows ARCBOX_PROCESS_TABLE, and rejects anything else by name", () => {
    expect(defaultProcessTable({ ARCBOX_PROCESS_TABLE: "ps" }).name).toBe("ps");
    expect(defaultProcessTable({ ARCBOX_PROCESS_TABLE: "proc" }).name).toBe("proc");
    expect(defaultProcessTable({}).name).toBe(existsSync("/proc/self/stat") ? "proc" : "ps");
    expect(() => defaultProcessTable({ ARCBOX_PROCESS_TABLE: "sysctl" })).toThrow(/ARCBOX_PROCESS_TABLE=sysctl/);
  });
});

describe("parsers", () => {
  it("parseProcStat counts fields after the last parenthesis, so odd command names parse", () => {
    const rest = Array.from({ length: 50 }, (_, i) => String(i + 4)).join(" ");
    expect(parseProcStat(`123 (a) b) (c d) S ${rest}\n`)).toEqual({ state: "S", startTicks: 22 });
    expect(parseProcStat("garbage")).toBeUndefined();
    expect(parseProcStat("1 (x) R 2 3")).toBeUndefined();
  });

  it("parsePsLine reads macOS and procps lines in UTC", () => {
    expect(parsePsLine("Ss   Thu Nov 26 06:11:45 2026")).toEqual({ kind: "present", zombie: false, startedMs: Date.UTC(2026, 10, 26, 6, 11, 45) });
    expect(parsePsLine("Z+   Mon Mar  2 23:05:09 2026")).toEqual({ kind: "present", zombie: true, startedMs: Date.UTC(2026, 2, 2, 23, 5, 9) });
    expect(parsePsLine("S Thu Foo 26 06:11:45 2026")).toBeUndefined();
    expect(parsePsLine("ps: unexpected")).toBeUndefined();
  });
});
