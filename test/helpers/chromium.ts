/**
 * A real headless Chromium (Debian's package) driven over the DevTools protocol on a pipe
 * (`--remote-debugging-pipe`: commands on fd 3, answers and events on fd 4, each message a JSON
 * object ended by a NUL byte), so a test can load a page, query its rendered DOM and take a
 * screenshot with no browser download and no driver package.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import type { TestContext } from "vitest";
import { findTool } from "./prometheus.js";

/** The environment variable that turns a missing Chromium into a failure (CI sets it). */
export const REQUIRE_CHROMIUM_ENV = "ARCBOX_REQUIRE_CHROMIUM";

/**
 * Flags for a closed network and a throw-away profile: no sandbox (CI runs as root), no GPU, and
 * nothing that phones home (QUIC, first-run, background networking, component updates, sync).
 */
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--hide-scrollbars",
  "--remote-debugging-pipe",
];

/** The Chromium executable: `ARCBOX_CHROMIUM`, else `chromium` on PATH; undefined when there is none. */
export function findChromium(): string | undefined {
  return process.env.ARCBOX_CHROMIUM || findTool("chromium");
}

/**
 * The Chromium to test with. Without one, the test fails when ARCBOX_REQUIRE_CHROMIUM=1 and is
 * reported as skipped (with the reason) otherwise.
 */
export function chromiumOrSkip(context: TestContext): string {
  const chromium = findChromium();
  if (chromium !== undefined) return chromium;
  const reason = "chromium is not installed (apt-get install chromium), so the page was not checked in a browser";
  if (process.env[REQUIRE_CHROMIUM_ENV] === "1") throw new Error(`${reason}; ${REQUIRE_CHROMIUM_ENV}=1 requires it`);
  console.warn(`SKIPPED: ${reason} (set ${REQUIRE_CHROMIUM_ENV}=1 to make this a failure)`);
  return context.skip(reason);
}

interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

/** A page in a running browser. */
export interface BrowserPage {
  /** Loads `url` and resolves once its load event fired. */
  goto(url: string): Promise<void>;
  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the whole page, `width` CSS pixels wide. */
  screenshot(width: number): Promise<Buffer>;
}

/** A headless Chromium with one page; `close()` ends it and removes its profile. */
export interface Browser {
  page: BrowserPage;
  close(): Promise<void>;
}

/** Starts `executable` headless with a fresh profile and opens a blank page. Rejects if it exits first. */
export async function launchChromium(executable: string): Promise<Browser> {
  const profile = await mkdtemp(path.join(os.tmpdir(), "arcbox-chromium-"));
  const child: ChildProcess = spawn(executable, [...FLAGS, `--user-data-dir=${profile}`, "about:blank"], {
    stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk.slice(0, 20_000)));
  const exited = once(child, "exit");
  const commands = child.stdio[3] as Writable;
  const answers = child.stdio[4] as Readable;

  let nextId = 1;
  const pending = new Map<number, { resolve: (result: Record<string, unknown>) => void; reject: (error: Error) => void }>();
  const listeners: Array<(message: Message) => void> = [];
  let buffered = Buffer.alloc(0);
  answers.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (let end = buffered.indexOf(0); end >= 0; end = buffered.indexOf(0)) {
      const message = JSON.parse(buffered.subarray(0, end).toString("utf8")) as Message;
      buffered = buffered.subarray(end + 1);
      if (message.id !== undefined) {
        const call = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) call?.reject(new Error(`chromium: ${message.error.message}`));
        else call?.resolve(message.result ?? {});
      } else {
        for (const listener of [...listeners]) listener(message);
      }
    }
  });
  void exited.then(() => {
    for (const call of pending.values()) call.reject(new Error(`chromium exited: ${stderr}`));
    pending.clear();
  });

  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      commands.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  const nextEvent = (method: string, sessionId: string): Promise<Message> =>
    new Promise((resolve) => {
      const listener = (message: Message): void => {
        if (message.method !== method || message.sessionId !== sessionId) return;
        listeners.splice(listeners.indexOf(listener), 1);
        resolve(message);
      };
      listeners.push(listener);
    });

  const { targetId } = (await send("Target.createTarget", { url: "about:blank" })) as { targetId: string };
  const { sessionId } = (await send("Target.attachToTarget", { targetId, flatten: true })) as { sessionId: string };
  await send("Page.enable", {}, sessionId);

  const page: BrowserPage = {
    async goto(url) {
      const loaded = nextEvent("Page.loadEventFired", sessionId);
      const { errorText } = (await send("Page.navigate", { url }, sessionId)) as { errorText?: string };
      if (errorText) throw new Error(`chromium could not load ${url}: ${errorText}`);
      await loaded;
    },
    async evaluate<T>(expression: string) {
      const { result, exceptionDetails } = (await send("Runtime.evaluate", { expression, returnByValue: true }, sessionId)) as {
        result: { value: T };
        exceptionDetails?: { text: string };
      };
      if (exceptionDetails) throw new Error(`page script failed: ${exceptionDetails.text}`);
      return result.value;
    },
    async screenshot(width) {
      // A short viewport first, so the measured height is the content's, not the window's.
      await send("Emulation.setDeviceMetricsOverride", { width, height: 100, deviceScaleFactor: 1, mobile: false }, sessionId);
      const { cssContentSize } = (await send("Page.getLayoutMetrics", {}, sessionId)) as { cssContentSize: { height: number } };
      const height = Math.ceil(cssContentSize.height);
      await send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
      const { data } = (await send("Page.captureScreenshot", { format: "png" }, sessionId)) as { data: string };
      return Buffer.from(data, "base64");
    },
  };

  return {
    page,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        await send("Browser.close").catch(() => undefined);
        const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(kill);
      }
      await rm(profile, { recursive: true, force: true });
    },
  };
}
