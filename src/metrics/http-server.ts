import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { ControllerMetrics } from "./controller-metrics.js";
import { renderHealthReport, type HealthCheck, type HealthSource } from "./health.js";
import { renderLandingPage } from "./landing-page.js";
import { formatListenAddress, isLoopbackAddress, parseListenAddress } from "./listen-address.js";

export type { HealthCheck, HealthSource } from "./health.js";

/** The metrics server could not start; the message names the address and the cause. */
export class MetricsServerError extends Error {
  override readonly name = "MetricsServerError";
}

/** Options of startMetricsServer. */
export interface MetricsServerOptions {
  /** `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (loopback); port 0 picks a free port. */
  listen: string;
  metrics: ControllerMetrics;
  health: HealthSource;
  logger: Logger;
}

/** A running metrics server. */
export interface MetricsServer {
  /** The bound `host:port` (the real port when 0 was asked for). */
  readonly address: string;
  /** Stops accepting, closes idle keep-alive connections, and resolves once open requests are answered. */
  close(): Promise<void>;
}

const ALLOWED_METHODS = "GET, HEAD";
const TEXT = "text/plain; charset=utf-8";

interface Reply {
  status: number;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
}

/**
 * Serves /metrics, /healthz, /readyz and a landing page on `options.listen`. Logs a warning when the
 * bound address is not loopback. Rejects with ListenAddressError for a malformed address and with
 * MetricsServerError when the address cannot be bound (in use, not local, no permission).
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, health, logger } = options;
  const { host, port } = parseListenAddress(options.listen);
  let closing = false;

  const routes = new Map<string, (url: URL) => Reply | Promise<Reply>>([
    ["/metrics", async () => ({ status: 200, contentType: metrics.contentType, body: await metrics.metricsText() })],
    ["/healthz", (url) => healthReply("healthz", () => health.liveness(), url)],
    ["/readyz", (url) => healthReply("readyz", () => health.readiness(), url)],
    [
      "/",
      () => ({
        status: 200,
        contentType: "text/html; charset=utf-8",
        body: renderLandingPage(metrics.version, metrics.machines()),
      }),
    ],
  ]);

  function healthReply(endpoint: string, checks: () => HealthCheck[], url: URL): Reply {
    let list: HealthCheck[];
    try {
      list = checks();
    } catch (error) {
      logger.error({ err: error, endpoint }, "health source failed");
      list = [{ name: "health-source", ok: false, detail: errorMessage(error) }];
    }
    const report = renderHealthReport(endpoint, list, url.searchParams.has("verbose"));
    return { status: report.status, contentType: TEXT, body: report.body, headers: { "Cache-Control": "no-store" } };
  }

  async function route(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? "/", "http://metrics.invalid");
    const handler = routes.get(url.pathname);
    if (!handler) return { status: 404, contentType: TEXT, body: `404 not found: ${url.pathname}\n` };
    if (req.method !== "GET" && req.method !== "HEAD") {
      return {
        status: 405,
        contentType: TEXT,
        body: `405 method ${req.method ?? "?"} not allowed; use ${ALLOWED_METHODS}\n`,
        headers: { Allow: ALLOWED_METHODS },
      };
    }
    try {
      return await handler(url);
    } catch (error) {
      logger.error({ err: error, path: url.pathname }, "metrics request failed");
      return { status: 500, contentType: TEXT, body: `500 internal error: ${errorMessage(error)}\n` };
    }
  }

  function send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
    res.statusCode = reply.status;
    res.setHeader("Content-Type", reply.contentType);
    res.setHeader("Content-Length", Buffer.byteLength(reply.body));
    res.setHeader("X-Content-Type-Options", "nosniff");
    for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
    // A response finishing after close() must not leave its connection open to keep-alive.
    if (closing) res.setHeader("Connection", "close");
    res.end(req.method === "HEAD" ? undefined : reply.body);
  }

  const server = createServer((req, res) => {
    void route(req).then((reply) => send(req, res, reply));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      reject(
        new MetricsServerError(
          `cannot listen on metrics address "${options.listen}": ${error.code ?? error.message}` +
            (error.code === "EADDRINUSE" ? " (another process uses this port; choose another listen address)" : ""),
          { cause: error },
        ),
      );
    };
    server.once("error", onError);
    server.listen({ host, port }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (error) => logger.error({ err: error }, "metrics server error"));

  const bound = server.address() as AddressInfo;
  const address = formatListenAddress(bound.address, bound.port);
  if (!isLoopbackAddress(bound.address)) {
    logger.warn(
      { address },
      "metrics server listens on a non-loopback address: metrics, health and machine names are reachable from the network",
    );
  }

  let closed: Promise<void> | undefined;
  return {
    address,
    close(): Promise<void> {
      closed ??= new Promise<void>((resolve, reject) => {
        closing = true;
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
