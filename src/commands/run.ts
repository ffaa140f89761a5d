/**
 * `arcbox-controller run`: the service. Takes the single-instance lock, starts the metrics server,
 * then the controller; stops
 * gracefully on SIGTERM/SIGINT within `shutdown_timeout` and exits 0.
 */
import { mkdir } from "node:fs/promises";
import type { Logger } from "pino";
import type { ControllerConfig } from "../controller/config.js";
import { Controller } from "../controller/controller.js";
import { acquireInstanceLock, LockHeldError, type InstanceLock } from "../host/instance-lock.js";
import { createLogger } from "../log.js";
import { ControllerMetrics } from "../metrics/controller-metrics.js";
import { startMetricsServer } from "../metrics/http-server.js";
import { VERSION } from "../version.js";
import { machinesDirTrusted } from "./trust-check.js";

export async function runService(config: ControllerConfig): Promise<number> {
  const logger = createLogger(config.logLevel);
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
    logger.fatal({ err: (error as Error).message, machines_dir: config.machinesDir }, "cannot use the machines directory");
    process.stderr.write(`arcbox-controller: cannot use the machines directory ${config.machinesDir}: ${(error as Error).message}\n`);
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
  const controller = new Controller({ config, logger, metrics, instanceLock });
  let server;
  try {
    server = await startMetricsServer({ listen: config.listen, metrics, health: controller, logger });
  } catch (error) {
    logger.fatal({ err: (error as Error).message, listen: config.listen }, "cannot serve metrics");
    process.stderr.write(`arcbox-controller: cannot listen on ${config.listen}: ${(error as Error).message}\n`);
    return 2;
  }
  logger.info({ address: server.address, version: VERSION }, "listening");

  let stopRequested: (signal: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  // A second signal ends the process at once, except within a second of the first: a terminal's
  // Ctrl-C reaches both `npm start` and us, and npm forwards it again.
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === 0) {
      firstSignalAt = Date.now();
      logger.info({ signal }, "shutting down");
      stopRequested(signal);
    } else if (Date.now() - firstSignalAt > 1000) {
      logger.warn({ signal }, "second signal: exiting without waiting for in-flight reconciles");
      process.exit(130);
    }
  };
  process.on("SIGTERM", onSignal).on("SIGINT", onSignal);

  try {
    await controller.start();
  } catch (error) {
    await server.close();
    logger.fatal({ err: (error as Error).message }, "cannot start");
    process.stderr.write(`arcbox-controller: cannot start: ${(error as Error).message}\n`);
    return 1;
  }

  await stopped;
  const drained = await controller.stop();
  await server.close();
  logger.info({ drained }, "stopped");
  return 0;
}
