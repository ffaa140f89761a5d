/**
 * `arcbox-controller run`: the service. Starts the metrics server, then the controller; stops
 * gracefully on SIGTERM/SIGINT within `shutdown_timeout` and exits 0.
 */
import type { ControllerConfig } from "../controller/config.js";
import { Controller } from "../controller/controller.js";
import { LockHeldError } from "../controller/instance-lock.js";
import { createLogger } from "../log.js";
import { ControllerMetrics } from "../metrics/controller-metrics.js";
import { startMetricsServer } from "../metrics/http-server.js";
import { VERSION } from "../version.js";

export async function runService(config: ControllerConfig): Promise<number> {
  const logger = createLogger(config.logLevel);
  const metrics = new ControllerMetrics({ perMachineMetrics: config.perMachineMetrics, version: VERSION });
  const controller = new Controller({ config, logger, metrics });

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
    if (error instanceof LockHeldError) {
      logger.fatal({ err: error.message, owner_pid: error.ownerPid }, "another controller is running");
      process.stderr.write(`arcbox-controller: ${error.message}\n`);
      return 2;
    }
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
