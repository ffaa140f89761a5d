import { collectDefaultMetrics, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { OMITTED_DEFAULT_METRICS, registerNodeMetrics } from "../../src/metrics/node-metrics.js";
import { parseExposition, valueOf } from "./exposition-parser.js";

const SAMPLE_MS = 20;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function scrape(registry: Registry) {
  return parseExposition(await registry.metrics());
}

describe("registerNodeMetrics", () => {
  it("registers every prom-client default except those left out, with prom-client's types", async () => {
    const ours = new Registry();
    registerNodeMetrics(ours, { eventLoopSampleMs: SAMPLE_MS });
    const defaults = new Registry();
    collectDefaultMetrics({ register: defaults });

    const expected = defaults
      .getMetricsAsArray()
      .map((metric) => metric.name)
      .filter((name) => !(OMITTED_DEFAULT_METRICS as readonly string[]).includes(name))
      .sort();
    expect(ours.getMetricsAsArray().map((metric) => metric.name).sort()).toEqual(expected);
    // Each omitted name is one prom-client really has: the list is not stale.
    for (const name of OMITTED_DEFAULT_METRICS) expect(defaults.getSingleMetric(name), name).toBeDefined();

    const [a, b] = [await scrape(ours), await scrape(defaults)];
    for (const name of expected) expect(a.types.get(name), name).toBe(b.types.get(name));
  });

  it("shows a blocked event loop in the maximum delay, and an idle one near 0", async () => {
    const registry = new Registry();
    registerNodeMetrics(registry, { eventLoopSampleMs: SAMPLE_MS });
    await sleep(10 * SAMPLE_MS);
    await scrape(registry); // starts a fresh window

    await sleep(10 * SAMPLE_MS);
    const idle = await scrape(registry);
    // The sampling interval is not counted as delay.
    expect(valueOf(idle, "nodejs_eventloop_lag_min_seconds")).toBeLessThan(SAMPLE_MS / 1000);

    await sleep(2 * SAMPLE_MS);
    const blockedUntil = performance.now() + 200;
    while (performance.now() < blockedUntil) {
      // the loop is blocked: the sample due now comes about 200 ms late
    }
    await sleep(3 * SAMPLE_MS);
    const blocked = await scrape(registry);
    expect(valueOf(blocked, "nodejs_eventloop_lag_max_seconds")).toBeGreaterThan(0.15);
    for (const name of ["p50", "p90", "p99"]) {
      expect(valueOf(blocked, `nodejs_eventloop_lag_${name}_seconds`)).toBeLessThanOrEqual(valueOf(blocked, "nodejs_eventloop_lag_max_seconds"));
    }

    // A window with no sample in it keeps the last values rather than Node's 2^63 - 1.
    const empty = await scrape(registry);
    expect(valueOf(empty, "nodejs_eventloop_lag_max_seconds")).toBeLessThan(1);
  });
});
