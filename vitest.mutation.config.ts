import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";

// The tests that exercise the mutated modules in-process. Tests of the built CLI (test/e2e) run
// dist/, which a mutant of src/ does not reach, so they are left out here.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ["test/store/**/*.test.ts", "test/controller/**/*.test.ts", "test/host/**/*.test.ts"],
  },
});
