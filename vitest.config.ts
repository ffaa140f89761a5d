import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The long suite runs on its own: npm run test:long (vitest.long.config.ts).
    exclude: [...configDefaults.exclude, "test/long/**"],
    // Tests spawn real processes and touch real files; the host has two cores.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
