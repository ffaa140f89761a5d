/**
 * Reconcile(name) on its own, with in-process hooks (the library interface) and real files.
 */
import { readFile, writeFile, rm, utimes } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fixedHooks, type NetworkHook } from "../../src/host/hooks.js";
import { Reconciler, ReconcileError, type MachineView } from "../../src/controller/reconciler.js";
import { MachineStore } from "../../src/store/index.js";
import type { Machine } from "../../src/store/machine.js";
import { makeTempDir, removeTempDir, startProcess, stopProcess } from "../helpers/processes.js";
import { startStandInDaemon } from "../helpers/daemon.js";
import { machineToml, memoryLogger, writeMachine } from "../helpers/machines.js";
import type { ChildProcess } from "node:child_process";

let dir: string;
let children: ChildProcess[];
beforeEach(async () => {
  dir = await makeTempDir("reconciler");
  children = [];
});
afterEach(async () => {
  for (const child of children) await stopProcess(child);
  await removeTempDir(dir);
});

function reconciler(hooks: NetworkHook[], views: MachineView[] = [], signal?: AbortSignal) {
  return new Reconciler({
    store: new MachineStore({ dir }),
    hooks: fixedHooks(hooks),
    liveness: { mode: "pidfile", pidFile: "vm.pid" },
    startupGraceMs: 0,
    signal,
    observer: { observed: (view) => views.push(view) },
  });
}

const hook = (name: string, recover: NetworkHook["recover"]): NetworkHook => ({ name, recover });
const stateOf = async (name: string) => /state = "(\w+)"/.exec(await readFile(path.join(dir, name, "config.toml"), "utf8"))?.[1];

describe("Reconciler", () => {
  it("passes the machine, its paths and a signal to in-process hooks, then persists stopped", async () => {
    await writeMachine(dir, "vm1", machineToml("vm1"));
    const seen: Array<{ machine: Machine; machineDir: string; configPath: string; aborted: boolean }> = [];
    const r = reconciler([hook("net", async (machine, context) => void seen.push({ machine, ...context, aborted: context.signal.aborted }))]);
    const outcome = await r.reconcile("vm1", memoryLogger().logger);
    expect(outcome).toMatchObject({ kind: "recovered", hooks: ["net"] });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ machineDir: path.join(dir, "vm1"), configPath: path.join(dir, "vm1", "config.toml"), aborted: false });
    expect(seen[0]!.machine).toMatchObject({ name: "vm1", state: "running", memory_mb: 4096n, ip_address: "10.0.2.15" });
    expect(await stateOf("vm1")).toBe("stopped");
  });

  it("leaves the machine running when its VM came up while the hooks ran", async () => {
    await writeMachine(dir, "vm2", machineToml("vm2"));
    const r = reconciler([
      hook("starts-vm", async (_machine, { machineDir }) => {
        const vm = await startProcess("sleep", ["300"]);
        children.push(vm);
        await writeFile(path.join(machineDir, "vm.pid"), `${vm.pid}\n`);
      }),
    ]);
    const outcome = await r.reconcile("vm2", memoryLogger().logger);
    expect(outcome.kind).toBe("healthy");
    expect(await stateOf("vm2")).toBe("running");
  });

  it("defers a recovery of the very content whose recovery failed, and runs one for changed content", async () => {
    const file = await writeMachine(dir, "vm4", machineToml("vm4"));
    let runs = 0;
    const r = reconciler([hook("net", async () => void runs++)]);
    const failedOn = (await new MachineStore({ dir }).load("vm4")).revision;
    expect((await r.reconcile("vm4", memoryLogger().logger, { deferRecoveryOf: failedOn })).kind).toBe("deferred");
    expect(runs).toBe(0);
    expect(await stateOf("vm4")).toBe("running");
    await writeFile(file, machineToml("vm4", { cpus: 3 }));
    expect((await r.reconcile("vm4", memoryLogger().logger, { deferRecoveryOf: failedOn })).kind).toBe("recovered");
    expect(runs).toBe(1);
  });

  it("writes nothing when the arcbox daemon came up while the hooks ran", async () => {
    const original = await writeMachine(dir, "vm3", machineToml("vm3"));
    const before = await readFile(original, "utf8");
    const lock = path.join(dir, "..", `${path.basename(dir)}-run`, "daemon.lock");
    const r = new Reconciler({
      store: new MachineStore({ dir }),
      hooks: fixedHooks([
        hook("daemon-starts", async () => {
          children.push((await startStandInDaemon(lock)).child);
        }),
      ]),
      liveness: { mode: "daemon", daemonLock: lock },
      startupGraceMs: 0,
    });
    const outcome = await r.reconcile("vm3", memoryLogger().logger);
    expect(outcome.kind).toBe("healthy");
    expect(await readFile(original, "utf8")).toBe(before);
    await rm(path.dirname(lock), { recursive: true, force: true });
  });

  it("gives up with a ReconcileError when the file keeps changing under it, without writing", async () => {
    const file = await writeMachine(dir, "busy", machineToml("busy", { cpus: 1 }));
    let runs = 0;
    const r = reconciler([
      hook("editor", async () => {
        runs++;
        await writeFile(file, machineToml("busy", { cpus: 1 + runs }));
      }),
    ]);
    const error = await r.reconcile("busy", memoryLogger().logger).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReconcileError);
    expect((error as Error).message).toMatch(/kept changing/);
    expect(runs).toBe(4);
    expect(await readFile(file, "utf8")).toBe(machineToml("busy", { cpus: 5 }));
  });

  it("fails and keeps the file running when a hook fails; later hooks do not run", async () => {
    await writeMachine(dir, "vm3", machineToml("vm3"));
    const ran: string[] = [];
    const r = reconciler([
      hook("a", async () => {
        ran.push("a");
        throw new Error("bridge missing");
      }),
      hook("b", async () => void ran.push("b")),
    ]);
    await expect(r.reconcile("vm3", memoryLogger().logger)).rejects.toThrow(/vm3: recovery failed: .*bridge missing/);
    expect(ran).toEqual(["a"]);
    expect(await stateOf("vm3")).toBe("running");
  });

  it("stops a recovery at shutdown: the hook sees the abort and the file stays running", async () => {
    await writeMachine(dir, "vm4", machineToml("vm4"));
    const shutdown = new AbortController();
    const r = reconciler(
      [
        hook("slow", (_machine, { signal }) => {
          shutdown.abort();
          return new Promise((_resolve, reject) => {
            if (signal.aborted) reject(new Error("aborted"));
            signal.addEventListener("abort", () => reject(new Error("aborted")));
          });
        }),
      ],
      [],
      shutdown.signal,
    );
    await expect(r.reconcile("vm4", memoryLogger().logger)).rejects.toBeInstanceOf(ReconcileError);
    expect(await stateOf("vm4")).toBe("running");
  });

  it("logs an invalid file once per distinct problem and reports it valid again", async () => {
    const file = await writeMachine(dir, "odd", 'name = "odd"\ncpus = "four"\n');
    const views: MachineView[] = [];
    const r = reconciler([], views);
    const { logger, lines } = memoryLogger();
    for (let i = 0; i < 3; i++) expect((await r.reconcile("odd", logger)).kind).toBe("invalid");
    expect(lines().filter((line) => line.level === "warn")).toHaveLength(1);
    await writeFile(file, 'name = "odd"\ncpus = -1\n');
    await r.reconcile("odd", logger);
    expect(lines().filter((line) => line.level === "warn")).toHaveLength(2);
    await writeFile(file, machineToml("odd", { state: "stopped" }));
    expect((await r.reconcile("odd", logger)).kind).toBe("healthy");
    expect(lines().some((line) => line.msg === "machine config is valid again")).toBe(true);
    expect(views.map((view) => view.kind)).toEqual(["invalid", "invalid", "invalid", "invalid", "machine"]);
  });

  it("waits at most one grace period at a time, even for a config whose mtime is in the future", async () => {
    const file = await writeMachine(dir, "skewed", machineToml("skewed"));
    const future = new Date(Date.now() + 3_600_000);
    await utimes(file, future, future);
    const r = new Reconciler({ store: new MachineStore({ dir }), hooks: fixedHooks([]), liveness: { mode: "pidfile", pidFile: "vm.pid" }, startupGraceMs: 5000 });
    const outcome = await r.reconcile("skewed", memoryLogger().logger);
    expect(outcome.kind).toBe("pending");
    expect(outcome.kind === "pending" && outcome.requeueAfterMs).toBe(5000);
    expect(await stateOf("skewed")).toBe("running");
  });

  it("reports a deleted machine as gone", async () => {
    await writeMachine(dir, "gone", machineToml("gone", { state: "stopped" }));
    const views: MachineView[] = [];
    const r = reconciler([], views);
    await r.reconcile("gone", memoryLogger().logger);
    await rm(path.join(dir, "gone"), { recursive: true });
    expect((await r.reconcile("gone", memoryLogger().logger)).kind).toBe("gone");
    expect(views.at(-1)).toEqual({ kind: "gone", name: "gone" });
  });
});
