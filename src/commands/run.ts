/**
 * `arcbox-controller run`: the service. Takes the single-instance lock, starts the metrics server,
 * then the controller; stops gracefully on SIGTERM/SIGINT within `shutdown_timeout` and exits 0.
 */
import { mkdir } from "node:fs/promises";
import type { Logger } from "pino";
import type { ControllerConfig } from "../controller/config.js";
import { Controller } from "../controller/controller.js";
import { acquireInstanceLock, LockHeldError, type InstanceLock } from "../host/instance-lock.js";
import { createLogger } from "../log.js";
import { ActivityLog } from "../metrics/activity.js";
import { ControllerMetrics } from "../metrics/controller-metrics.js";
import { MetricsServerError, startMetricsServer, type MetricsServer } from "../metrics/http-server.js";
import { VERSION } from "../version.js";
import { machinesDirTrusted } from "./trust-check.js";

export async function runService(config: ControllerConfig): Promise<number> {
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const metrics = new ControllerMetrics({ perMachineMetrics: config.perMachineMetrics, version: VERSION, daemonLiveness: config.liveness === "daemon" });

  // The lock comes first: a second controller is refused naming the first, before anything else
  // (such as the metrics port both would want) can fail.
  if (!(await machinesDirTrusted(config, logger))) return 2;
  let lock: InstanceLock;
  try {
    await mkdir(config.machinesDir, { recursive: true, mode: 0o755 });
    lock = await acquireInstanceLock(config.machinesDir);
  } catch (error) {
    if (error instanceof LockHeldError) {
      logger.fatal({ err: error.message, owner_pid: error.ownerPid }, "another controller is running");
      process.stderr.write(`arcbox-controller: ${error.message}\n`);
      return 2;
    }
    const code = (error as NodeJS.ErrnoException).code;
    // What mkdir's EEXIST and ENOTDIR mean here.
    const reason =
      code === "EEXIST" ? "it exists and is not a directory" : code === "ENOTDIR" ? "a path above it is not a directory" : (error as Error).message;
    logger.fatal({ err: reason, machines_dir: config.machinesDir }, "cannot use the machines directory");
    process.stderr.write(`arcbox-controller: cannot use the machines directory ${config.machinesDir}: ${reason}\n`);
    return 2;
  }
  if (lock.pidWriteError !== undefined) {
    logger.warn({ path: lock.path, code: lock.pidWriteError }, "holding the single-instance lock, but could not record this process's pid in it");
  }
  try {
    return await serve(config, logger, metrics, lock);
  } finally {
    lock.release();
  }
}

async function serve(config: ControllerConfig, logger: Logger, metrics: ControllerMetrics, instanceLock: InstanceLock): Promise<number> {
  const activity = new ActivityLog();
  const controller = new Controller({ config, logger, metrics, instanceLock, activity });
  let stopRequested: (signal: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  // The first SIGTERM/SIGINT stops gracefully. A second one (not within a second of the first: a
  // terminal's Ctrl-C reaches both `npm start` and us, and npm forwards it again) stops running hooks
  // at once; the process still waits for them to die, so no hook is left behind, then exits 130.
  let firstSignalAt = 0;
  let forced = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === 0) {
      firstSignalAt = Date.now();
      logger.info({ signal }, "shutting down");
      stopRequested(signal);
    } else if (!forced && Date.now() - firstSignalAt > 1000) {
      forced = true;
      logger.warn({ signal }, "second signal: stopping running hooks now");
      controller.abortInFlight();
    }
  };
  // SIGHUP, which daemons take as "reload": every machine and the hooks directory are looked at again.
  const onHangup = () => {
    logger.info({ signal: "SIGHUP" }, "looking at every machine and the hooks again");
    controller.resyncNow();
  };
  // Installed before the `listening` line: from then on a signal always means a graceful stop.
  process.on("SIGTERM", onSignal).on("SIGINT", onSignal).on("SIGHUP", onHangup);
  try {
    let server;
    try {
      server = await startMetricsServer({ listen: config.listen, metrics, health: controller, logger, activity });
    } catch (error) {
      logger.fatal({ err: (error as Error).message, listen: config.listen }, "cannot serve metrics");
      // A MetricsServerError already names the address.
      const message = error instanceof MetricsServerError ? error.message : `cannot listen on ${config.listen}: ${(error as Error).message}`;
      process.stderr.write(`arcbox-controller: ${message}\n`);
      return 2;
    }
    logger.info({ address: server.address, version: VERSION }, "listening");
    return await runUntilStopped(controller, server, stopped, { logger, shutdownTimeoutMs: config.shutdownTimeoutMs }, () => forced);
  } finally {
    process.off("SIGTERM", onSignal).off("SIGINT", onSignal).off("SIGHUP", onHangup);
  }
}

async function runUntilStopped(
  controller: Controller,
  server: MetricsServer,
  stopped: Promise<string>,
  { logger, shutdownTimeoutMs }: { logger: Logger; shutdownTimeoutMs: number },
  forced: () => boolean,
): Promise<number> {
  try {
    await controller.start();
  } catch (error) {
    await server.close(shutdownTimeoutMs);
    logger.fatal({ err: (error as Error).message }, "cannot start");
    process.stderr.write(`arcbox-controller: cannot start: ${(error as Error).message}\n`);
    return 1;
  }

  await stopped;
  const drained = await controller.stop();
  // Whatever the clients do (idle connections, a request never finished), this ends in time.
  await server.close(shutdownTimeoutMs);
  logger.info({ drained }, "stopped");
  return forced() ? 130 : 0;
}
