/**
 * The strict TOML 1.0 parse (toml-eslint-parser) once more, in a worker thread with a large stack,
 * for a text whose parse overflowed the caller's stack. That parser makes each string and number
 * token with `String.fromCodePoint(...codePoints)`, one argument per character, so a value of some
 * 150,000 characters or more overflows Node's default stack; 64 MB holds the arguments of a 1 MiB
 * value many times over. Parsing stays synchronous: the caller blocks until the worker has posted
 * its answer (Atomics.wait on a shared flag), then takes it from the port. The worker exits once it
 * has answered and is terminated in any case, so no thread outlives a call.
 */
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import type { AST } from "toml-eslint-parser";

/** The worker's stack. */
const STACK_SIZE_MB = 64;
/**
 * How long the caller waits. The worker parses a 1 MiB text in well under a second; this only bounds
 * one that never answers, and stays below the 10 s in which the event loop must answer health checks.
 */
const TIMEOUT_MS = 5_000;

/**
 * The worker (plain JavaScript run with `eval`, so that the same code serves the sources and the
 * build; dynamic imports only, so that it runs as a CommonJS script and as a module alike): it
 * parses, posts the program (without the token and comment lists, which nobody reads) or the
 * parser's error, or `failed` with anything else that went wrong, then raises the flag.
 */
const WORKER_SOURCE = `
import("node:worker_threads").then(async ({ workerData: { text, parser, port, flag } }) => {
  const answer = async () => {
    const { parseTOML } = await import(parser);
    try {
      const program = parseTOML(text, { tomlVersion: "1.0.0" });
      program.tokens = [];
      program.comments = [];
      return { program };
    } catch (error) {
      if (typeof error?.index !== "number") throw error;
      return { error: { message: error.message, index: error.index } };
    }
  };
  try {
    port.postMessage(await answer());
  } catch (error) {
    port.postMessage({ failed: String(error) });
  } finally {
    port.close();
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  }
});
`;

type Answer = { program: AST.TOMLProgram } | { error: { message: string; index: number } } | { failed: string };

/** The parser's own error for the text, as toml-eslint-parser throws it: a message and the index where it stopped. */
export class WorkerParseError extends Error {
  constructor(
    message: string,
    readonly index: number,
  ) {
    super(message);
  }
}

let parserUrl: string | undefined;

/**
 * Parses `text` as toml-eslint-parser's `parseTOML(text, { tomlVersion: "1.0.0" })` does, in a worker
 * thread with a 64 MB stack, blocking until it answers. Returns the program (with empty `tokens` and
 * `comments`); throws WorkerParseError (with `index`) where the parser refuses the text, and a plain
 * Error when the worker fails, cannot start or gives no answer within 5 s.
 */
export function parseTomlInWorker(text: string): AST.TOMLProgram {
  parserUrl ??= pathToFileURL(createRequire(import.meta.url).resolve("toml-eslint-parser")).href;
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  let worker: Worker | undefined;
  let answer: Answer | undefined;
  try {
    worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { text, parser: parserUrl, port: port2, flag },
      transferList: [port2],
      resourceLimits: { stackSizeMb: STACK_SIZE_MB },
      // Not the flags this process was started with (`--input-type`, loaders): plain Node.js.
      execArgv: [],
    });
    // Whatever happens to it shows as a missing answer; an 'error' event must not go unheard.
    worker.on("error", () => undefined);
    worker.unref();
    Atomics.wait(flag, 0, 0, TIMEOUT_MS);
    answer = receiveMessageOnPort(port1)?.message as Answer | undefined;
  } finally {
    port1.close();
    port2.close();
    void worker?.terminate().catch(() => undefined);
  }
  if (answer === undefined) throw new Error(`the parse in a worker thread gave no answer within ${TIMEOUT_MS / 1000} s`);
  if ("program" in answer) return answer.program;
  if ("error" in answer) throw new WorkerParseError(answer.error.message, answer.error.index);
  throw new Error(`the parse in a worker thread failed: ${answer.failed}`);
}
