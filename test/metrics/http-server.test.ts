import { Agent, request } from "node:http";
import { Gauge } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ActivityLog } from "../../src/metrics/activity.js";
import { ControllerMetrics } from "../../src/metrics/controller-metrics.js";
import type { HealthSource } from "../../src/metrics/health.js";
import { MetricsServerError, SERVER_LIMITS, startMetricsServer } from "../../src/metrics/http-server.js";
import { ListenAddressError } from "../../src/metrics/listen-address.js";
import { waitFor } from "../helpers/processes.js";
import { exchange, openIdleConnections, openSocket, socketClosed, statusOf } from "../helpers/raw-http.js";
import { captureLogger, startTestServer, type TestServer } from "./server-fixture.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(health?: HealthSource): Promise<TestServer> {
  server = await startTestServer(health ? { health } : {});
  return server;
}

/** A raw request with node:http, for methods and headers fetch() hides. */
function rawRequest(
  url: string,
  method: string,
  agent?: Agent,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("metrics HTTP server", () => {
  it("reports the actual bound address; no warning on loopback", async () => {
    const s = await start();
    expect(s.server.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(s.logs.filter((l) => l.level === 40)).toEqual([]);
  });

  it("binds loopback when the host is omitted", async () => {
    const { logger } = captureLogger();
    const metrics = new ControllerMetrics({ version: "x" });
    const health: HealthSource = { liveness: () => [], readiness: () => [] };
    const started = await startMetricsServer({ listen: ":0", metrics, health, logger });
    try {
      expect(started.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect((await fetch(`http://${started.address}/healthz`)).status).toBe(200);
    } finally {
      await started.close();
    }
  });

  it("serves /metrics for GET and HEAD; HEAD has headers but no body", async () => {
    const s = await start();
    const get = await fetch(s.url("/metrics"));
    expect(get.status).toBe(200);
    expect(await get.text()).toContain("arcbox_machines{");
    const head = await rawRequest(s.url("/metrics"), "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers["content-type"]).toBe(s.metrics.contentType);
    expect(Number(head.headers["content-length"])).toBeGreaterThan(1000);
    expect(head.body).toBe("");
  });

  it("sends the per-machine family as cached bytes: the body is the whole exposition, its length exact, and a change shows at the next scrape", async () => {
    const s = await start();
    // Multi-byte names make a wrong byte count (characters instead of bytes) visible.
    for (let i = 0; i < 300; i++) s.metrics.setMachine(`vm-ü${i}`, "running", false);
    const first = await rawRequest(s.url("/metrics"), "GET");
    expect(Number(first.headers["content-length"])).toBe(Buffer.byteLength(first.body));
    // Process figures move between two renderings; the per-machine family does not.
    const family = (text: string) => text.slice(text.indexOf("# HELP arcbox_machine_state "));
    expect(family(first.body)).toBe(family(await s.metrics.metricsText()));
    expect(family(first.body).split("\n").filter((line) => line.startsWith("arcbox_machine_state{"))).toHaveLength(300);
    expect(first.body).toContain('arcbox_machine_state{machine="vm-ü299",state="running"} 1\n');
    s.metrics.setMachine("vm-ü7", "stopped", false);
    const second = await rawRequest(s.url("/metrics"), "GET");
    expect(Number(second.headers["content-length"])).toBe(Buffer.byteLength(second.body));
    expect(second.body).toContain('arcbox_machine_state{machine="vm-ü7",state="stopped"} 1\n');
    expect(second.body).not.toContain('arcbox_machine_state{machine="vm-ü7",state="running"}');
  });

  it("answers /healthz with 200 ok, and 503 listing only the failing checks", async () => {
    const s = await start();
    let response = await fetch(s.url("/healthz"));
    expect([response.status, await response.text()]).toEqual([200, "ok\n"]);

    s.health.live = [
      { name: "event-loop", ok: true },
      { name: "watcher", ok: false, detail: "chokidar error:\nEMFILE" },
    ];
    response = await fetch(s.url("/healthz"));
    expect(response.status).toBe(503);
    expect(await response.text()).toBe("[-]watcher failed: chokidar error: EMFILE\nhealthz check failed\n");
  });

  it("answers /readyz with 503 until ready, and ?verbose lists every check", async () => {
    const s = await start();
    s.health.ready = [
      { name: "watcher", ok: true },
      { name: "initial-sync", ok: false, detail: "12 of 40 machines queued" },
    ];
    let response = await fetch(s.url("/readyz"));
    expect(response.status).toBe(503);
    expect(await response.text()).toBe("[-]initial-sync failed: 12 of 40 machines queued\nreadyz check failed\n");

    response = await fetch(s.url("/readyz?verbose"));
    expect(response.status).toBe(503);
    expect(await response.text()).toBe(
      "[+]watcher ok\n[-]initial-sync failed: 12 of 40 machines queued\nreadyz check failed\n",
    );

    s.health.ready = [
      { name: "watcher", ok: true },
      { name: "initial-sync", ok: true },
    ];
    response = await fetch(s.url("/readyz"));
    expect([response.status, await response.text()]).toEqual([200, "ok\n"]);
    response = await fetch(s.url("/readyz?verbose"));
    expect([response.status, await response.text()]).toEqual([
      200,
      "[+]watcher ok\n[+]initial-sync ok\nreadyz check passed\n",
    ]);
  });

  it("answers 503 and logs when the health source itself throws", async () => {
    const s = await start({
      liveness: () => [],
      readiness: () => {
        throw new Error("controller not wired");
      },
    });
    const response = await fetch(s.url("/readyz"));
    expect(response.status).toBe(503);
    expect(await response.text()).toContain("[-]health-source failed: controller not wired");
    expect(s.logs.some((l) => l.msg === "health source failed" && l.level === 50)).toBe(true);
  });

  it("answers 500 and logs when rendering the metrics fails", async () => {
    const s = await start();
    s.metrics.trackInFlight(() => {
      throw new Error("queue gone");
    });
    const response = await fetch(s.url("/metrics"));
    expect(response.status).toBe(500);
    expect(await response.text()).toContain("queue gone");
    expect(s.logs.some((l) => l.msg === "metrics request failed" && l.path === "/metrics")).toBe(true);
  });

  it("serves a landing page linking the endpoints and listing machines, HTML-escaped", async () => {
    const s = await start();
    s.metrics.setMachine("web-1", "running", true, false);
    s.metrics.setMachine("<script>alert('x')</script>&", "invalid", false);
    const response = await fetch(s.url("/"));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await response.text();
    expect(html).toContain("<title>arcbox-controller</title>");
    for (const link of ['href="metrics"', 'href="healthz"', 'href="readyz?verbose"']) expect(html).toContain(link);
    expect(html).toContain('<tr class="attention"><td>web-1</td><td>running</td><td>no</td><td>yes</td></tr>');
    expect(html).toContain(
      '<tr class="invalid"><td>&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;&#38;</td><td>invalid</td><td>—</td><td>no</td></tr>',
    );
    expect(html).not.toContain("<script>");
    expect(html).toContain("1.2.3-test");
    // No activity record and no daemon liveness: neither is mentioned, and /activity does not exist.
    expect(html).not.toContain("Recent activity");
    expect(html).not.toContain("arcbox daemon");
    expect((await fetch(s.url("/activity"))).status).toBe(404);
  });

  it("serves the activity record as JSON at /activity and on the page, newest first; shows the daemon's status", async () => {
    const activity = new ActivityLog();
    server = await startTestServer({ activity, daemonLiveness: true });
    const s = server;
    expect(await (await fetch(s.url("/"))).text()).toContain("arcbox daemon: <strong>not probed yet</strong>");
    activity.record({ kind: "recovered", machine: "web", reason: "daemon is down", hooks: ["10-net"], duration_ms: 5 });
    activity.record({ kind: "failed", machine: "db", attempt: 1, retry_in_ms: 100, err: "hook failed", hook: "10-net", exit_code: 1 });
    s.metrics.daemonUp(false);

    const response = await fetch(s.url("/activity"));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const body = (await response.json()) as { capacity: number; recorded: number; events: Array<Record<string, unknown>> };
    expect(body).toMatchObject({ capacity: 300, recorded: 2 });
    expect(body.events.map((e) => [e.seq, e.kind, e.machine])).toEqual([
      [2, "failed", "db"],
      [1, "recovered", "web"],
    ]);
    expect(body.events[0]).toMatchObject({ hook: "10-net", exit_code: 1, attempt: 1, retry_in_ms: 100 });
    expect(typeof body.events[0]!.time).toBe("string");

    const html = await (await fetch(s.url("/"))).text();
    expect(html).toContain("arcbox daemon: <strong>down</strong>");
    expect(html.indexOf('data-machine="db"')).toBeGreaterThan(html.indexOf("<h2>Recent activity</h2>"));
    expect(html.indexOf('data-machine="db"')).toBeLessThan(html.indexOf('data-machine="web"'));
    expect((await rawRequest(s.url("/activity"), "POST")).status).toBe(405);
  });

  it("answers 404 for unknown paths and 405 with Allow for other methods", async () => {
    const s = await start();
    for (const path of ["/nope", "/metrics/", "/healthz/x"]) {
      const response = await fetch(s.url(path));
      expect(response.status, path).toBe(404);
      await response.text();
    }
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      const response = await rawRequest(s.url("/metrics"), method);
      expect(response.status, method).toBe(405);
      expect(response.headers.allow).toBe("GET, HEAD");
    }
    expect((await rawRequest(s.url("/"), "POST")).status).toBe(405);
  });

  it("rejects a malformed listen address and a port in use with errors naming the address", async () => {
    const s = await start();
    const { logger } = captureLogger();
    const metrics = s.metrics;
    const health: HealthSource = { liveness: () => [], readiness: () => [] };
    await expect(startMetricsServer({ listen: "localhost", metrics, health, logger })).rejects.toThrow(ListenAddressError);
    const inUse = startMetricsServer({ listen: s.server.address, metrics, health, logger });
    await expect(inUse).rejects.toThrow(MetricsServerError);
    await expect(inUse).rejects.toThrow(new RegExp(`"${s.server.address}": EADDRINUSE`));
  });

  it("close() resolves with an idle keep-alive connection open, then refuses connections", async () => {
    const s = await start();
    const agent = new Agent({ keepAlive: true });
    try {
      const first = await rawRequest(s.url("/healthz"), "GET", agent);
      expect(first.status).toBe(200);
      expect(first.headers.connection).toBe("keep-alive");
      await s.close();
      await expect(fetch(s.url("/healthz"))).rejects.toThrow();
      // close() is idempotent.
      await s.close();
    } finally {
      agent.destroy();
    }
    server = undefined;
  });
});

describe("metrics HTTP server: one render for concurrent scrapes", () => {
  it("renders once for the scrapes that arrive while a render is in flight, and anew for a scrape after it", async () => {
    const s = await start();
    const renders = vi.spyOn(s.metrics, "metricsBody");
    // The render waits, in a collect callback, until every scrape has reached the server. A scrape
    // reads the content type just before it asks for the body: that read says it has arrived.
    const arrived = vi.spyOn(s.metrics, "contentType", "get");
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    new Gauge({
      name: "test_held_collect",
      help: "A collect held until the test lets it finish.",
      registers: [s.metrics.registry],
      collect: () => held,
    });
    const scrape = async (): Promise<[number, string]> => {
      const response = await fetch(s.url("/metrics"));
      return [response.status, await response.text()];
    };
    const scrapes = Array.from({ length: 5 }, scrape);
    await waitFor(() => arrived.mock.calls.length === 5, "every scrape to reach the server");
    release();
    const answers = await Promise.all(scrapes);
    expect(answers.map(([status]) => status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(answers.map(([, body]) => body)).size).toBe(1);
    expect(renders).toHaveBeenCalledTimes(1);

    // Nothing is served from a render that has finished: a change after it shows at once.
    s.metrics.setMachine("web", "running", false);
    expect(await s.scrapeText()).toContain('arcbox_machine_state{machine="web",state="running"} 1');
    expect(renders).toHaveBeenCalledTimes(2);
  });
});

describe("metrics HTTP server under hostile clients (real sockets)", () => {
  it("answers 400 to request targets that are no URL, and goes on serving", async () => {
    const s = await start();
    for (const target of ["http://[", "*", "ftp://x/metrics", "http://%zz/"]) {
      const { response } = await exchange(s.server.address, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(statusOf(response), target).toBe(400);
      expect(response).toContain("400 bad request target");
    }
    // Origin-form targets stay paths: `//metrics` names no host.
    expect(statusOf((await exchange(s.server.address, "GET //metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).response)).toBe(404);
    // Absolute-form is valid HTTP/1.1.
    expect(statusOf((await exchange(s.server.address, "GET http://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).response)).toBe(200);
    expect((await fetch(s.url("/metrics"))).status).toBe(200);
    expect(s.logs.filter((l) => l.level >= 50)).toEqual([]);
  });

  it("close() drops a half-sent request at once instead of waiting for the client", async () => {
    const s = await start();
    const half = await openSocket(s.server.address);
    const closedByServer = socketClosed(half);
    half.write("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    // A bound far longer than the test may run: only dropping the connection lets close() resolve.
    await s.server.close(3_600_000);
    await closedByServer;
    server = undefined;
  });

  it("close() destroys a connection whose answer never comes once the bound given passes", async () => {
    const s = await start();
    let collecting: () => void = () => undefined;
    const scrapeStarted = new Promise<void>((resolve) => (collecting = resolve));
    new Gauge({
      name: "test_never_collected",
      help: "A collect that never finishes, standing in for a stuck handler.",
      registers: [s.metrics.registry],
      collect: () => {
        collecting();
        return new Promise<void>(() => undefined);
      },
    });
    const stuck = exchange(s.server.address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    await scrapeStarted;
    await s.server.close(200);
    const { response } = await stuck;
    expect(response).toBe("");
    server = undefined;
  });

  it("answers pipelined requests one after another, in order", async () => {
    const s = await start();
    const requests = ["GET /healthz", "HEAD /metrics", "GET /nope", "GET /metrics"].map((line) => `${line} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const last = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const { response } = await exchange(s.server.address, requests.join("") + last);
    expect(response.match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 404", "HTTP/1.1 200", "HTTP/1.1 200"]);
  });

  it("closes a connection that pipelines more requests than may wait, rendering at most one answer for it", async () => {
    const s = await start();
    const renders = vi.spyOn(s.metrics, "metricsBody");
    const flood = await openSocket(s.server.address);
    flood.on("error", () => undefined);
    // About 61 KB of scrapes at once, never read.
    flood.write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1_800));
    await waitFor(() => flood.closed, "the server to close the flooding connection");
    expect(renders.mock.calls.length).toBeLessThanOrEqual(1);
    expect((await fetch(s.url("/metrics"))).status).toBe(200);
  });

  it("answers a scrape and /healthz while every answer slot is held by a client that does not read", async () => {
    const s = await start();
    // A body far larger than what socket buffers take in, so that an unread answer stays unflushed.
    const bodyBytes = 8 * 1024 * 1024;
    new Gauge({ name: "test_large", help: "x".repeat(bodyBytes), registers: [s.metrics.registry] });
    const stalled = await Promise.all(
      Array.from({ length: SERVER_LIMITS.maxAnswersInFlight }, async () => {
        const socket = await openSocket(s.server.address);
        socket.on("error", () => undefined);
        const answered = new Promise<void>((resolve) =>
          socket.once("data", () => {
            socket.pause();
            resolve();
          }),
        );
        socket.write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        await answered;
        return socket;
      }),
    );
    try {
      expect((await fetch(s.url("/healthz"))).status).toBe(200);
      const response = await fetch(s.url("/metrics"));
      expect(response.status).toBe(200);
      expect((await response.text()).length).toBeGreaterThan(bodyBytes);
    } finally {
      for (const socket of stalled) socket.destroy();
    }
  });

  it("1,000 idle connections neither stop it serving nor hold close()", async () => {
    const s = await start();
    const idle = await openIdleConnections(s.server.address, 1000);
    try {
      expect((await fetch(s.url("/healthz"))).status).toBe(200);
      expect((await fetch(s.url("/metrics"))).status).toBe(200);
      const allClosed = Promise.all(idle.map(socketClosed));
      await s.server.close(3_600_000);
      await allClosed;
    } finally {
      for (const socket of idle) socket.destroy();
    }
    server = undefined;
  });
});

