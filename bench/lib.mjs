// Shared by the benchmarks: a machine config as arcbox-core's toml 0.8 writer lays it out, and
// nearest-rank percentiles of timings.

/** A valid `config.toml` for `name` in `state`. */
export const machineToml = (name, state) =>
  `name = "${name}"\ncpus = 2\nmemory_mb = 4096\ndisk_gb = 20\nblock_devices = []\nstate = "${state}"\nvm_id = "v-${name}"\ncreated_at = "2026-04-27T05:01:09.120004Z"\n`;

/** The `q` quantile (0 < q ≤ 1, nearest rank) of `times`; sorts `times` in place. */
export function percentile(times, q) {
  times.sort((a, b) => a - b);
  return times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)];
}
