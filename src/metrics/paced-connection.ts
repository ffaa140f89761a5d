import type { Socket } from "node:net";
import { Duplex } from "node:stream";

type Done = (error?: Error | null) => void;

/**
 * A TCP connection as Node's HTTP server is given it: what the client sends is handed over at most
 * `pieceBytes` at a time. Node's parser parses every request in what it is handed and emits them all
 * before a handler can close the connection; handed a socket directly, it parses whole 64 KB reads
 * (some 1,800 pipelined requests, each with its request and response objects). Handed pieces, it
 * parses one piece at a time, and a connection closed meanwhile is handed nothing more.
 *
 * Writes go through to the socket and complete once the socket has flushed them to the kernel, so a
 * response finishes only when its client has taken it. Closing either closes both. Never throws.
 */
export class PacedConnection extends Duplex {
  readonly socket: Socket;
  readonly #pieceBytes: number;

  constructor(socket: Socket, pieceBytes: number) {
    super({ allowHalfOpen: true, writableHighWaterMark: socket.writableHighWaterMark });
    this.socket = socket;
    this.#pieceBytes = pieceBytes;
    socket.on("data", (chunk: Buffer) => this.#handOver(chunk));
    socket.on("end", () => {
      if (!this.destroyed) this.push(null);
    });
    socket.on("timeout", () => this.emit("timeout"));
    socket.on("error", (error) => this.destroy(error));
    socket.on("close", () => this.destroy());
  }

  /** Sets the socket's idle timeout; `timeout` is emitted here (Node's server sets and listens for it). */
  setTimeout(ms: number): this {
    this.socket.setTimeout(ms);
    return this;
  }

  /** Ends the connection and closes it once flushed, as net.Socket's does (Node's server calls it after a last answer). */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once("finish", () => this.destroy());
  }

  #handOver(chunk: Buffer): void {
    for (let start = 0; start < chunk.length && !this.destroyed; start += this.#pieceBytes) {
      // Every piece is kept (a paused parser gets it later); the socket stops reading meanwhile.
      if (!this.push(chunk.subarray(start, start + this.#pieceBytes))) this.socket.pause();
    }
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, done: Done): void {
    this.socket.write(chunk, encoding, done);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, done: Done): void {
    this.socket.cork();
    chunks.forEach(({ chunk, encoding }, index) => {
      // The last write's callback comes once all of them have been flushed.
      this.socket.write(chunk, encoding, index === chunks.length - 1 ? done : undefined);
    });
    this.socket.uncork();
  }

  override _final(done: Done): void {
    this.socket.end(done);
  }

  override _destroy(error: Error | null, done: Done): void {
    this.socket.destroy();
    done(error);
  }
}
