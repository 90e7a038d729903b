import tseslint from "typescript-eslint";

/** Stages other code reaches only through their `index.ts` (or `pure.ts`, their part without I/O). */
const stages = [
  "archive",
  "audit",
  "clock",
  "config",
  "divergence",
  "link",
  "node",
  "protocol",
  "reader",
  "runtime",
  "shipper",
  "store",
  "wal",
];
const throughIndex = stages.map((s) => ({
  group: [
    `../${s}/*`,
    `../../${s}/*`,
    `!../${s}/index.js`,
    `!../${s}/pure.js`,
    `!../../${s}/index.js`,
    `!../../${s}/pure.js`,
  ],
  message: `Reach src/${s} through its index.ts (or pure.ts); ARCHITECTURE.md, "Who may touch what".`,
}));

/** Modules that must stay pure: no file, socket, database or process. */
const pureFiles = [
  "src/clock/**/*.ts",
  "src/protocol/**/*.ts",
  "src/store/merge.ts",
  "src/store/digest.ts",
  "src/store/digest-tree.ts",
  "src/store/pure.ts",
  "src/node/fellow-memory.ts",
  "src/divergence/classify.ts",
  "src/divergence/reconcile.ts",
  "src/config/policy.ts",
  "src/wal/record.ts",
  "src/wal/crc32.ts",
  "src/wal/segment.ts",
  "src/wal/tail-plan.ts",
  "src/wal/pure.ts",
  "src/link/types.ts",
  "src/archive/keys.ts",
  "src/errors.ts",
  "src/limits.ts",
];
const ioModules = [
  "fs",
  "node:fs",
  "node:fs/promises",
  "node:net",
  "node:http",
  "node:https",
  "node:child_process",
  "node:worker_threads",
  "undici",
  "better-sqlite3",
  "fastify",
  "pg",
  "@aws-sdk/client-s3",
];
const ioStages = ["wal", "store", "node", "shipper", "reader", "audit", "link", "divergence"].map((s) => ({
  group: [`../${s}/index.js`],
  message: `A pure module imports src/${s}/pure.js (or types only), never its index, which loads I/O.`,
  allowTypeImports: true,
}));

const cryptoRandom = {
  name: "node:crypto",
  importNames: ["randomBytes", "randomUUID", "randomInt"],
  message: "Use the injected Runtime (src/runtime): randomBytes().",
};

/** Engine code reaches time, timers and randomness only through src/runtime (the simulator's seam). */
const runtimeOnly = {
  "no-restricted-properties": [
    "error",
    { object: "Date", property: "now", message: "Use the injected Runtime (src/runtime): nowMs()." },
    { object: "Math", property: "random", message: "Use the injected Runtime (src/runtime): random()." },
    { object: "performance", property: "now", message: "Use the injected Runtime (src/runtime): monoMs()." },
    {
      object: "AbortSignal",
      property: "timeout",
      message: "Use timeoutSignal(runtime, ms) from src/runtime.",
    },
    {
      object: "AbortSignal",
      property: "any",
      message: "Use anySignal() from src/runtime (AbortSignal.any leaks from long-lived signals in Node 20).",
    },
  ],
  "no-restricted-syntax": [
    "error",
    {
      selector: "NewExpression[callee.name='Date'][arguments.length=0]",
      message: "Use the injected Runtime (src/runtime): new Date(runtime.nowMs()).",
    },
  ],
  "no-restricted-globals": [
    "error",
    ...["setTimeout", "setInterval", "setImmediate"].map((name) => ({
      name,
      message: "Use the injected Runtime (src/runtime): after(), every(), soon().",
    })),
  ],
};

export default tseslint.config(
  {
    ignores: [
      "dist/**",
      "node_modules/**",
      "bench/results/**",
      "coverage/**",
      ".stryker-tmp/**",
      "reports/**",
    ],
  },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-syntax": [
        "error",
        {
          selector:
            "CallExpression[callee.object.name=/^(it|test|describe)$/][callee.property.name=/^(skip|only|todo)$/]",
          message: "No skipped or focused tests.",
        },
      ],
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: ["src/**/*.test.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: throughIndex }] },
  },
  // Every store call is asynchronous (a network store implements the same interfaces): a
  // promise left unawaited would read a Promise as a value or lose an error.
  {
    files: ["src/**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: [
      "src/**/*.test.ts",
      "src/runtime/**",
      "src/cli/**",
      "src/bench/**",
      "src/launch/**",
      "src/faults/**",
      "src/util/process.ts",
      "src/store/checkpointer.ts",
      "src/sim/**",
    ],
    rules: {
      ...runtimeOnly,
      "no-restricted-imports": [
        "error",
        {
          paths: [cryptoRandom],
          patterns: throughIndex,
        },
      ],
    },
  },
  {
    files: pureFiles,
    ignores: ["src/**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [
            ...ioModules.map((name) => ({ name, message: "A pure module does no I/O (ARCHITECTURE.md)." })),
            cryptoRandom,
          ],
          patterns: [...throughIndex, ...ioStages],
        },
      ],
    },
  },
);
