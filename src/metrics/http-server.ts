import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { ActivityLog } from "./activity.js";
import { Admission, type Turn } from "./admission.js";
import type { ControllerMetrics } from "./controller-metrics.js";
import { renderHealthReport, type HealthCheck, type HealthSource } from "./health.js";
import { renderLandingPage } from "./landing-page.js";
import { formatListenAddress, isLoopbackAddress, parseListenAddress } from "./listen-address.js";
import { PacedConnection } from "./paced-connection.js";
import { singleFlight } from "./single-flight.js";

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
 * either direction after 60 s (a client that stops reading a response: 60 to 120 s, as Node first
 * checks that the write made no progress in a whole period). Node enforces the header and request
 * timeouts on a periodic sweep; every 2 s keeps them close to their values.
 */
export const SERVER_TIMEOUTS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  socketTimeout: 60_000,
  connectionsCheckingInterval: 2_000,
} as const;

/**
 * What clients may make the server hold, so that none can stall it or fill its memory.
 *
 * - `parseChunkBytes`: Node's HTTP parser parses, and emits, every request in what it is handed before
 *   a handler can close the connection, so it is handed this much at a time (PacedConnection): some 15
 *   pipelined requests at most, not the 1,800 of one 64 KB read of the socket.
 * - Per connection, one request is answered at a time, and the next only once the previous response
 *   has been flushed to the kernel: a client that does not read holds one rendered response, never a
 *   backlog, until another needs its place or the socket timeout closes it. `maxPipelinedRequests`
 *   parsed requests may wait behind it; one more closes the connection (scrapers, probes and browsers
 *   do not pipeline).
 * - `maxAnswersInFlight` answers hold a slot from rendering until flushed to the kernel (`/metrics`,
 *   `/`, `/activity`; concurrent scrapes share one render): at most 16 bodies, some 10 MB at 2,000
 *   machines even if each came from another render. A request finding every slot taken closes the
 *   connection that has held its slot longest with a client not reading, else waits for a render to
 *   end. `/healthz` and `/readyz` need no slot: they are cheap, and what the kubelet or a service
 *   manager asks.
 * - `maxConnections` open connections, some 200 KB each at most (a socket, a few parsed requests, one
 *   64 KB read waiting; a Prometheus or two, probes that connect each time and a browser's few need
 *   far fewer). A new connection at the cap closes the one
 *   idle longest (keep-alive, or a request not finished), else the one blocked longest (waiting for a
 *   slot or for its client to read); only while every connection is busy rendering is the new one
 *   turned away. Node's `server.maxConnections` would turn it away while idle connections hold every
 *   place: a client holding connections would deny the health endpoints.
 */
export const SERVER_LIMITS = {
  maxConnections: 128,
  maxAnswersInFlight: 16,
  maxPipelinedRequests: 8,
  parseChunkBytes: 512,
} as const;
/** Answered without an answer slot: cheap, and what a liveness or readiness probe asks. */
const SLOT_FREE_PATHS: ReadonlySet<string> = new Set(["/healthz", "/readyz"]);
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
  // Concurrent scrapes share one render; one arriving after it finished renders anew.
  const renderMetrics = singleFlight(() => metrics.metricsBody());

  const routes = new Map<string, (url: URL) => Reply | Promise<Reply>>([
    ["/metrics", async () => ({ status: 200, contentType: metrics.contentType, body: await renderMetrics() })],
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

  /**
   * Answers one request; never rejects (any failure becomes a 4xx or 500 reply). Undefined when the
   * connection closed while the request waited for an answer slot.
   */
  async function route(req: IncomingMessage, turn: Turn): Promise<Reply | undefined> {
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
    if (!SLOT_FREE_PATHS.has(url.pathname) && !(await turn.slot())) return undefined;
    try {
      return await handler(url);
    } catch (error) {
      logger.error({ err: error, path: url.pathname }, "metrics request failed");
      return { status: 500, contentType: TEXT, body: `500 internal error: ${errorMessage(error)}\n` };
    }
  }

  function send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
    // The client went away while the answer was prepared.
    if (res.destroyed) return;
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

  const admission = new Admission(SERVER_LIMITS);
  const server = createServer(
    { headersTimeout: SERVER_TIMEOUTS.headersTimeout, requestTimeout: SERVER_TIMEOUTS.requestTimeout, connectionsCheckingInterval: SERVER_TIMEOUTS.connectionsCheckingInterval },
    (req, res) => {
      // Node emits every request of what it parsed at once; each waits here for its turn.
      admission.schedule(req.socket, res, (turn) => {
        route(req, turn)
          .then((reply) => {
            if (reply !== undefined) send(req, res, reply);
          })
          .catch((error: unknown) => {
            // Only a broken response object can get here; the client gets a reset, the service goes on.
            logger.error({ err: error, url: req.url }, "metrics request failed");
            res.destroy();
          });
      });
    },
  );
  server.keepAliveTimeout = SERVER_TIMEOUTS.keepAliveTimeout;
  server.timeout = SERVER_TIMEOUTS.socketTimeout;
  handConnections(server, (socket) => {
    const connection = new PacedConnection(socket, SERVER_LIMITS.parseChunkBytes);
    return admission.admit(connection) ? connection : undefined;
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
        const deadline = setTimeout(() => admission.closeAll(), timeoutMs);
        server.close(() => {
          clearTimeout(deadline);
          resolve();
        });
        // Idle keep-alive connections and requests still arriving (a client that never finishes its
        // headers) would otherwise hold close() for as long as the client likes.
        admission.closeIdle();
      });
      return closed;
    },
  };
}

/**
 * Makes `server` serve, instead of each accepted socket, the connection `wrap` makes of it (none:
 * the socket was turned away). Node's http.Server sets up its parser in a `connection` listener of
 * its own; that listener is taken off and called with the wrapped connection, which Node supports
 * (any Duplex may be handed to it). Throws if the server does not have exactly that one listener.
 */
function handConnections(server: Server, wrap: (socket: Socket) => Duplex | undefined): void {
  const listeners = server.listeners("connection");
  const [parse] = listeners;
  if (listeners.length !== 1 || typeof parse !== "function") {
    throw new Error(`expected http.Server to have its own connection listener only, found ${listeners.length} listeners`);
  }
  server.removeAllListeners("connection");
  server.on("connection", (socket: Socket) => {
    const connection = wrap(socket);
    if (connection !== undefined) parse.call(server, connection);
  });
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
