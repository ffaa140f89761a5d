import { BlockList, isIP } from "node:net";

/** A `HOST:PORT` listen address that cannot be used; the message names the text and the problem. */
export class ListenAddressError extends Error {
  override readonly name = "ListenAddressError";
  constructor(
    readonly address: string,
    problem: string,
  ) {
    super(`metrics listen address "${address}": ${problem}`);
  }
}

/** A parsed listen address. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Host used when the address omits it (":9464"): loopback, so nothing is exposed by accident. */
export const DEFAULT_LISTEN_HOST = "127.0.0.1";

/**
 * Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (loopback). Port 0 asks the OS for a free port.
 * Throws ListenAddressError for a missing or out-of-range port, an unbracketed IPv6 address or
 * brackets around something that is not IPv6.
 */
export function parseListenAddress(text: string): ListenAddress {
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
  let host: string;
  let portText: string;
  if (bracketed) {
    host = bracketed[1] ?? "";
    portText = bracketed[2] ?? "";
    if (isIP(host) !== 6) throw new ListenAddressError(text, `"[${host}]" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) throw new ListenAddressError(text, 'expected "HOST:PORT", e.g. "127.0.0.1:9464"');
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":")) {
      throw new ListenAddressError(text, 'write an IPv6 host in brackets, e.g. "[::1]:9464"');
    }
    if (host === "") host = DEFAULT_LISTEN_HOST;
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new ListenAddressError(text, `port "${portText}" is not a number from 0 to 65535`);
  }
  return { host, port: Number(portText) };
}

const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("::1", "ipv6");

/** True for an IP address in 127.0.0.0/8 or ::1 (also IPv4-mapped); false for anything else. */
export function isLoopbackAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  return loopback.check(ip, family === 6 ? "ipv6" : "ipv4");
}

/** Formats host and port as `host:port`, bracketing IPv6 hosts. */
export function formatListenAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
