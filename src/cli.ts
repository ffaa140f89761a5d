#!/usr/bin/env node
/**
 * The `arcbox-controller` executable (docs/design.md#cli); the command line itself is
 * ./command-line.ts. SIGHUP asks the service to look at every machine now. One that arrives while
 * the program is still loading (a service manager's reload right after a start) must not kill it,
 * as SIGHUP's default action would: it is ignored until a command handles it, and the rest loads
 * only after that.
 */
process.on("SIGHUP", () => undefined);

const { dropOutputOnClosedPipe, runCommandLine } = await import("./command-line.js");
dropOutputOnClosedPipe(process.stdout);
dropOutputOnClosedPipe(process.stderr);
runCommandLine(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`arcbox-controller: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
