import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";

/** The bounds an Admission enforces (the metrics server's are SERVER_LIMITS). */
export interface AdmissionLimits {
  /** Open connections. */
  readonly maxConnections: number;
  /** Answers holding a slot, server-wide: being prepared, or written and not yet flushed to the kernel. */
  readonly maxAnswersInFlight: number;
  /** Requests parsed and waiting on one connection behind the one being answered. */
  readonly maxPipelinedRequests: number;
}

/** One request's turn to be answered on its connection. */
export interface Turn {
  /**
   * Waits for one of the server-wide answer slots, held until the response is flushed or its
   * connection closes. Resolves false when the connection closed first: there is nobody to answer.
   */
  slot(): Promise<boolean>;
}

interface Answer {
  readonly res: ServerResponse;
  /**
   * Since when it has waited on others, on the admission's clock: from its start, and anew from the
   * grant of its slot (a slot holder blocks only once its response is written, right after).
   */
  since: number;
  slot: "none" | "waiting" | "held" | "done";
  grant?: (granted: boolean) => void;
}

interface Connection {
  readonly socket: Duplex;
  /** The request being answered: its turn lasts until its response has been flushed (or is gone). */
  answer: Answer | undefined;
  /** Requests parsed behind it, oldest first, each starting its turn when called. */
  readonly queued: Array<() => void>;
  /** When it last had nothing to answer, on the admission's clock. */
  idleSince: number;
}

/**
 * What the clients of one HTTP server may make it hold. Per connection, one request is answered
 * at a time, and the next one only once the previous response has been flushed to the kernel: a
 * client that does not read holds one rendered response, never a backlog. Server-wide, answers
 * that need a slot (see Turn) are capped, and so are open connections. Clients that hold places
 * without using them give them up first: at the connection cap, the connection idle longest is
 * closed, else the one blocked longest (waiting for a slot, or for its client to read); at the slot
 * cap, the holder whose client has left its answer unread longest.
 */
export class Admission {
  readonly #limits: AdmissionLimits;
  readonly #connections = new Map<Duplex, Connection>();
  /** Answers waiting for a slot, first come first served. */
  readonly #waiting: Answer[] = [];
  #slotsHeld = 0;
  #clock = 0;

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  /**
   * Takes a new connection and says whether it was taken. At maxConnections it first closes the
   * connection idle longest, else the one blocked longest; when every connection is busy preparing
   * an answer, it closes the new one instead and returns false.
   */
  admit(socket: Duplex): boolean {
    if (this.#connections.size >= this.#limits.maxConnections) {
      const victim = this.#longestIdle() ?? this.#longestBlocked(() => true);
      if (victim === undefined) {
        socket.destroy();
        return false;
      }
      this.#drop(victim);
    }
    const connection: Connection = { socket, answer: undefined, queued: [], idleSince: ++this.#clock };
    this.#connections.set(socket, connection);
    socket.once("close", () => {
      if (this.#connections.get(socket) === connection) this.#connections.delete(socket);
      this.#forget(connection);
    });
    return true;
  }

  /**
   * Calls `answer` for the request whose response is `res` once every earlier request on `socket`
   * has been answered and flushed; the turn ends when `res` closes. Closes the connection instead
   * when maxPipelinedRequests already wait on it. Ignores a request whose connection was closed
   * (requests the parser read in the same chunk still arrive then).
   */
  schedule(socket: Duplex, res: ServerResponse, answer: (turn: Turn) => void): void {
    const connection = this.#connections.get(socket);
    if (connection === undefined || socket.destroyed) return;
    const start = (): void => {
      const current: Answer = { res, since: ++this.#clock, slot: "none" };
      connection.answer = current;
      res.once("close", () => this.#finish(connection, current));
      answer({ slot: () => this.#acquire(current) });
    };
    if (connection.answer === undefined) start();
    else if (connection.queued.length < this.#limits.maxPipelinedRequests) connection.queued.push(start);
    else this.#drop(connection);
  }

  /** Closes every connection that has nothing being answered (idle, or still sending a request). */
  closeIdle(): void {
    for (const connection of [...this.#connections.values()]) if (connection.answer === undefined) this.#drop(connection);
  }

  /** Closes every connection. */
  closeAll(): void {
    for (const connection of [...this.#connections.values()]) this.#drop(connection);
  }

  async #acquire(answer: Answer): Promise<boolean> {
    await this.#grant(answer);
    // Resolved on the event loop's next turn: the parser is done with what it was handed (a connection
    // closed for too many requests at once gets nothing rendered), and answers that follow one another
    // (slots passed on, pipelined requests) leave room between them for new connections to be read.
    await nextTurn();
    return answer.slot === "held";
  }

  #grant(answer: Answer): Promise<boolean> | undefined {
    if (answer.slot !== "none") return undefined;
    if (this.#slotsHeld < this.#limits.maxAnswersInFlight) {
      this.#slotsHeld++;
      answer.slot = "held";
      answer.since = ++this.#clock;
      return undefined;
    }
    const granted = new Promise<boolean>((resolve) => (answer.grant = resolve));
    answer.slot = "waiting";
    this.#waiting.push(answer);
    // A slot held by a client that does not read is taken back for one that asks.
    const stalled = this.#longestBlocked((held) => held.slot === "held");
    if (stalled !== undefined) this.#drop(stalled);
    return granted;
  }

  /** Ends the turn of `answer`: frees its slot, then starts the next request on its connection. */
  #finish(connection: Connection, answer: Answer): void {
    if (connection.answer !== answer) return;
    connection.answer = undefined;
    connection.idleSince = ++this.#clock;
    this.#release(answer);
    const next = connection.queued.shift();
    if (next === undefined) return;
    // A connection closing (Connection: close, close() of the server) answers nothing more.
    if (connection.socket.writable) next();
    else connection.queued.length = 0;
  }

  #release(answer: Answer): void {
    if (answer.slot === "waiting") {
      this.#waiting.splice(this.#waiting.indexOf(answer), 1);
      answer.grant?.(false);
    } else if (answer.slot === "held") {
      const next = this.#waiting.shift();
      if (next === undefined) this.#slotsHeld--;
      else {
        next.slot = "held";
        next.since = ++this.#clock;
        next.grant?.(true);
      }
    }
    answer.slot = "done";
  }

  /** Closes a connection now, ending its turn and dropping what waits behind it. */
  #drop(connection: Connection): void {
    if (this.#connections.get(connection.socket) === connection) this.#connections.delete(connection.socket);
    connection.socket.destroy();
    this.#forget(connection);
  }

  #forget(connection: Connection): void {
    connection.queued.length = 0;
    if (connection.answer !== undefined) this.#finish(connection, connection.answer);
  }

  #longestIdle(): Connection | undefined {
    let oldest: Connection | undefined;
    for (const connection of this.#connections.values()) {
      if (connection.answer === undefined && (oldest === undefined || connection.idleSince < oldest.idleSince)) oldest = connection;
    }
    return oldest;
  }

  /**
   * The connection whose answer (matching `which`) has been blocked longest: waiting for a slot,
   * or written and not yet flushed because its client does not read.
   */
  #longestBlocked(which: (answer: Answer) => boolean): Connection | undefined {
    let oldest: { connection: Connection; since: number } | undefined;
    for (const connection of this.#connections.values()) {
      const answer = connection.answer;
      if (answer === undefined || !which(answer) || !isBlocked(answer)) continue;
      if (oldest === undefined || answer.since < oldest.since) oldest = { connection, since: answer.since };
    }
    return oldest?.connection;
  }
}

function isBlocked(answer: Answer): boolean {
  return answer.slot === "waiting" || (answer.res.writableEnded && !answer.res.writableFinished);
}
