/** The controller's logger (DESIGN §8): pino JSON lines on stdout, one line per event. */
import { pino, type Logger } from "pino";
import type { LogLevel } from "./controller/config.js";

/**
 * Creates the process logger on `fd` (stdout for the service; stderr for one-shot commands whose
 * stdout is their result). Writes are synchronous so that the last lines before an exit (a
 * shutdown, a fatal error) are never lost.
 */
export function createLogger(level: LogLevel, fd: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: fd, sync: true }),
  );
}
