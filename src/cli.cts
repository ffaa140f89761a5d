#!/usr/bin/env node
/**
 * The `arcbox-controller` executable (docs/design.md#cli); the command line itself is
 * ./command-line.ts. CommonJS, so that this runs before anything is loaded: loading an ES module
 * already uses libuv's thread pool, whose size is fixed at its first use.
 *
 * - The pool gets {@link THREAD_POOL_SIZE} threads unless UV_THREADPOOL_SIZE says otherwise: a file
 *   system call on a mount that stops answering holds its thread until the mount answers
 *   (docs/design.md#hung-mounts), and with libuv's default of 4, two or three such paths would stall
 *   every file operation of the process.
 * - SIGHUP asks the service to look at every machine now. One that arrives while the program is still
 *   loading (a service manager's reload right after a start) must not kill it, as SIGHUP's default
 *   action would: it is ignored until a command handles it, and the rest loads only after that.
 */
const THREAD_POOL_SIZE = 64;

process.env.UV_THREADPOOL_SIZE ??= String(THREAD_POOL_SIZE);
process.on("SIGHUP", () => undefined);

void import("./command-line.js").then(({ dropOutputOnClosedPipe, finishProcess, runCommandLine }) => {
  dropOutputOnClosedPipe(process.stdout);
  dropOutputOnClosedPipe(process.stderr);
  runCommandLine(process.argv.slice(2)).then(
    (code) => finishProcess(code),
    (error: unknown) => {
      process.stderr.write(`arcbox-controller: ${(error as Error).stack ?? String(error)}\n`);
      finishProcess(1);
    },
  );
});
