/**
 * The controller's logger (docs/design.md#logs): pino, one event per line, as JSON lines for journald and log
 * shippers or as readable lines (pino-pretty) for a person at a terminal, with the same content.
 */
import { pino, type DestinationStream, type Logger } from "pino";
import { prettyFactory } from "pino-pretty";
import type { LogFormat, LogLevel } from "./controller/config.js";

/** Options of createLogger. */
export interface LoggerOptions {
  level: LogLevel;
  /** `undefined` chooses: pretty when `fd` is a terminal, json otherwise. */
  format?: LogFormat | undefined;
  /** stdout for the service; stderr for one-shot commands whose stdout is their result. Default 1. */
  fd?: 1 | 2;
}

/** The format a logger on `fd` uses: the one asked for, else pretty on a terminal and json otherwise. */
export function resolveLogFormat(format: LogFormat | undefined, fd: 1 | 2): LogFormat {
  return format ?? (terminal(fd).isTTY ? "pretty" : "json");
}

/**
 * Creates the process logger. Writes are synchronous in both formats (pino-pretty's formatter runs
 * in the writing call, not in a stream or worker), so the last lines before an exit (a shutdown, a
 * fatal error) are never lost. Never fails.
 */
export function createLogger({ level, format, fd = 1 }: LoggerOptions): Logger {
  const out = pino.destination({ dest: fd, sync: true });
  let destination: DestinationStream = out;
  if (resolveLogFormat(format, fd) === "pretty") {
    const tty = terminal(fd);
    const prettify = prettyFactory({
      colorize: tty.isTTY === true && tty.hasColors(),
      translateTime: "SYS:standard",
    });
    destination = { write: (line: string) => out.write(prettify(line)) };
  }
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

function terminal(fd: 1 | 2): NodeJS.WriteStream {
  return fd === 1 ? process.stdout : process.stderr;
}
