/**
 * `arcbox-controller` command line (docs/design.md#cli): parses arguments, resolves the configuration and
 * hands over to a command. Usage and configuration errors print one message and exit 2.
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfig, type ConfigFlags } from "./controller/config.js";
import { runGet } from "./commands/get.js";
import { runReconcile } from "./commands/reconcile.js";
import { runService } from "./commands/run.js";
import { runValidate } from "./commands/validate.js";
import { messageLine } from "./commands/message-line.js";
import { VERSION } from "./version.js";

export { finishProcess } from "./host/exit.js";

const HELP = `arcbox-controller ${VERSION} — keeps the machines of an ArcBox host consistent

Usage:
  arcbox-controller run        [options]              watch, reconcile, serve /metrics
  arcbox-controller reconcile  [options] [-o json] [--dry-run]
                                                      one full pass over every machine, then exit;
                                                      --dry-run prints what it would recover, and why,
                                                      runs no hook and writes nothing
  arcbox-controller get        [options] [-o table|json]   list machines
  arcbox-controller validate   [options] [PATH...]    check config files or machine directories
  arcbox-controller --help | --version

Options (flags beat environment, which beats the config file, which beats defaults):
      --data-dir DIR          ArcBox's data directory, the root of every default below (ARCBOX_DATA_DIR;
                              default ~/.arcbox, ~/.arcbox-dev with ARCBOX_PROFILE=development,
                              /var/lib/arcbox without a home directory)
  -c, --config FILE           controller config (TOML); default DATA_DIR/controller.toml if present
  -d, --machines-dir DIR      machines directory (ARCBOX_MACHINES_DIR; default DATA_DIR/machines)
      --hooks-dir DIR         network hooks (ARCBOX_HOOKS_DIR; default DATA_DIR/hooks/network.d); a
                              directory named here must exist
      --no-hooks              run no network hook on recovery
      --liveness MODE         daemon|pidfile|none: how to tell that a VM is alive (default daemon:
                              alive while the arcbox daemon holds run/daemon.lock)
      --listen HOST:PORT      metrics address for run (ARCBOX_LISTEN; default 127.0.0.1:9464)
      --workers N             machines reconciled at once (default 4)
      --log-level LEVEL       trace|debug|info|warn|error (default info)
      --log-format json|pretty  log lines (default: pretty on a terminal, json otherwise)
      --allow-untrusted-machines-dir
                              run as root even where another user can write the machines directory
  -o, --output FORMAT         table|json for get, text|json for reconcile

Exit codes: 0 success; 1 a machine failed or a config is invalid (reconcile --dry-run: a machine
would be recovered); 2 usage or configuration error (a named path that does not exist, another
controller on the machines directory); 130/143 reconcile interrupted by SIGINT/SIGTERM.
`;

const COMMANDS = ["run", "reconcile", "get", "validate"] as const;
type Command = (typeof COMMANDS)[number];

/**
 * Runs the command line `argv` (without node and the script) and resolves with the exit code; a
 * failure the commands do not handle rejects.
 */
export async function runCommandLine(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string", short: "c" },
        "data-dir": { type: "string" },
        "machines-dir": { type: "string", short: "d" },
        "hooks-dir": { type: "string" },
        "no-hooks": { type: "boolean" },
        liveness: { type: "string" },
        listen: { type: "string" },
        workers: { type: "string" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        "allow-untrusted-machines-dir": { type: "boolean" },
        output: { type: "string", short: "o" },
        "dry-run": { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (error) {
    return usageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`arcbox-controller ${VERSION}\n`);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (command === undefined) return usageError("missing command (run, reconcile, get or validate)");
  if (!(COMMANDS as readonly string[]).includes(command)) return usageError(`unknown command "${command}"`);
  if (command !== "validate" && rest.length > 0) return usageError(`unexpected argument "${rest[0]}" for ${command}`);

  if (values["dry-run"] && command !== "reconcile") return usageError("option --dry-run is only for reconcile");
  const output = values.output;
  const outputs: Record<Command, readonly string[]> = { get: ["table", "json"], reconcile: ["text", "json"], run: [], validate: [] };
  if (output !== undefined && !outputs[command as Command].includes(output)) {
    return usageError(
      outputs[command as Command].length === 0
        ? `option -o is not supported by ${command}`
        : `invalid output format "${output}" for ${command} (expected ${outputs[command as Command].join(" or ")})`,
    );
  }

  const flags: ConfigFlags = {
    config: values.config,
    dataDir: values["data-dir"],
    machinesDir: values["machines-dir"],
    hooksDir: values["hooks-dir"],
    noHooks: values["no-hooks"],
    liveness: values.liveness,
    listen: values.listen,
    workers: values.workers,
    logLevel: values["log-level"],
    logFormat: values["log-format"],
  };
  let config;
  try {
    config = await loadConfig(flags);
  } catch (error) {
    if (error instanceof ConfigError) return usageError(error.message, false);
    throw error;
  }
  // A switch: given, it overrides the config file's allow_untrusted_machines_dir.
  if (values["allow-untrusted-machines-dir"]) config.allowUntrustedMachinesDir = true;

  switch (command as Command) {
    case "get":
      return runGet(config, output === "json" ? "json" : "table");
    case "validate":
      return runValidate(config, rest);
    case "reconcile":
      return runReconcile(config, output === "json" ? "json" : "text", values["dry-run"] === true);
    case "run":
      return runService(config);
  }
}

function usageError(message: string, hint = true): number {
  process.stderr.write(`${messageLine(message)}${hint ? "Run 'arcbox-controller --help' for usage.\n" : ""}`);
  return 2;
}

/**
 * A reader that stops early (`get | head`) closes the pipe. The rest of the output is then dropped
 * without a word, as Unix tools do, and the command still ends with its own exit code (not 141), so
 * that `validate | head` still tells whether every config is valid.
 */
export function dropOutputOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
  });
}
