// Mutation testing of the modules that guard data (`npm run test:mutation`; not in CI: it takes long).
// The score and the surviving mutants are recorded in docs/RELIABILITY.md.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutation.config.ts" },
  checkers: [],
  coverageAnalysis: "perTest",
  mutate: [
    "src/store/durable-write.ts",
    "src/store/machine-store.ts",
    // The minimal edit and its read-back (editInPlace); the rest of the codec is pinned by the differential tests.
    "src/store/toml-codec.ts:228-315",
    "src/controller/reconciler.ts",
    "src/controller/workqueue.ts",
    "src/controller/controller.ts",
    "src/host/liveness.ts",
    "src/host/daemon-probe.ts",
    "src/host/instance-lock.ts",
  ],
  concurrency: 2,
  timeoutMS: 30_000,
  reporters: ["clear-text", "progress", "json"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
};
