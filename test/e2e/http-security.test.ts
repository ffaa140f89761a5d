/**
 * Garbage HTTP against the running service (the built CLI): a malformed request target, a request
 * that never finishes, and a thousand idle connections neither crash it nor hold its shutdown; a
 * flood of pipelined scrapes that are never read neither fills its memory nor silences /healthz; and
 * the metrics endpoint binds loopback unless told otherwise.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultConfig } from "../../src/controller/config.js";
import { isLoopbackAddress, parseListenAddress } from "../../src/metrics/listen-address.js";
import { startControllerProcess, type RunningController } from "../helpers/cli-process.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { exchange, openIdleConnections, openSocket, socketClosed, statusOf } from "../helpers/raw-http.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

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

/** The peak resident memory of process `pid` (VmHWM), in bytes. Rejects when it has exited. */
async function peakResidentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]) * 1024;
}
const MEMORY_BOUND = 300 * 1024 * 1024;

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

  it("keeps its memory and /healthz while 100 connections each pipeline 61 KB of scrapes and never read", async () => {
    const machines = path.join(root, "machines");
    for (let i = 0; i < 2000; i++) {
      const name = `vm-${String(i).padStart(4, "0")}`;
      await writeMachine(machines, name, machineToml(name, { state: "stopped" }));
    }
    const c = await start();
    await c.ready();
    await waitFor(
      async () => (await (await fetch(`http://${c.address}/metrics`)).text()).includes('arcbox_machines{state="stopped"} 2000'),
      "all 2,000 machines in the metrics",
    );
    // The review's attack: one scrape is 132 KB here; each connection asks for 1,800 of them at once.
    const flood = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1_800);
    const attackers = await openIdleConnections(c.address, 100);
    // The contract: the service's resident memory stays under 300 MB. It runs at 125-165 MB with
    // 2,000 machines and its limits let clients add a few tens of MB, while rendering every scrape
    // asked for would pass 300 MB within seconds and 1.5 GB within a minute. Past the bound the
    // service is killed at once, so that this test cannot take the machine down with it.
    const pid = c.child.pid!;
    let peakBytes = await peakResidentBytes(pid);
    const watch = setInterval(() => {
      void peakResidentBytes(pid).then((bytes) => {
        peakBytes = Math.max(peakBytes, bytes);
        if (bytes >= MEMORY_BOUND) c.child.kill("SIGKILL");
      }, () => undefined);
    }, 100);
    const statuses: Array<number | string> = [];
    try {
      for (const socket of attackers) socket.write(flood);
      // Probed until the service has closed every attacking connection, for 20 s at most.
      const end = Date.now() + 20_000;
      do {
        const status = await fetch(`http://${c.address}/healthz`, { signal: AbortSignal.timeout(60_000) }).then(
          async (response) => {
            await response.text();
            return response.status;
          },
          (error: Error) => error.message,
        );
        statuses.push(status);
      } while (c.child.exitCode === null && c.child.signalCode === null && attackers.some((socket) => !socket.closed) && Date.now() < end);
    } finally {
      clearInterval(watch);
      for (const socket of attackers) socket.destroy();
    }
    if (c.child.signalCode === null) peakBytes = Math.max(peakBytes, await peakResidentBytes(pid));
    expect(peakBytes).toBeLessThan(MEMORY_BOUND);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(attackers.filter((socket) => !socket.closed)).toEqual([]);
    expect((await fetch(`http://${c.address}/metrics`)).status).toBe(200);
    expect(await c.stop()).toBe(0);
  }, 120_000);

  it("binds loopback by default: the default address, and a listen address without a host", async () => {
    expect(isLoopbackAddress(parseListenAddress(defaultConfig().listen).host)).toBe(true);
    const c = await start(":0");
    expect(c.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(c.logs.some((line) => line.level === "warn" && String(line.msg).includes("non-loopback"))).toBe(false);
  });
});
