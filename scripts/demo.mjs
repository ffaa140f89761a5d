#!/usr/bin/env node
// `npm start`: runs the controller on a fresh demo machines directory (.demo/) made from
// manifests/examples, with metrics on 127.0.0.1:9464. The example "web" is persisted as running with
// no VM behind it, so the log shows a recovery; "broken" shows how an invalid config is reported.
// ARCBOX_DEMO_DIR puts the demo elsewhere (the test of this script uses a temp directory).
import { spawn } from "node:child_process";
import { chmod, cp, mkdir, readdir, rm, utimes } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const demo = process.env.ARCBOX_DEMO_DIR ? resolve(process.env.ARCBOX_DEMO_DIR) : join(root, ".demo");
const machines = join(demo, "machines");
const hooks = join(demo, "hooks");

// Only what the demo makes is replaced, so ARCBOX_DEMO_DIR may name a directory that holds more.
for (const made of [machines, hooks]) await rm(made, { recursive: true, force: true });
await mkdir(demo, { recursive: true });
await cp(join(root, "manifests/examples/machines"), machines, { recursive: true });
await cp(join(root, "manifests/examples/hooks"), hooks, { recursive: true });
// Hooks must not be writable by group or others, whatever the checkout's umask was.
for (const hook of await readdir(hooks)) await chmod(join(hooks, hook), 0o755);
// The examples were written long ago: past the startup grace, so recovery happens at once.
const longAgo = new Date(Date.now() - 3_600_000);
for (const name of await readdir(machines)) await utimes(join(machines, name, "config.toml"), longAgo, longAgo);

// The demo is for a person: readable log lines, unless `npm start -- --log-format json` asks otherwise.
const extra = process.argv.slice(2);
const format = extra.some((arg) => arg.startsWith("--log-format")) ? [] : ["--log-format", "pretty"];
const args = [join(root, "dist/cli.cjs"), "run", "--machines-dir", machines, "--hooks-dir", hooks, "--listen", process.env.ARCBOX_LISTEN ?? "127.0.0.1:9464", ...format, ...extra];
process.stderr.write(`demo machines in ${machines}; metrics on http://${process.env.ARCBOX_LISTEN ?? "127.0.0.1:9464"}/ — Ctrl-C to stop\n`);
const child = spawn(process.execPath, args, { stdio: "inherit" });
// Ctrl-C reaches the controller from the terminal directly; SIGTERM is passed on.
process.on("SIGINT", () => undefined);
process.on("SIGTERM", () => child.kill("SIGTERM"));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
