/**
 * The start-up check of the commands that write (`run`, `reconcile`): as root, refuse a machines
 * directory another user can write unless `allow_untrusted_machines_dir` says otherwise.
 */
import type { Logger } from "pino";
import type { ControllerConfig } from "../controller/config.js";
import type { OverdueCalls } from "../platform/deadline.js";
import { checkMachinesDirTrust } from "../store/index.js";
import { messageLine } from "./message-line.js";

/**
 * Runs the check, its calls under `calls` (shared with the command's later work: a directory found
 * not answering is not waited for again). Returns true when the command may go on (with a warning logged when it was allowed
 * over untrusted directories); false after printing the refusal on stderr (the command exits 2).
 */
export async function machinesDirTrusted(config: ControllerConfig, logger: Logger, calls: OverdueCalls): Promise<boolean> {
  try {
    const untrusted = await checkMachinesDirTrust(config.machinesDir, {
      allowUntrusted: config.allowUntrustedMachinesDir,
      calls,
      onNoAnswer: (path) => logger.warn({ path }, "cannot check who can write this directory: it does not answer (a hung mount?)"),
    });
    if (untrusted.length > 0) {
      logger.warn(
        { machines_dir: config.machinesDir, untrusted: untrusted.slice(0, 10), count: untrusted.length },
        "running as root over directories another user can write (allow_untrusted_machines_dir)",
      );
    }
    return true;
  } catch (error) {
    logger.fatal({ err: (error as Error).message, machines_dir: config.machinesDir }, "refusing the machines directory");
    process.stderr.write(messageLine((error as Error).message));
    return false;
  }
}
