/**
 * The in-process tests Stryker runs against each mutant (`npm run mutate`): the ones that
 * spawn `crr serve` run dist/, built from the unmutated source, so they cannot kill a
 * mutant; the simulator and the unit tests run the source itself.
 */
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "src/**/*.test.ts",
      "test/node/local-apply-retention.test.ts",
      "test/recovery/wal-damage.test.ts",
      "test/replication/shipper-supervision.test.ts",
      "test/shipper/*.test.ts",
      // The simulator kills what unit tests miss but costs ~10 s a mutant: CRR_MUTATE_SIM=0 leaves it out.
      ...(process.env.CRR_MUTATE_SIM === "0" ? [] : ["test/sim/*.test.ts"]),
      "test/store/*.test.ts",
      "test/wal/fixtures.test.ts",
      "test/wal/wal.test.ts",
    ],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    env: { CRR_SIM_SEEDS: "4", CRR_SIM_ACTIVE_MS: "15000" },
  },
});
