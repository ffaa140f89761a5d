import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";

// The tests that exercise the mutated modules in-process. Tests of the built CLI (test/e2e, and the
// store tests that run dist/ as another user or through the CLI) run code a mutant of src/ does not
// reach, and the differential tests need arcbox-core's loader: they are left out here.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ["test/store/**/*.test.ts", "test/controller/**/*.test.ts", "test/host/**/*.test.ts"],
    exclude: [
      "test/store/arcbox-core-differential.test.ts",
      "test/store/arcbox-core-agreement.test.ts",
      "test/store/unreadable-dirs.test.ts",
      "test/store/full-disk.test.ts",
    ],
  },
});
