import { defineConfig } from "vitest/config";

// `npm run test:long`: the long crash-consistency suite (test/long), one file at a time.
export default defineConfig({
  test: {
    include: ["test/long/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 1,
    // These run for minutes; their duration is reported, not limited.
    testTimeout: 0,
    hookTimeout: 120_000,
  },
});
