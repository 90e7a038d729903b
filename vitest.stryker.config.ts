/**
 * The in-process tests Stryker runs against each mutant (`npm run mutate`): the ones that
 * spawn `crr serve` run dist/, built from the unmutated source, so they cannot kill a
 * mutant; the simulator and the unit tests run the source itself.
 *
 * CRR_MUTATE_TESTS (comma-separated globs) narrows the set to one folder's tests
 * (scripts/mutate.mjs does, folder by folder); CRR_MUTATE_SIM=0 leaves the simulator out
 * (it kills what unit tests miss but costs ~10 s a mutant). A temporary PostgreSQL cluster is
 * started for the run, as for the suite.
 */
import { defineConfig } from "vitest/config";

const all = [
  "src/**/*.test.ts",
  "test/node/local-apply-retention.test.ts",
  "test/recovery/wal-damage.test.ts",
  "test/replication/shipper-supervision.test.ts",
  "test/shipper/*.test.ts",
  "test/store/*.test.ts",
  "test/wal/wal.test.ts",
  "test/wal/wal-io.test.ts",
  "test/wal/recovery.test.ts",
  ...(process.env.CRR_MUTATE_SIM === "0" ? [] : ["test/sim/*.test.ts"]),
];

const include = process.env.CRR_MUTATE_TESTS ? process.env.CRR_MUTATE_TESTS.split(",") : all;
// The tests that take a PostgreSQL server (inject("pgUrl")) live under these. A set without
// them starts no cluster: its start (~10 s) is paid again each time Stryker starts a test
// runner (at the start, and after every mutant that timed out).
const pgTests = ["test/sim/", "test/store/", "src/config/", "src/**"];
const needsPg = include.some((glob) => pgTests.some((dir) => glob.startsWith(dir)));

export default defineConfig({
  test: {
    include,
    // The simulator's PostgreSQL cases need a server (a temporary cluster, stopped by PID).
    globalSetup: needsPg ? ["test/setup/postgres.ts"] : [],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    env: { CRR_SIM_SEEDS: "4", CRR_SIM_ACTIVE_MS: "15000", CRR_SIM_PG_SEEDS: "" },
  },
});
