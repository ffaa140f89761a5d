/**
 * The process and Node.js metrics beside the controller's own: prom-client's default collectors,
 * each registered on its own, minus those whose cost grows with the controller's size or that are
 * not worth their cost per scrape, and the event-loop delay from a collector of ours.
 *
 * Left out, and why:
 * - `nodejs_active_handles`, `nodejs_active_requests`, `nodejs_active_resources` (and their `_total`
 *   forms): they walk every libuv handle and request at each scrape, and every watched directory is
 *   one; at 10,000 machines a scrape spent tens of milliseconds on them.
 * - `nodejs_eventloop_lag_mean_seconds` and `nodejs_eventloop_lag_stddev_seconds`: Node computes each
 *   by walking the whole delay histogram (about 0.05 and 0.2 ms per scrape, a quarter of the
 *   registry's time). The percentiles, minimum and maximum stay, and show the spread as well.
 */
import { createRequire } from "node:module";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Gauge, type Registry } from "prom-client";

/** prom-client's collectors kept, as named in its `lib/metrics/` (the defaults minus those above). */
const KEPT_DEFAULT_COLLECTORS = [
  "processCpuTotal",
  "processStartTime",
  "osMemoryHeap",
  "processOpenFileDescriptors",
  "processMaxFileDescriptors",
  "heapSizeAndUsed",
  "heapSpacesSizeAndUsed",
  "version",
  "gc",
] as const;

/** Names prom-client's `collectDefaultMetrics` would register that these metrics leave out. */
export const OMITTED_DEFAULT_METRICS = [
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "nodejs_eventloop_lag_mean_seconds",
  "nodejs_eventloop_lag_stddev_seconds",
] as const;

type DefaultCollector = (registry: Registry, config: Record<string, unknown>) => void;
const require = createRequire(import.meta.url);

/**
 * Registers the process and Node.js metrics in `registry`. `eventLoopSampleMs` is how often the
 * event-loop delay is sampled. Throws only if a name is already registered (a programming error).
 */
export function registerNodeMetrics(registry: Registry, options: { eventLoopSampleMs: number }): void {
  for (const name of KEPT_DEFAULT_COLLECTORS) {
    // prom-client exports only `collectDefaultMetrics`, which has no way to leave a collector out;
    // each collector is a module of its own with this signature.
    (require(`prom-client/lib/metrics/${name}`) as DefaultCollector)(registry, {});
  }
  registerEventLoopDelay(registry, options.eventLoopSampleMs);
}

/**
 * `nodejs_eventloop_lag_seconds` (the lag of one turn of the loop, measured at the previous scrape,
 * as prom-client measures it) and the minimum, maximum and percentiles of the delays sampled since
 * the previous scrape, in prom-client's names. Node's histogram counts each sample's delay from the
 * previous sample, so it includes the sampling interval; that is taken off, and an idle loop shows 0.
 */
function registerEventLoopDelay(registry: Registry, sampleMs: number): void {
  const histogram = monitorEventLoopDelay({ resolution: sampleMs });
  histogram.enable();
  const registers = [registry];
  const seconds = (nanoseconds: number) => Math.max(0, nanoseconds / 1e9 - sampleMs / 1e3);
  // Registered first: prom-client reads the families in registration order, and this one's collect
  // sets the others.
  new Gauge({
    name: "nodejs_eventloop_lag_seconds",
    help: "Lag of event loop in seconds.",
    registers,
    collect() {
      const start = process.hrtime.bigint();
      setImmediate(() => this.set(Number(process.hrtime.bigint() - start) / 1e9));
      // With no sample since the last reset Node reports nonsense (min 2^63 - 1): the last values stay.
      if (histogram.count > 0) {
        min.set(seconds(histogram.min));
        max.set(seconds(histogram.max));
        for (const { p, gauge: g } of percentiles) g.set(seconds(histogram.percentile(p)));
      }
      histogram.reset();
    },
  });
  const gauge = (name: string, help: string) => new Gauge({ name: `nodejs_eventloop_lag_${name}_seconds`, help, registers });
  const min = gauge("min", "The minimum event loop delay sampled since the last scrape.");
  const max = gauge("max", "The maximum event loop delay sampled since the last scrape.");
  const percentiles = ([50, 90, 99] as const).map((p) => ({
    p,
    gauge: gauge(`p${p}`, `The ${p}th percentile of the event loop delays sampled since the last scrape.`),
  }));
}
