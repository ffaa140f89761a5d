// Summaries of timings: nearest-rank percentiles, and the best of several runs.

/** The `q` quantile (0 < q ≤ 1, nearest rank) of `values`, without reordering them; NaN when empty. */
export function percentile(values, q) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** The median (nearest rank) of `values`. */
export const median = (values) => percentile(values, 0.5);

/** Milliseconds since `start` (a `performance.now()` reading). */
export const since = (start) => performance.now() - start;

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
