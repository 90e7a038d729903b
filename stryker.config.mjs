/**
 * Mutation testing of the engine's core (`npm run mutate`): which lines no test guards.
 * Results: reports/mutation/ (html, json); the summary and the survivors' reasons in
 * bench/results/mutation.md.
 */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.stryker.config.ts" },
  mutate: [
    "src/wal/**/*.ts",
    "src/store/**/*.ts",
    "src/reader/**/*.ts",
    "src/shipper/**/*.ts",
    "src/divergence/**/*.ts",
    "src/clock/**/*.ts",
    "src/protocol/**/*.ts",
    "!src/**/*.test.ts",
    "!src/**/index.ts",
    "!src/**/pure.ts",
    // A worker thread (not loaded in process) and the `crr wal inspect` report.
    "!src/store/checkpointer.ts",
    "!src/wal/inspect.ts",
  ],
  coverageAnalysis: "perTest",
  ignoreStatic: true,
  concurrency: 2,
  timeoutMS: 60_000,
  reporters: ["clear-text", "progress", "json", "html"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
};
