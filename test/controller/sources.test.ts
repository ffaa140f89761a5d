import { appendFile, mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { listMachineNames, startResync, watchMachines, type MachinesWatch } from "../../src/controller/sources.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let dir: string;
let watcher: MachinesWatch | undefined;
beforeEach(async () => (dir = await makeTempDir("sources")));
afterEach(async () => {
  await watcher?.close();
  watcher = undefined;
  vi.useRealTimers();
  await removeTempDir(dir);
});

describe("listMachineNames", () => {
  it("lists what arcbox-core's list() loads, sorted: directories holding config.toml, hidden ones too", async () => {
    for (const name of ["b", "a", "..x", ".hidden", "c.d", "empty"]) await mkdir(path.join(dir, name));
    for (const name of ["b", "a", "..x", ".hidden", "c.d"]) await writeFile(path.join(dir, name, "config.toml"), "");
    await writeFile(path.join(dir, ".arcbox-controller.lock"), "");
    await writeFile(path.join(dir, "stray"), "");
    expect(await listMachineNames(dir)).toEqual(["..x", ".hidden", "a", "b", "c.d"]);
  });

  it("gives no machines for a missing directory", async () => {
    expect(await listMachineNames(path.join(dir, "missing"))).toEqual([]);
  });

  it("leaves out the names it is told the caller has, and still judges the others", async () => {
    for (const name of ["known", "new", "empty"]) await mkdir(path.join(dir, name));
    for (const name of ["known", "new"]) await writeFile(path.join(dir, name, "config.toml"), "");
    expect(await listMachineNames(dir, { except: new Set(["known", "gone"]) })).toEqual(["new"]);
  });
});

describe("startResync", () => {
  it("runs every interval ±10% until stopped", async () => {
    vi.useFakeTimers();
    const runs: number[] = [];
    const resync = startResync(1000, async () => void runs.push(Date.now()));
    const start = Date.now();
    await vi.advanceTimersByTimeAsync(899);
    expect(runs).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(10 * 1100);
    expect(runs.length).toBeGreaterThanOrEqual(10);
    const gaps = runs.map((t, i) => t - (i === 0 ? start : runs[i - 1]!));
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(900);
      expect(gap).toBeLessThanOrEqual(1100);
    }
    expect(new Set(gaps).size).toBeGreaterThan(1); // jittered, not a fixed period
    resync.stop();
    const count = runs.length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(runs).toHaveLength(count);
  });
});

describe("watchMachines", () => {
  async function watchInto(events: Array<[string, string | null]>, machinesDir = dir, checkIntervalMs = 60_000, startPaused = false) {
    watcher = await watchMachines({
      startPaused,
      machinesDir,
      pidFile: "vm.pid",
      onMachine: (name, event) => events.push([name, event]),
      onError: (error) => {
        throw error;
      },
      onRewatch: (why) => {
        events.push(["*", why === "resumed" ? "resumed" : "rewatch"]);
      },
      checkIntervalMs,
    });
  }

  it("looks at a new machine directory again once its watch is armed (a file renamed in before that is never reported)", async () => {
    const events: Array<[string, string | null]> = [];
    await watchInto(events);
    await mkdir(path.join(dir, "fresh"));
    await waitFor(() => events.some(([name, event]) => name === "fresh" && event === "addDir"), "addDir");
    const after = events.length;
    // Nothing else happens in the directory, yet it is named again, twice.
    await waitFor(() => events.slice(after).filter(([name, event]) => name === "fresh" && event === null).length >= 2, "the re-checks");
  });

  it("follows a machines directory that is moved away and replaced, at once", async () => {
    const machines = path.join(dir, "machines");
    await mkdir(machines);
    const events: Array<[string, string | null]> = [];
    // A check interval far beyond the test: only the event of the move can trigger the re-watch.
    await watchInto(events, machines);
    await rename(machines, path.join(dir, "machines.old"));
    await mkdir(machines);
    await waitFor(() => events.some(([, event]) => event === "rewatch"), "the re-watch");
    expect(watcher!.problem).toBeNull();
    await mkdir(path.join(machines, "fresh"));
    await writeFile(path.join(machines, "fresh", "config.toml"), "x");
    await waitFor(() => events.some(([name, event]) => name === "fresh" && event === "add"), "the new directory's events");
  });

  it("leaves no file watch open once closed after replacements, which would keep a stopped process alive", async () => {
    const watches = () => process.getActiveResourcesInfo().filter((resource) => resource === "FSEventWrap").length;
    const before = watches();
    const machines = path.join(dir, "machines");
    // Each replaced directory holds machines whose watches chokidar is still tearing down when closed.
    const fill = async () => {
      for (let i = 0; i < 25; i++) {
        await mkdir(path.join(machines, `m${i}`), { recursive: true });
        await writeFile(path.join(machines, `m${i}`, "config.toml"), "x");
      }
    };
    await fill();
    const events: Array<[string, string | null]> = [];
    await watchInto(events, machines);
    for (let round = 1; round <= 5; round++) {
      await rename(machines, path.join(dir, `machines.${round}`));
      await mkdir(machines);
      await waitFor(() => events.filter(([, event]) => event === "rewatch").length === round, `re-watch ${round}`);
      await fill();
    }
    await watcher!.close();
    watcher = undefined;
    // What chokidar still had in flight when it was closed settles within a few file system calls.
    await delay(200);
    expect(watches()).toBe(before);
  });

  it("says the directory is gone while it is, and watches it again when it is back (periodic check)", async () => {
    const machines = path.join(dir, "machines");
    await mkdir(machines);
    const events: Array<[string, string | null]> = [];
    await watchInto(events, machines, 50);
    await rm(machines, { recursive: true });
    await waitFor(() => watcher!.problem, "the problem to be reported");
    expect(watcher!.problem).toMatch(/machines directory .* is gone/);
    await mkdir(machines);
    await waitFor(() => events.some(([, event]) => event === "rewatch"), "the re-watch");
    expect(watcher!.problem).toBeNull();
    await mkdir(path.join(machines, "back"));
    await waitFor(() => events.some(([name]) => name === "back"), "events from the new directory");
  });

  it("reports nothing while paused, and after resume says so and reports again", async () => {
    await mkdir(path.join(dir, "vm"));
    await writeFile(path.join(dir, "vm", "config.toml"), "a");
    const events: Array<[string, string | null]> = [];
    await watchInto(events);
    await watcher!.pause();
    expect(watcher!.paused).toBe(true);
    await watcher!.pause(); // a second pause changes nothing
    await writeFile(path.join(dir, "vm", "config.toml"), "b");
    await mkdir(path.join(dir, "during"));
    // inotify delivers within milliseconds; a closed watch delivers nothing at all.
    await delay(300);
    expect(events).toEqual([]);
    expect(watcher!.problem).toBeNull();

    await watcher!.resume();
    expect(watcher!.paused).toBe(false);
    expect(events).toEqual([["*", "resumed"]]);
    await watcher!.resume(); // not paused: nothing happens
    expect(events).toEqual([["*", "resumed"]]);
    await writeFile(path.join(dir, "during", "config.toml"), "x");
    await waitFor(() => events.some(([name, event]) => name === "during" && event === "add"), "an event from the resumed watch");
  });

  it("started paused, watches nothing until resumed", async () => {
    await mkdir(path.join(dir, "vm"));
    const events: Array<[string, string | null]> = [];
    await watchInto(events, dir, 60_000, true);
    expect(watcher!.paused).toBe(true);
    await writeFile(path.join(dir, "vm", "config.toml"), "a");
    await mkdir(path.join(dir, "during"));
    await delay(300);
    expect(events).toEqual([]);

    await watcher!.resume();
    expect(events).toEqual([["*", "resumed"]]);
    await writeFile(path.join(dir, "vm", "config.toml"), "b");
    await waitFor(() => events.some(([name, event]) => name === "vm" && event === "change"), "an event once resumed");
  });

  it("resumes onto the directory at the path now, even one that replaced the paused one", async () => {
    const machines = path.join(dir, "machines");
    await mkdir(machines);
    const events: Array<[string, string | null]> = [];
    await watchInto(events, machines);
    await watcher!.pause();
    await rename(machines, path.join(dir, "machines.old"));
    await watcher!.resume();
    expect(watcher!.problem).toMatch(/machines directory .* is gone/);
    await mkdir(machines);
    await waitFor(() => events.some(([, event]) => event === "rewatch"), "the watch of the new directory");
    expect(watcher!.problem).toBeNull();
  });

  it("names the machine for config.toml, the pid file and machine directories", async () => {
    await mkdir(path.join(dir, "old"));
    await writeFile(path.join(dir, "old", "config.toml"), "a");
    const events: Array<[string, string | null]> = [];
    await watchInto(events);

    await mkdir(path.join(dir, "new"));
    await waitFor(() => events.some(([name, event]) => name === "new" && event === "addDir"), "addDir");
    await writeFile(path.join(dir, "new", "config.toml"), "x");
    await waitFor(() => events.some(([name, event]) => name === "new" && event === "add"), "config add");
    await writeFile(path.join(dir, "old", "config.toml"), "b");
    await waitFor(() => events.some(([name, event]) => name === "old" && event === "change"), "config change");
    await writeFile(path.join(dir, "old", "vm.pid"), "1");
    await waitFor(() => events.some(([name, event]) => name === "old" && event === "add"), "pid file add");
    await rm(path.join(dir, "new"), { recursive: true });
    await waitFor(() => events.some(([name, event]) => name === "new" && event === "unlinkDir"), "unlinkDir");
  });

  it("ignores other files of a machine directory (a VM writing its disk image) and hidden entries", async () => {
    await mkdir(path.join(dir, "vm"));
    await writeFile(path.join(dir, "vm", "disk.img"), "");
    const events: Array<[string, string | null]> = [];
    await watchInto(events);
    for (let i = 0; i < 20; i++) await appendFile(path.join(dir, "vm", "disk.img"), "block");
    await writeFile(path.join(dir, ".arcbox-controller.lock"), "{}");
    await writeFile(path.join(dir, "vm", ".config.toml.arcbox-tmp-1-0123456789ab"), "tmp");
    // A relevant write after the irrelevant ones: once it is seen, the others would have been too.
    await writeFile(path.join(dir, "vm", "config.toml"), "x");
    await waitFor(() => events.length > 0, "the config event");
    await delay(100);
    expect(events.every(([name]) => name === "vm")).toBe(true);
    // The config write itself yields a few (chokidar's add, raw events); each disk write would add more.
    expect(events.length).toBeLessThanOrEqual(6);
  });
});
