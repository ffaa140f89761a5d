/**
 * HTTP over raw TCP sockets, for what fetch() and node:http refuse to send: malformed request
 * targets, requests that stop half-way, connections that never say anything.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";

/** Splits `host:port` (IPv6 bracketed) into its parts. */
function hostPort(address: string): { host: string; port: number } {
  const cut = address.lastIndexOf(":");
  return { host: address.slice(0, cut).replace(/^\[|\]$/g, ""), port: Number(address.slice(cut + 1)) };
}

/** Opens a TCP connection to `address` and resolves once it is connected. */
export async function openSocket(address: string): Promise<Socket> {
  const { host, port } = hostPort(address);
  const socket = connect(port, host);
  await once(socket, "connect");
  return socket;
}

/**
 * Sends `bytes` on a new connection and resolves with everything the server sent until it closed
 * the connection, and whether it ended with a reset rather than a clean close.
 */
export async function exchange(address: string, bytes: string): Promise<{ response: string; reset: boolean }> {
  const socket = await openSocket(address);
  let response = "";
  let reset = false;
  socket.setEncoding("utf8").on("data", (chunk: string) => (response += chunk));
  socket.on("error", () => (reset = true));
  socket.write(bytes);
  await once(socket, "close");
  return { response, reset };
}

/** Resolves when `socket` has closed, whether cleanly or by a reset (which it swallows). */
export function socketClosed(socket: Socket): Promise<void> {
  socket.on("error", () => undefined);
  return new Promise((resolve) => (socket.destroyed && socket.closed ? resolve() : socket.once("close", () => resolve())));
}

/** The status line's code of a raw HTTP response (`HTTP/1.1 400 Bad Request` → 400), or NaN. */
export function statusOf(response: string): number {
  return Number(/^HTTP\/1\.[01] (\d{3}) /.exec(response)?.[1]);
}

/**
 * Opens `count` connections that send nothing, `batch` at a time (a burst of thousands would
 * overflow the listen backlog). Resolves with the sockets once all are connected.
 */
export async function openIdleConnections(address: string, count: number, batch = 100): Promise<Socket[]> {
  const sockets: Socket[] = [];
  while (sockets.length < count) {
    const n = Math.min(batch, count - sockets.length);
    sockets.push(...(await Promise.all(Array.from({ length: n }, () => openSocket(address)))));
  }
  for (const socket of sockets) socket.on("error", () => undefined);
  return sockets;
}
