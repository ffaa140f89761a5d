/** Starts a real metrics server on 127.0.0.1:0 for tests and scrapes it over HTTP. */
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import type { ActivityLog } from "../../src/metrics/activity.js";
import { ControllerMetrics, type ControllerMetricsOptions } from "../../src/metrics/controller-metrics.js";
import type { HealthCheck, HealthSource } from "../../src/metrics/health.js";
import { startMetricsServer, type MetricsServer } from "../../src/metrics/http-server.js";
import { parseExposition, type Exposition } from "./exposition-parser.js";

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose JSON lines are collected into `lines`. */
export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, sink), lines };
}

/** Health checks the test can flip. */
export class MutableHealth implements HealthSource {
  live: HealthCheck[] = [{ name: "event-loop", ok: true }];
  ready: HealthCheck[] = [{ name: "watcher", ok: true }];
  liveness(): HealthCheck[] {
    return this.live;
  }
  readiness(): HealthCheck[] {
    return this.ready;
  }
}

export interface TestServer {
  metrics: ControllerMetrics;
  health: MutableHealth;
  server: MetricsServer;
  logs: LogLine[];
  url(path: string): string;
  scrape(): Promise<Exposition>;
  scrapeText(): Promise<string>;
  close(): Promise<void>;
}

/** Starts ControllerMetrics behind a real HTTP server on a free loopback port. */
export async function startTestServer(
  options: Partial<ControllerMetricsOptions> & { health?: HealthSource; activity?: ActivityLog } = {},
): Promise<TestServer> {
  const metrics = new ControllerMetrics({ version: "1.2.3-test", ...options });
  const health = new MutableHealth();
  const { logger, lines } = captureLogger();
  const server = await startMetricsServer({
    listen: "127.0.0.1:0",
    metrics,
    health: options.health ?? health,
    logger,
    activity: options.activity,
  });
  const url = (path: string): string => `http://${server.address}${path}`;
  const scrapeText = async (): Promise<string> => {
    const response = await fetch(url("/metrics"));
    if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
    return response.text();
  };
  return {
    metrics,
    health,
    server,
    logs: lines,
    url,
    scrapeText,
    scrape: async () => parseExposition(await scrapeText()),
    close: () => server.close(),
  };
}
