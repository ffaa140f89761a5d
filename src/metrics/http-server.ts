import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Logger } from "pino";
import type { ActivityLog } from "./activity.js";
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
  /** The record of recent activity: shown on the landing page and served at `/activity`. */
  activity?: ActivityLog;
  /** What an operator should know now (a missing hooks directory, say): shown at the top of the landing page. */
  notices?: () => string[];
}

/** A running metrics server. */
export interface MetricsServer {
  /** The bound `host:port` (the real port when 0 was asked for). */
  readonly address: string;
  /**
   * Stops accepting and drops every connection that is not being answered (idle keep-alive ones,
   * half-sent requests); requests being answered get `timeoutMs` (default 30 s) to finish, then
   * their connections are destroyed too. Resolves when the server is closed; never rejects.
   */
  close(timeoutMs?: number): Promise<void>;
}

const ALLOWED_METHODS = "GET, HEAD";
/** Base of a request's origin-form target, so that `//x` stays a path and never becomes a host. */
const URL_BASE = "http://metrics.invalid";
const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

/**
 * Node's server timeouts. A scrape or page request is a few hundred bytes sent at once, so a client
 * still sending headers after 10 s, or a request after 30 s, is stuck or hostile; its connection is
 * closed (408). Idle keep-alive connections close after 5 s, and a socket with no traffic at all in
 * either direction (e.g. a client that stops reading a response) after 60 s. Node enforces the
 * header and request timeouts on a periodic sweep; every 2 s keeps them close to their values.
 */
export const SERVER_TIMEOUTS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  socketTimeout: 60_000,
  connectionsCheckingInterval: 2_000,
} as const;
const TEXT = "text/plain; charset=utf-8";
const NO_STORE = { "Cache-Control": "no-store" };

interface Reply {
  status: number;
  contentType: string;
  /** Text, or bytes sent chunk after chunk (the metrics exposition: no copy of its large family). */
  body: string | readonly Uint8Array[];
  headers?: Record<string, string>;
}

/**
 * Serves /metrics, /healthz, /readyz, a landing page and, given an activity record, /activity (JSON)
 * on `options.listen`. Logs a warning when the
 * bound address is not loopback. Rejects with ListenAddressError for a malformed address and with
 * MetricsServerError when the address cannot be bound (in use, not local, no permission).
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, health, logger, activity, notices } = options;
  const { host, port } = parseListenAddress(options.listen);
  let closing = false;

  const routes = new Map<string, (url: URL) => Reply | Promise<Reply>>([
    ["/metrics", async () => ({ status: 200, contentType: metrics.contentType, body: await metrics.metricsBody() })],
    ["/healthz", (url) => healthReply("healthz", () => health.liveness(), url)],
    ["/readyz", (url) => healthReply("readyz", () => health.readiness(), url)],
    [
      "/",
      () => ({
        status: 200,
        contentType: "text/html; charset=utf-8",
        body: renderLandingPage({
          version: metrics.version,
          machines: metrics.machines(),
          daemon: metrics.daemonLiveness ? daemonText(metrics.daemonStatus) : undefined,
          activity: activity?.recent(),
          activityRecorded: activity?.recorded,
          notices: notices?.() ?? [],
        }),
        headers: NO_STORE,
      }),
    ],
  ]);
  if (activity) {
    routes.set("/activity", () => ({
      status: 200,
      contentType: "application/json; charset=utf-8",
      body: `${JSON.stringify(activity.snapshot())}\n`,
      headers: NO_STORE,
    }));
  }

  function healthReply(endpoint: string, checks: () => HealthCheck[], url: URL): Reply {
    let list: HealthCheck[];
    try {
      list = checks();
    } catch (error) {
      logger.error({ err: error, endpoint }, "health source failed");
      list = [{ name: "health-source", ok: false, detail: errorMessage(error) }];
    }
    const report = renderHealthReport(endpoint, list, url.searchParams.has("verbose"));
    return { status: report.status, contentType: TEXT, body: report.body, headers: NO_STORE };
  }

  /** Answers one request; never rejects (any failure becomes a 4xx or 500 reply). */
  async function route(req: IncomingMessage): Promise<Reply> {
    const url = requestUrl(req.url);
    if (url === undefined) {
      return { status: 400, contentType: TEXT, body: `400 bad request target: ${JSON.stringify(req.url ?? "")}\n` };
    }
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
    const chunks = typeof reply.body === "string" ? [Buffer.from(reply.body, "utf8")] : reply.body;
    res.setHeader("Content-Length", chunks.reduce((length, chunk) => length + chunk.byteLength, 0));
    res.setHeader("X-Content-Type-Options", "nosniff");
    for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
    // A response finishing after close() must not leave its connection open to keep-alive.
    if (closing) res.setHeader("Connection", "close");
    if (req.method !== "HEAD") {
      // Corked: the headers and every chunk leave in one writev when end() uncorks.
      res.cork();
      for (const chunk of chunks) res.write(chunk);
    }
    res.end();
  }

  // Every open socket, and those whose request is being answered: close() drops the others at once.
  const sockets = new Set<Socket>();
  const answering = new Set<Socket>();
  const server = createServer(
    { headersTimeout: SERVER_TIMEOUTS.headersTimeout, requestTimeout: SERVER_TIMEOUTS.requestTimeout, connectionsCheckingInterval: SERVER_TIMEOUTS.connectionsCheckingInterval },
    (req, res) => {
      const socket = req.socket;
      answering.add(socket);
      res.once("close", () => answering.delete(socket));
      route(req)
        .then((reply) => send(req, res, reply))
        .catch((error: unknown) => {
          // Only a broken response object can get here; the client gets a reset, the service goes on.
          logger.error({ err: error, url: req.url }, "metrics request failed");
          res.destroy();
        });
    },
  );
  server.keepAliveTimeout = SERVER_TIMEOUTS.keepAliveTimeout;
  server.timeout = SERVER_TIMEOUTS.socketTimeout;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
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
    close(timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS): Promise<void> {
      closed ??= new Promise<void>((resolve) => {
        closing = true;
        const deadline = setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, timeoutMs);
        server.close(() => {
          clearTimeout(deadline);
          resolve();
        });
        // Idle keep-alive connections and requests still arriving (a client that never finishes its
        // headers) would otherwise hold close() for as long as the client likes.
        for (const socket of sockets) if (!answering.has(socket)) socket.destroy();
      });
      return closed;
    },
  };
}

/**
 * The URL of a request target: origin-form (`/path?query`) or absolute-form (`http://host/path`);
 * undefined for anything else (`*`, `http://[`, an empty target).
 */
function requestUrl(target: string | undefined): URL | undefined {
  if (target === undefined || target === "") return undefined;
  const text = target.startsWith("/") ? URL_BASE + target : target;
  if (!URL.canParse(text)) return undefined;
  const url = new URL(text);
  return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
}

function daemonText(up: boolean | undefined): "up" | "down" | "unknown" {
  return up === undefined ? "unknown" : up ? "up" : "down";
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
