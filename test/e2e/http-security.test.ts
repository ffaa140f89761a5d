/**
 * Garbage HTTP against the running service (the built CLI): a malformed request target, a request
 * that never finishes, and a thousand idle connections neither crash it nor hold its shutdown; and
 * the metrics endpoint binds loopback unless told otherwise.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultConfig } from "../../src/controller/config.js";
import { isLoopbackAddress, parseListenAddress } from "../../src/metrics/listen-address.js";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { exchange, openIdleConnections, openSocket, socketClosed, statusOf } from "../helpers/raw-http.js";
import { makeTempDir, removeTempDir } from "../helpers/processes.js";

let root: string;
let config: string;
let controller: RunningController | undefined;

beforeEach(async () => {
  root = await makeTempDir("http-security");
  await mkdir(path.join(root, "machines"));
  config = path.join(root, "controller.toml");
  await writeFile(
    config,
    [`machines_dir = "${path.join(root, "machines")}"`, 'hooks_dir = ""', 'liveness = "none"', 'shutdown_timeout = "5s"', ""].join("\n"),
  );
});
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await removeTempDir(root);
});

async function start(listen = "127.0.0.1:0"): Promise<RunningController> {
  controller = await startControllerProcess(["--config", config, "--listen", listen]);
  return controller;
}

describe("the service's HTTP endpoint under hostile clients", () => {
  it("answers a malformed request target with 400 and keeps running", async () => {
    const c = await start();
    const { response } = await exchange(c.address, "GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(statusOf(response)).toBe(400);
    expect((await fetch(`http://${c.address}/healthz`)).status).toBe(200);
    expect(c.child.exitCode).toBeNull();
    expect(await c.stop()).toBe(0);
    expect(c.logs.filter((line) => line.level === "error" || line.level === "fatal")).toEqual([]);
  });

  it("shuts down on SIGTERM while a client holds a half-sent request", async () => {
    const c = await start();
    const half = await openSocket(c.address);
    const dropped = socketClosed(half);
    half.write("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    expect(await c.stop()).toBe(0);
    await dropped;
    expect(c.logs.some((line) => line.msg === "stopped")).toBe(true);
  });

  it("serves and shuts down with 1,000 idle connections open", async () => {
    const c = await start();
    const idle = await openIdleConnections(c.address, 1000);
    try {
      expect((await fetch(`http://${c.address}/healthz`)).status).toBe(200);
      expect((await fetch(`http://${c.address}/metrics`)).status).toBe(200);
      expect(c.child.exitCode).toBeNull();
      expect(await c.stop()).toBe(0);
    } finally {
      for (const socket of idle) socket.destroy();
    }
  });

  it("binds loopback by default: the default address, and a listen address without a host", async () => {
    expect(isLoopbackAddress(parseListenAddress(defaultConfig().listen).host)).toBe(true);
    const c = await start(":0");
    expect(c.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(c.logs.some((line) => line.level === "warn" && String(line.msg).includes("non-loopback"))).toBe(false);
  });
});
