import { chmod, chown, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  DEFAULT_STDERR_TAIL_BYTES,
  discoverHooks,
  ExecutableHook,
  HOOK_PATH,
  HookError,
  HookRefusedError,
  HooksDirectoryError,
  runHooks,
  type HookContext,
  type HookResult,
  type NetworkHook,
} from "../../src/host/hooks.js";
import { toJsonWithBigInts, type Machine } from "../../src/store/machine.js";
import {
  isProcessGone,
  makeTempDir,
  readPidFileIfPresent,
  removeTempDir,
  waitFor,
} from "../helpers/processes.js";

let root: string;
let hooksDir: string;
let machineDir: string;
let outDir: string;
const strayPids: number[] = [];

const machine: Machine = {
  name: "dev",
  cpus: 4,
  memory_mb: 2n ** 60n + 1n,
  disk_gb: 9223372036854775807n,
  kernel: "/boot/vmlinuz",
  block_devices: [{ path: "/dev/vdb", read_only: true }],
  ip_address: "192.168.64.5",
  state: "running",
  vm_id: "0b1e5c3a-6a4e-4f3e-9d2b-1c2d3e4f5a6b",
  created_at: "2026-04-27T04:13:21.482913Z",
};

beforeEach(async () => {
  root = await makeTempDir("hooks");
  hooksDir = path.join(root, "network.d");
  machineDir = path.join(root, "machines", "dev");
  outDir = path.join(root, "out");
  await mkdir(hooksDir);
  await mkdir(machineDir, { recursive: true });
  await mkdir(outDir);
});

afterEach(async () => {
  for (const pid of strayPids.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  await removeTempDir(root);
});

function context(signal: AbortSignal = new AbortController().signal): HookContext {
  return { signal, machineDir, configPath: path.join(machineDir, "config.toml") };
}

/** Writes a /bin/sh hook script with exactly `mode` (chmod, so the umask does not interfere). */
async function writeHook(name: string, body: string, mode = 0o755, dir = hooksDir): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, mode);
  return file;
}

/** A shell line that writes `value` to `file` atomically, so a poller never sees it half-written. */
function publish(value: string, file: string): string {
  return `echo ${value} > '${file}.tmp' && mv '${file}.tmp' '${file}'`;
}

async function readLog(name = "log"): Promise<string[]> {
  try {
    return (await readFile(path.join(outDir, name), "utf8")).split("\n").filter((line) => line !== "");
  } catch {
    return [];
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

async function hookError(promise: Promise<unknown>): Promise<HookError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(HookError);
  return error as HookError;
}

function recordingObserver() {
  const calls: { hook: string; result: HookResult; seconds: number }[] = [];
  return { calls, observer: { hookFinished: (hook: string, result: HookResult, seconds: number) => void calls.push({ hook, result, seconds }) } };
}

describe("discoverHooks", () => {
  it("sorts by file name in byte order, and runHooks runs each once in that order", async () => {
    const names = ["a", "B", "ä", "2-b", "10-a"];
    for (const name of names) await writeHook(name, `echo ${name} >> '${outDir}/log'`);
    const { hooks, skipped } = await discoverHooks(hooksDir);
    expect(skipped).toEqual([]);
    expect(hooks.map((hook) => hook.name)).toEqual(["10-a", "2-b", "B", "a", "ä"]);
    expect(hooks[0]?.path).toBe(path.join(hooksDir, "10-a"));

    const { ran } = await runHooks(hooks, machine, context());
    expect(ran).toEqual(["10-a", "2-b", "B", "a", "ä"]);
    expect(await readLog()).toEqual(["10-a", "2-b", "B", "a", "ä"]);
  });

  it("skips leftovers, hidden, non-executable and non-regular entries with reasons, and never runs them", async () => {
    const run = (name: string) => `echo ${name} >> '${outDir}/log'`;
    const leftovers = [".hidden", "x~", "x.swp", "x.dpkg-old", "x.dpkg-dist", "x.dpkg-new", "x.dpkg-tmp", "x.rpmnew", "x.rpmsave", "x.rpmorig"];
    for (const name of leftovers) await writeHook(name, run(name));
    await writeHook("noexec", run("noexec"), 0o644);
    await mkdir(path.join(hooksDir, "subdir"));
    await symlink(path.join(root, "nowhere"), path.join(hooksDir, "dangling"));
    const elsewhere = path.join(root, "elsewhere");
    await mkdir(elsewhere);
    const target = await writeHook("target", run("link"), 0o755, elsewhere);
    await symlink(target, path.join(hooksDir, "link"));
    await writeHook("run-me", run("run-me"));

    const { hooks, skipped } = await discoverHooks(hooksDir);
    expect(hooks.map((hook) => hook.name)).toEqual(["link", "run-me"]);
    const reasons = Object.fromEntries(skipped.map(({ file, reason }) => [path.basename(file), reason]));
    expect(Object.keys(reasons).sort()).toEqual([...leftovers, "noexec", "subdir", "dangling"].sort());
    expect(reasons[".hidden"]).toMatch(/hidden/);
    expect(reasons["x~"]).toMatch(/leftover \(~\)/);
    expect(reasons["x.dpkg-old"]).toMatch(/\.dpkg-/);
    expect(reasons["x.rpmorig"]).toMatch(/\.rpmorig/);
    expect(reasons.noexec).toBe("not executable (mode 0644); fix with chmod +x");
    expect(reasons.subdir).toBe("directory");
    expect(reasons.dangling).toBe("broken symbolic link");
    for (const { file } of skipped) expect(path.dirname(file)).toBe(hooksDir);

    await runHooks(hooks, machine, context());
    expect(await readLog()).toEqual(["link", "run-me"]);
  });

  it("gives no hooks for an empty hooks directory", async () => {
    expect(await discoverHooks(hooksDir)).toEqual({ hooks: [], skipped: [] });
    expect(await runHooks([], machine, context())).toEqual({ ran: [] });
  });

  it("throws HooksDirectoryError for a hooks directory that is missing or not a directory: never 'no hooks'", async () => {
    const missing = path.join(root, "missing");
    const gone = await rejection(discoverHooks(missing));
    expect(gone).toBeInstanceOf(HooksDirectoryError);
    expect([(gone as HooksDirectoryError).code, (gone as HooksDirectoryError).message]).toEqual(["ENOENT", `hooks directory ${missing} does not exist`]);
    const file = path.join(root, "file");
    await writeFile(file, "");
    const error = await rejection(discoverHooks(file));
    expect(error).toBeInstanceOf(HooksDirectoryError);
    expect((error as HooksDirectoryError).message).toBe(`hooks directory ${file} is not a directory`);
  });

  it("passes options on to the hooks it builds", async () => {
    await writeHook("10-hang", "exec sleep 300");
    const { hooks } = await discoverHooks(hooksDir, { timeoutMs: 300, killGraceMs: 200 });
    const error = await hookError(runHooks(hooks, machine, context()));
    expect(error.timedOut).toBe(true);
    expect(error.message).toContain("timed out after 300ms");
  });
});

describe("ExecutableHook invocation", () => {
  it("runs the file with argv [hook, recover, name], no shell, in /", async () => {
    const file = await writeHook(
      "10-argv",
      `printf '%s\\n' "$0" "$@" > '${outDir}/argv'; readlink /proc/$$/cwd > '${outDir}/cwd'`,
    );
    await new ExecutableHook(file).recover(machine, context());
    expect(await readLog("argv")).toEqual([file, "recover", "dev"]);
    expect(await readLog("cwd")).toEqual(["/"]);
  });

  it("cannot be made to run a file of the machine directory: a shell linked as a hook finds no ./recover", async () => {
    const marker = path.join(outDir, "machine-file-ran");
    const planted = path.join(machineDir, "recover");
    await writeFile(planted, `#!/bin/sh\necho ran > '${marker}'\n`, { mode: 0o755 });
    const shell = path.join(hooksDir, "50-net");
    await symlink("/bin/sh", shell);
    const error = await hookError(new ExecutableHook(shell).recover(machine, context()));
    expect(error.exitCode).not.toBe(0); // sh: cannot open recover
    expect(error.stderrTail).toContain("recover");
    await expect(readFile(marker)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("refuses a symlinked hook whose target lies in a directory others can write", async () => {
    const open = path.join(root, "open");
    await mkdir(open);
    await chmod(open, 0o777);
    const target = path.join(open, "net");
    await writeFile(target, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const link = path.join(hooksDir, "50-net");
    await symlink(target, link);
    const error = await rejection(new ExecutableHook(link).recover(machine, context()));
    expect(error).toBeInstanceOf(HookRefusedError);
    expect((error as HookRefusedError).message).toContain(`it leads to ${target}, in ${open}, which is writable by group and others (mode 0777)`);
    await chmod(open, 0o1777); // sticky, as /tmp: nobody else can replace root's file there
    await expect(new ExecutableHook(link).recover(machine, context())).resolves.toBeUndefined();
  });

  it("replaces the environment by exactly the ARCBOX_* variables and PATH", async () => {
    process.env.ARCBOX_LEAK_CHECK = "must not reach the hook";
    try {
      const file = await writeHook("10-env", `cat /proc/$$/environ > '${outDir}/environ'`);
      await new ExecutableHook(file).recover(machine, context());
    } finally {
      delete process.env.ARCBOX_LEAK_CHECK;
    }
    const environ = await readFile(path.join(outDir, "environ"), "utf8");
    const received = Object.fromEntries(
      environ
        .split("\0")
        .filter((entry) => entry !== "")
        .map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]),
    );
    expect(received).toEqual({
      PATH: HOOK_PATH,
      ARCBOX_HOOK_ACTION: "recover",
      ARCBOX_MACHINE: "dev",
      ARCBOX_MACHINE_DIR: machineDir,
      ARCBOX_CONFIG: path.join(machineDir, "config.toml"),
      ARCBOX_VM_ID: machine.vm_id,
      ARCBOX_MACHINE_IP: "192.168.64.5",
    });
  });

  it("leaves ARCBOX_MACHINE_IP out when the machine has no ip_address", async () => {
    const { ip_address: _ip, ...withoutIp } = machine;
    const file = await writeHook("10-env", `cat /proc/$$/environ > '${outDir}/environ'`);
    await new ExecutableHook(file).recover(withoutIp, context());
    const names = (await readFile(path.join(outDir, "environ"), "utf8"))
      .split("\0")
      .filter((entry) => entry !== "")
      .map((entry) => entry.slice(0, entry.indexOf("=")));
    expect(names.sort()).toEqual(
      ["ARCBOX_CONFIG", "ARCBOX_HOOK_ACTION", "ARCBOX_MACHINE", "ARCBOX_MACHINE_DIR", "ARCBOX_VM_ID", "PATH"].sort(),
    );
  });

  it("writes the machine as JSON to stdin, bigints exact, then EOF", async () => {
    const file = await writeHook("10-stdin", `cat > '${outDir}/stdin.json'`);
    await new ExecutableHook(file).recover(machine, context());
    const text = await readFile(path.join(outDir, "stdin.json"), "utf8");
    expect(text).toBe(toJsonWithBigInts(machine));
    expect(text).toContain('"memory_mb":1152921504606846977');
    expect(text).toContain('"disk_gb":9223372036854775807');
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(Object.keys(machine).sort());
    expect(parsed.block_devices).toEqual([{ path: "/dev/vdb", read_only: true }]);
  });

  it("succeeds when the hook exits without reading a large stdin", async () => {
    const file = await writeHook("10-ignore-stdin", "exec 0<&-; exit 0");
    // Far more than a pipe buffer, so the write is still pending when the hook exits (EPIPE).
    const big = { ...machine, cmdline: "x".repeat(4 << 20) };
    await new ExecutableHook(file).recover(big, context());
  });
});

describe("ExecutableHook refusals", () => {
  it.each([
    [0o775, "writable by group (mode 0775)"],
    [0o757, "writable by others (mode 0757)"],
    [0o777, "writable by group and others (mode 0777)"],
  ])("refuses a hook with mode %o and does not run it or the hooks after it", async (mode, expected) => {
    const bad = await writeHook("10-bad", `echo bad >> '${outDir}/log'`, mode);
    await writeHook("20-next", `echo next >> '${outDir}/log'`);
    const { hooks } = await discoverHooks(hooksDir);
    const { calls, observer } = recordingObserver();
    const error = await rejection(runHooks(hooks, machine, context(), observer));
    expect(error).toBeInstanceOf(HookRefusedError);
    expect((error as HookRefusedError).hook).toBe(bad);
    expect((error as HookRefusedError).message).toBe(
      `refusing to run network hook ${bad}: ${expected}; fix with chmod go-w ${bad}`,
    );
    expect(await readLog()).toEqual([]);
    expect(calls.map(({ hook, result }) => [hook, result])).toEqual([["10-bad", "failure"]]);
  });

  it("refuses a hook owned by another user", async () => {
    if (process.getuid?.() !== 0) {
      // Only root can give a file away; unprivileged, check the other half: root-owned hooks run.
      await new ExecutableHook("/bin/true").recover(machine, context());
      return;
    }
    const file = await writeHook("10-foreign", `echo ran >> '${outDir}/log'`);
    await chown(file, 12345, 12345);
    const error = await rejection(new ExecutableHook(file).recover(machine, context()));
    expect(error).toBeInstanceOf(HookRefusedError);
    expect((error as HookRefusedError).reason).toBe(`owned by uid 12345, not by root; fix with chown root ${file}`);
    expect(await readLog()).toEqual([]);
  });

  it("checks the file again at run time, after discovery", async () => {
    const file = await writeHook("10-changed", `echo ran >> '${outDir}/log'`);
    const { hooks } = await discoverHooks(hooksDir);
    await chmod(file, 0o775);
    expect(await rejection(runHooks(hooks, machine, context()))).toBeInstanceOf(HookRefusedError);
    expect(await readLog()).toEqual([]);
  });

  it("applies the checks to the target of a symlinked hook", async () => {
    const elsewhere = path.join(root, "elsewhere");
    await mkdir(elsewhere);
    const target = await writeHook("target", `echo ran >> '${outDir}/log'`, 0o775, elsewhere);
    await symlink(target, path.join(hooksDir, "10-link"));
    const { hooks } = await discoverHooks(hooksDir);
    expect(hooks.map((hook) => hook.name)).toEqual(["10-link"]);
    const error = await rejection(runHooks(hooks, machine, context()));
    expect(error).toBeInstanceOf(HookRefusedError);
    expect((error as HookRefusedError).reason).toMatch(/^writable by group \(mode 0775\)/);
    expect(await readLog()).toEqual([]);
  });
});

describe("ExecutableHook failures", () => {
  it("reports exit code and stderr tail, and stops before later hooks", async () => {
    await writeHook("10-fail", "echo 'first line' >&2; echo 'bridge br0 not found' >&2; exit 3");
    await writeHook("20-later", `echo later >> '${outDir}/log'`);
    const { hooks } = await discoverHooks(hooksDir);
    const error = await hookError(runHooks(hooks, machine, context()));
    expect(error.hook).toBe("10-fail");
    expect(error.exitCode).toBe(3);
    expect(error.signal).toBeNull();
    expect(error.timedOut).toBe(false);
    expect(error.stderrTail).toBe("first line\nbridge br0 not found\n");
    expect(error.message).toBe(
      "network hook 10-fail failed for machine dev: exit code 3: first line | bridge br0 not found",
    );
    expect(await readLog()).toEqual([]);
  });

  it("reports a hook killed by a signal", async () => {
    const file = await writeHook("10-segv", "kill -SEGV $$");
    const error = await hookError(new ExecutableHook(file).recover(machine, context()));
    expect(error.signal).toBe("SIGSEGV");
    expect(error.exitCode).toBeNull();
    expect(error.message).toBe("network hook 10-segv failed for machine dev: killed by SIGSEGV");
  });

  it("kills a hook that runs past its timeout together with its children", async () => {
    const childFile = path.join(outDir, "child");
    const file = await writeHook("10-hang", `sleep 300 & ${publish("$!", childFile)}; sleep 300; wait`);
    const error = await hookError(new ExecutableHook(file, { timeoutMs: 1_000, killGraceMs: 200 }).recover(machine, context()));
    expect(error.timedOut).toBe(true);
    expect(error.signal).toBe("SIGTERM");
    expect(error.message).toBe("network hook 10-hang failed for machine dev: timed out after 1s (killed its process group)");
    const child = await readPidFileIfPresent(childFile);
    expect(child, "the hook wrote its child's pid before the timeout").toBeTypeOf("number");
    strayPids.push(child!);
    await waitFor(() => isProcessGone(child!), `the hook's child ${child} to be killed`);
  });

  it("sends SIGKILL after the grace period to a hook that ignores SIGTERM", async () => {
    const childFile = path.join(outDir, "child");
    const file = await writeHook("10-stubborn", `trap '' TERM; sleep 300 & ${publish("$!", childFile)}; wait`);
    const error = await hookError(new ExecutableHook(file, { timeoutMs: 1_000, killGraceMs: 300 }).recover(machine, context()));
    expect(error.timedOut).toBe(true);
    expect(error.signal).toBe("SIGKILL");
    const child = await readPidFileIfPresent(childFile);
    expect(child).toBeTypeOf("number");
    strayPids.push(child!);
    await waitFor(() => isProcessGone(child!), `the hook's child ${child} to be killed`);
  });

  it("kills the process group when the context is aborted", async () => {
    const readyFile = path.join(outDir, "ready");
    const file = await writeHook("10-abortable", `trap '' TERM; sleep 300 & ${publish("$!", readyFile)}; wait`);
    const controller = new AbortController();
    const running = new ExecutableHook(file, { killGraceMs: 200 }).recover(machine, context(controller.signal));
    const child = await waitFor(() => readPidFileIfPresent(readyFile), "the hook to start");
    strayPids.push(child);
    controller.abort();
    const error = await hookError(running);
    expect(error.aborted).toBe(true);
    expect(error.timedOut).toBe(false);
    expect(error.signal).toBe("SIGKILL");
    expect(error.message).toBe("network hook 10-abortable failed for machine dev: aborted (killed its process group)");
    await waitFor(() => isProcessGone(child), `the hook's child ${child} to be killed`);
  });

  it("does not start a hook when the context is already aborted", async () => {
    const file = await writeHook("10-never", `echo ran >> '${outDir}/log'`);
    const controller = new AbortController();
    controller.abort();
    const error = await hookError(new ExecutableHook(file).recover(machine, context(controller.signal)));
    expect(error.aborted).toBe(true);
    expect(error.message).toBe("network hook 10-never failed for machine dev: aborted before it started");
    expect(await readLog()).toEqual([]);
  });

  it("bounds the captured output of a hook writing 50 MB to stdout and stderr", async () => {
    // Whole lines ("stderr line\n" is 12 bytes) of at least 50 MiB.
    const fifty = 12 * Math.ceil((50 * 1024 * 1024) / 12);
    const file = await writeHook(
      "10-loud",
      `yes 'stdout line' | head -c ${fifty}; yes 'stderr line' | head -c ${fifty} >&2; echo 'last words' >&2; exit 1`,
    );
    const error = await hookError(new ExecutableHook(file).recover(machine, context()));
    expect(error.exitCode).toBe(1);
    expect(error.stderrTail.length).toBeLessThanOrEqual(DEFAULT_STDERR_TAIL_BYTES);
    expect(error.stderrTail.length).toBeGreaterThan(DEFAULT_STDERR_TAIL_BYTES - 20);
    expect(error.stderrTail.endsWith("stderr line\nlast words\n")).toBe(true);
    expect(error.message).toBe("network hook 10-loud failed for machine dev: exit code 1: stderr line | stderr line | last words");

    const small = await hookError(new ExecutableHook(file, { stderrTailBytes: 100 }).recover(machine, context()));
    expect(small.stderrTail.length).toBeLessThanOrEqual(100);
  });

  it("keeps a cut multi-byte character out of the stderr tail", async () => {
    // 'é' is two bytes; a 5-byte tail of "éé\n" would start inside the first one.
    const file = await writeHook("10-utf8", "printf 'xéé\\n' >&2; exit 1");
    const error = await hookError(new ExecutableHook(file, { stderrTailBytes: 4 }).recover(machine, context()));
    expect(error.stderrTail).toBe("é\n");
  });

  it("does not wait for a process the hook left behind holding its stderr", async () => {
    const daemonFile = path.join(outDir, "daemon");
    const file = await writeHook("10-daemon", `sleep 300 & ${publish("$!", daemonFile)}; exit 0`);
    await new ExecutableHook(file).recover(machine, context());
    const daemon = await readPidFileIfPresent(daemonFile);
    expect(daemon).toBeTypeOf("number");
    strayPids.push(daemon!);
    // A hook that exits by itself may leave a daemon running: it is not killed.
    expect(await isProcessGone(daemon!)).toBe(false);
  });

  it("reports a hook whose interpreter is missing", async () => {
    const file = path.join(hooksDir, "10-badshebang");
    await writeFile(file, "#!/nonexistent/interpreter\n");
    await chmod(file, 0o755);
    const error = await hookError(new ExecutableHook(file).recover(machine, context()));
    expect(error.message).toMatch(/^network hook 10-badshebang failed for machine dev: could not be started: .*ENOENT.*#! line/);
  });

  it("reports a hook removed after discovery", async () => {
    const file = await writeHook("10-removed", "exit 0");
    const { hooks } = await discoverHooks(hooksDir);
    await rm(file);
    const error = await hookError(runHooks(hooks, machine, context()));
    expect(error.message).toMatch(/^network hook 10-removed failed for machine dev: could not be started: ENOENT/);
  });

  it("rejects invalid options", () => {
    expect(() => new ExecutableHook("/x", { timeoutMs: 0 })).toThrow(RangeError);
    expect(() => new ExecutableHook("/x", { killGraceMs: 1.5 })).toThrow(/killGraceMs/);
    expect(() => new ExecutableHook("/x", { stderrTailBytes: -1 })).toThrow(/stderrTailBytes/);
  });
});

describe("runHooks", () => {
  it("runs in-process hooks in order with the machine, context and an AbortSignal", async () => {
    const seen: { name: string; machine: string; signal: unknown; machineDir: string }[] = [];
    const inProcess = (name: string): NetworkHook => ({
      name,
      async recover(m, ctx) {
        seen.push({ name, machine: m.name, signal: ctx.signal, machineDir: ctx.machineDir });
      },
    });
    const { ran } = await runHooks([inProcess("one"), inProcess("two")], machine, context());
    expect(ran).toEqual(["one", "two"]);
    expect(seen.map(({ name }) => name)).toEqual(["one", "two"]);
    for (const entry of seen) {
      expect(entry.signal).toBeInstanceOf(AbortSignal);
      expect(entry.machine).toBe("dev");
      expect(entry.machineDir).toBe(machineDir);
    }
  });

  it("wraps a plain error of an in-process hook in a HookError", async () => {
    const cause = new Error("no route to switch");
    const failing: NetworkHook = { name: "lib", recover: async () => Promise.reject(cause) };
    const error = await hookError(runHooks([failing], machine, context()));
    expect(error.message).toBe("network hook lib failed for machine dev: no route to switch");
    expect(error.cause).toBe(cause);
    expect(error.hook).toBe("lib");
  });

  it("lets an in-process hook observe the abort", async () => {
    const controller = new AbortController();
    const waiting: NetworkHook = {
      name: "waits",
      recover: (_m, { signal }) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener("abort", () => reject(new HookError({ hook: "waits", machine: "dev", aborted: true })));
        }),
    };
    const running = runHooks([waiting], machine, context(controller.signal));
    controller.abort();
    expect((await hookError(running)).aborted).toBe(true);
  });

  it("tells the observer about success, failure and timeout with durations", async () => {
    await writeHook("10-ok", "exit 0");
    await writeHook("20-fail", "exit 4");
    const { calls, observer } = recordingObserver();
    const { hooks } = await discoverHooks(hooksDir);
    await rejection(runHooks(hooks, machine, context(), observer));

    const hang = await writeHook("30-hang", "exec sleep 300", 0o755, outDir);
    await rejection(runHooks([new ExecutableHook(hang, { timeoutMs: 200, killGraceMs: 100 })], machine, context(), observer));

    expect(calls.map(({ hook, result }) => [hook, result])).toEqual([
      ["10-ok", "success"],
      ["20-fail", "failure"],
      ["30-hang", "timeout"],
    ]);
    for (const { seconds } of calls) {
      expect(Number.isFinite(seconds)).toBe(true);
      expect(seconds).toBeGreaterThan(0);
    }
    // The timed-out hook ran at least its timeout.
    expect(calls[2]?.seconds).toBeGreaterThanOrEqual(0.2);
  });
});
