import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    globalSetup: ["test/setup/build.ts", "test/setup/postgres.ts"],
    setupFiles: ["test/setup/http.ts"],
    // Crash and multi-process tests spawn children; generous deadlines, never sleeps.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: process.env.CI ? ["default", ["json", { outputFile: "test-results.json" }]] : ["default"],
  },
});
