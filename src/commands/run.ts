/**
 * `arcbox-controller run`: the service. Checks the hooks directory, takes the single-instance lock,
 * starts the metrics server, then the controller; stops gracefully on SIGTERM/SIGINT and exits 0,
 * always within `shutdown_timeout` plus the hooks' kill grace (docs/design.md#shutdown).
 */
import type { Logger } from "pino";
import type { ControllerConfig } from "../controller/config.js";
import { Controller, directoryHookSupply, logHooksNotice } from "../controller/controller.js";
import { MachinesDirMissingError, machinesDirState } from "../controller/machines-dir.js";
import { DEFAULT_KILL_GRACE_MS, HooksDirectoryError, type DirectoryHookSupply } from "../host/hooks.js";
import { exitProcess } from "../host/exit.js";
import { instanceLock, LockHeldError, type InstanceLock } from "../host/instance-lock.js";
import { createLogger } from "../log.js";
import { ActivityLog } from "../metrics/activity.js";
import { ControllerMetrics } from "../metrics/controller-metrics.js";
import { MetricsServerError, startMetricsServer, type MetricsServer } from "../metrics/http-server.js";
import { OverdueCalls, unansweredCalls } from "../platform/deadline.js";
import { VERSION } from "../version.js";
import { EXIT_CONFIG_ERROR, EXIT_LOCK_HELD } from "./exit-codes.js";
import { messageLine } from "./message-line.js";
import { machinesDirTrusted } from "./trust-check.js";

export async function runService(config: ControllerConfig): Promise<number> {
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const metrics = new ControllerMetrics({ perMachineMetrics: config.perMachineMetrics, version: VERSION, daemonLiveness: config.liveness === "daemon" });

  // Everything that can refuse to start does so before anything is touched; the lock comes first
  // of what is taken, so a second controller is refused naming the first before anything else (such
  // as the metrics port both would want) can fail.
  // Deadlines of the calls on paths others control, shared by every step (docs/design.md#hung-mounts).
  const calls = new OverdueCalls();
  if (!(await machinesDirTrusted(config, logger, calls))) return EXIT_CONFIG_ERROR;
  const hooks = directoryHookSupply({ config, logger, metrics, calls });
  try {
    logHooksNotice(logger, await hooks.check());
  } catch (error) {
    if (!(error instanceof HooksDirectoryError)) throw error;
    return refuse(logger, error.message, "cannot use the hooks directory", { hooks_dir: config.hooksDir });
  }
  const lock = instanceLock(config.machinesDir);
  try {
    // A missing directory is waited for (the controller says so); the lock is taken once it appears.
    if ((await machinesDirState(config.machinesDir)) === "directory") await lock.ensure();
  } catch (error) {
    if (error instanceof LockHeldError) {
      return refuse(logger, error.message, "another controller is running", { owner_pid: error.ownerPid }, EXIT_LOCK_HELD);
    }
    const message = error instanceof MachinesDirMissingError ? error.message : `cannot use the machines directory ${config.machinesDir}: ${(error as Error).message}`;
    return refuse(logger, message, "cannot use the machines directory", { machines_dir: config.machinesDir });
  }
  if (lock.pidWriteError !== undefined) {
    logger.warn({ path: lock.path, code: lock.pidWriteError }, "holding the single-instance lock, but could not record this process's pid in it");
  }
  try {
    return await serve(config, logger, metrics, lock, hooks, calls);
  } finally {
    lock.release();
  }
}

/** Refuses to start: the reason in the log and on stderr; returns the exit status (a configuration error's by default). */
function refuse(logger: Logger, message: string, msg: string, fields: Record<string, unknown>, code = EXIT_CONFIG_ERROR): number {
  logger.fatal({ err: message, ...fields }, msg);
  process.stderr.write(messageLine(message));
  return code;
}

/** Why the service stops: a signal, or a problem it cannot go on with (another controller took the lock). */
type StopReason = { signal: NodeJS.Signals } | { fatal: Error };

async function serve(
  config: ControllerConfig,
  logger: Logger,
  metrics: ControllerMetrics,
  instanceLock: InstanceLock,
  hooks: DirectoryHookSupply,
  calls: OverdueCalls,
): Promise<number> {
  const activity = new ActivityLog();
  let stopRequested: (reason: StopReason) => void = () => undefined;
  const stopped = new Promise<StopReason>((resolve) => (stopRequested = resolve));
  const controller = new Controller({ config, logger, metrics, instanceLock, activity, hooks, calls, onFatal: (fatal) => stopRequested({ fatal }) });
  // The first SIGTERM/SIGINT stops gracefully. A second one (not within a second of the first: a
  // terminal's Ctrl-C reaches both `npm start` and us, and npm forwards it again) stops running hooks
  // at once; the process still waits for them to die, so no hook is left behind, then exits 130.
  let firstSignalAt = 0;
  let forced = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === 0) {
      firstSignalAt = Date.now();
      logger.info({ signal }, "shutting down");
      stopRequested({ signal });
    } else if (!forced && Date.now() - firstSignalAt > 1000) {
      forced = true;
      logger.warn({ signal }, "second signal: stopping running hooks now");
      controller.abortInFlight();
    }
  };
  const onHangup = hangupHandler(controller, logger);
  // Installed before the `listening` line: from then on a signal always means a graceful stop.
  process.on("SIGTERM", onSignal).on("SIGINT", onSignal).on("SIGHUP", onHangup);
  try {
    let server;
    try {
      server = await startMetricsServer({ listen: config.listen, metrics, health: controller, logger, activity, notices: () => hookNotices(controller) });
    } catch (error) {
      logger.fatal({ err: (error as Error).message, listen: config.listen }, "cannot serve metrics");
      // A MetricsServerError already names the address.
      const message = error instanceof MetricsServerError ? error.message : `cannot listen on ${config.listen}: ${(error as Error).message}`;
      process.stderr.write(messageLine(message));
      return EXIT_CONFIG_ERROR;
    }
    logger.info({ address: server.address, version: VERSION }, "listening");
    return await runUntilStopped(controller, server, stopped, { logger, shutdownTimeoutMs: config.shutdownTimeoutMs }, () => forced);
  } finally {
    process.off("SIGTERM", onSignal).off("SIGINT", onSignal).off("SIGHUP", onHangup);
  }
}

/**
 * SIGHUP, which daemons take as "reload": every machine is looked at now, failed ones included. A
 * burst is one look: signals that arrive while a look is under way (its machines listed, queued and
 * reconciled) join it, since it already covers them.
 */
function hangupHandler(controller: Controller, logger: Logger): () => void {
  let looking = false;
  let joined = 0;
  return () => {
    if (looking) {
      joined++;
      return;
    }
    looking = true;
    void controller
      .resyncNow()
      .then(async ({ queued, retried }) => {
        logger.info({ signal: "SIGHUP", machines: queued, retried_early: retried }, "looking at every machine now");
        await controller.idle();
      })
      .catch((error: unknown) => logger.error({ err: (error as Error).message }, "listing machines failed"))
      .finally(() => {
        if (joined > 0) logger.info({ signal: "SIGHUP", joined }, "further SIGHUPs joined that look");
        [looking, joined] = [false, 0];
      });
  };
}

/** What the landing page should point out about the hooks: recoveries that run none although nobody chose that. */
function hookNotices(controller: Controller): string[] {
  const status = controller.hooksStatus();
  return status?.warning ? [`Network hooks: ${status.text}`] : [];
}

/**
 * The longest a stop may take: in-flight reconciles get `shutdown_timeout`, then their hooks get
 * SIGTERM and, after this grace, SIGKILL.
 */
const STOP_GRACE_MS = DEFAULT_KILL_GRACE_MS;
/** After a clean stop the process ends by itself; if something still holds it, it is ended this soon. */
const EXIT_BACKSTOP_MS = 1000;

async function runUntilStopped(
  controller: Controller,
  server: MetricsServer,
  stopped: Promise<StopReason>,
  { logger, shutdownTimeoutMs }: { logger: Logger; shutdownTimeoutMs: number },
  forced: () => boolean,
): Promise<number> {
  // A stop asked for while starting (a start held up by a path that does not answer) is not kept waiting.
  const started = controller.start().then(
    () => null,
    (error: unknown) => error as Error,
  );
  const failed = await Promise.race([started, stopped.then(() => null)]);
  if (failed !== null) {
    await server.close(shutdownTimeoutMs);
    logger.fatal({ err: failed.message }, "cannot start");
    process.stderr.write(messageLine(`cannot start: ${failed.message}`));
    if (failed instanceof LockHeldError) return EXIT_LOCK_HELD;
    return failed instanceof HooksDirectoryError ? EXIT_CONFIG_ERROR : 1;
  }

  const reason = await stopped;
  const deadline = Date.now() + shutdownTimeoutMs + STOP_GRACE_MS;
  const watchdog = exitAt(deadline, 1, () => logger.error({ shutdown_timeout_ms: shutdownTimeoutMs }, "the stop did not finish in time; exiting now"));
  const drained = await controller.stop();
  // Whatever the clients do (idle connections, a request never finished), this ends in time.
  await server.close(Math.max(0, deadline - Date.now() - 100));
  clearTimeout(watchdog);
  logger.info({ drained }, "stopped");
  const code = "fatal" in reason ? (reason.fatal instanceof LockHeldError ? EXIT_LOCK_HELD : 1) : forced() ? 130 : 0;
  if ("fatal" in reason) process.stderr.write(messageLine(reason.fatal.message));
  // A call stuck on a hung mount keeps the process alive for good: end it now.
  if (unansweredCalls() > 0) {
    logger.warn({ unanswered_calls: unansweredCalls() }, "file system calls on a hung mount have not answered; exiting without waiting for them");
    await exitProcess(code);
  }
  // Nothing should keep the process alive now; if something does, it must not keep a service manager waiting.
  exitAt(Date.now() + EXIT_BACKSTOP_MS, code, () =>
    logger.warn({ resources: process.getActiveResourcesInfo() }, "still running after the stop; exiting"),
  );
  return code;
}

/** Ends the process with `code` at `time` unless it has ended by then (the timer does not keep it alive). */
function exitAt(time: number, code: number, before: () => void): NodeJS.Timeout {
  return setTimeout(() => {
    before();
    void exitProcess(code);
  }, Math.max(0, time - Date.now())).unref();
}
