/**
 * Log formats of the built CLI: readable lines (pino-pretty) on a real pseudo-terminal made by
 * `script`, JSON lines when piped, either one on request, and the same content in both.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { cp, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify, stripVTControlCharacters } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI } from "../helpers/cli-process.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { findTool } from "../helpers/prometheus.js";

const execFileAsync = promisify(execFile);

let root: string;
let machines: string;
let hooks: string;

beforeEach(async () => {
  root = await makeTempDir("log-format");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  await writeHook(hooks, "10-net", 'cat > /dev/null; [ "$ARCBOX_MACHINE" != broken ] || { echo "no bridge br0" >&2; exit 3; }');
  await writeMachine(machines, "web", machineToml("web", { state: "running" }));
  await writeMachine(machines, "broken", machineToml("broken", { state: "running" }));
});
afterEach(() => removeTempDir(root));

/** `script`, which gives a command a real pseudo-terminal; a missing one fails the test that needs it. */
function scriptTool(): string {
  const tool = findTool("script");
  if (tool === undefined) throw new Error("script (util-linux) is not on PATH; it provides the pseudo-terminal for this test");
  return tool;
}

/** Quotes a word for the shell line that `script -c` runs. */
const quote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/** The shell line that runs Node with `args`. */
const shellLine = (args: string[]): string => [process.execPath, ...args].map(quote).join(" ");

const ENV = { PATH: process.env.PATH, TERM: "xterm-256color" };

/**
 * Runs `shellLine` on a pseudo-terminal and resolves with what the terminal showed (colours removed,
 * CR LF turned into LF) and the exit code.
 */
async function onTerminal(shellLine: string): Promise<{ code: number | null; screen: string }> {
  const child = spawn(scriptTool(), ["-qfec", shellLine, "/dev/null"], { env: ENV, stdio: ["ignore", "pipe", "pipe"] });
  let screen = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (screen += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, screen: normalise(screen) };
}

function normalise(text: string): string {
  return stripVTControlCharacters(text).replace(/\r\n/g, "\n");
}

/** The JSON log lines of a text, failing on any line that is not a JSON object. */
function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A pretty log's events: the header line's level and message, and the `key: value` lines below it. */
function prettyEvents(text: string): { level: string; msg: string; fields: Map<string, string> }[] {
  const events: { level: string; msg: string; fields: Map<string, string> }[] = [];
  for (const line of text.split("\n")) {
    const header = /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) \(\d+\): (.*)$/.exec(line);
    if (header) {
      events.push({ level: header[1]!.toLowerCase(), msg: header[2]!, fields: new Map() });
      continue;
    }
    const field = /^ {4}([a-z_]+): (.*)$/.exec(line);
    if (field && events.length > 0) events.at(-1)!.fields.set(field[1]!, field[2]!);
  }
  return events;
}

const reconcileArgs = (dir: string): string[] => [CLI, "reconcile", "-d", dir, "--hooks-dir", hooks, "--liveness", "none"];

describe("log format", () => {
  it("reconcile logs readable lines when its stderr is a terminal, and JSON lines when piped, with the same content", async () => {
    // Two identical trees: one reconciled on a terminal, one piped.
    const piped = path.join(root, "piped");
    await cp(machines, piped, { recursive: true });
    const summary = path.join(root, "summary.txt");
    const terminal = await onTerminal(`${shellLine(reconcileArgs(machines))} > ${quote(summary)}`);
    expect(terminal.code).toBe(1);
    // stdout carries only the summary, whatever the terminal.
    expect(await readFile(summary, "utf8")).toMatch(/^reconciled 2 machines in \d+ms: 1 recovered, 1 error, 0 invalid, 0 pending\n$/);
    expect(terminal.screen).not.toContain('{"level"');
    const pretty = prettyEvents(terminal.screen);

    let json: Record<string, unknown>[] = [];
    try {
      await execFileAsync(process.execPath, reconcileArgs(piped), { env: ENV });
    } catch (error) {
      const e = error as { code: number; stderr: string };
      expect(e.code).toBe(1);
      json = jsonLines(e.stderr);
    }
    expect(json.length).toBeGreaterThan(0);

    // The same events with the same fields (the two machines are reconciled concurrently, so order
    // between them may differ).
    const ignored = new Set(["level", "time", "pid", "msg"]);
    const fromJson = json.map((line) => `${String(line.level)} ${String(line.msg)}: ${Object.keys(line).filter((key) => !ignored.has(key)).sort().join(",")}`);
    const fromPretty = pretty.map((event) => `${event.level} ${event.msg}: ${[...event.fields.keys()].sort().join(",")}`);
    expect(fromPretty.sort()).toEqual(fromJson.sort());

    const recovered = pretty.find((event) => event.msg === "machine recovered")!;
    expect(recovered.fields.get("machine")).toBe('"web"');
    expect(recovered.fields.get("reason")).toBe('"liveness = none: no VM counts as alive"');
    expect(recovered.fields.get("duration_ms")).toMatch(/^\d+$/);
    expect(terminal.screen).toMatch(/hooks: \[\n\s+"10-net"\n\s+\]/);
    const failed = pretty.find((event) => event.level === "error")!;
    expect(failed.fields.get("machine")).toBe('"broken"');
    expect(failed.fields.get("hook")).toBe('"10-net"');
    expect(failed.fields.get("exit_code")).toBe("3");
    expect(failed.fields.get("stderr")).toContain("no bridge br0");
  });

  it("--log-format json keeps JSON lines on a terminal; --log-format pretty gives readable lines when piped", async () => {
    const terminal = await onTerminal(`${shellLine([...reconcileArgs(machines), "--log-format", "json"])} > /dev/null`);
    expect(terminal.code).toBe(1);
    expect(jsonLines(terminal.screen).some((line) => line.msg === "machine recovered" && line.machine === "web")).toBe(true);

    await writeMachine(machines, "web", machineToml("web", { state: "running" }));
    const result = await execFileAsync(process.execPath, [...reconcileArgs(machines), "--log-format", "pretty"], { env: ENV }).catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect(result.stderr).not.toContain("\x1b[");
    expect(prettyEvents(result.stderr).map((event) => event.msg)).toContain("machine recovered");
  });

  it("run logs readable lines on a terminal from start to a clean stop", async () => {
    await writeMachine(machines, "broken", machineToml("broken", { state: "stopped" }));
    const line = shellLine([CLI, "run", "-d", machines, "--hooks-dir", hooks, "--liveness", "none", "--listen", "127.0.0.1:0"]);
    const child = spawn(scriptTool(), ["-qfec", line, "/dev/null"], {
      env: ENV,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let screen = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (screen += chunk));
    const exited = once(child, "exit");
    try {
      const listening = await waitFor(() => prettyEvents(normalise(screen)).find((event) => event.msg === "listening"), "the listening line");
      expect(listening.fields.get("address")).toMatch(/^"127\.0\.0\.1:\d+"$/);
      await waitFor(() => prettyEvents(normalise(screen)).some((event) => event.msg === "machine recovered"), "the recovery of web");
      const pid = Number(/INFO \((\d+)\): listening/.exec(normalise(screen))![1]);
      process.kill(pid, "SIGTERM");
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
      const events = prettyEvents(normalise(screen));
      expect(events.at(-1)).toMatchObject({ level: "info", msg: "stopped" });
      expect(normalise(screen)).not.toContain('{"level"');
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("refuses an unknown format with exit 2, naming the option", async () => {
    const error = (await execFileAsync(process.execPath, [...reconcileArgs(machines), "--log-format", "xml"], { env: ENV }).catch((e: unknown) => e)) as {
      code: number;
      stderr: string;
    };
    expect(error.code).toBe(2);
    expect(error.stderr).toBe('arcbox-controller: option --log-format: invalid value "xml" (expected json or pretty)\n');
  });
});
