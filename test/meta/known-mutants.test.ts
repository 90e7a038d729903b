/**
 * The known-mutant list (scripts/known-mutants.mjs) stays meaningful: every mutation's text is
 * still found exactly once where it says, so a refactor cannot turn one into a no-op.
 * Running the mutants themselves takes about 15 minutes: `node scripts/known-mutants.mjs`.
 */
import { spawnSync } from "node:child_process";
import { expect, it } from "vitest";
import { repoRoot } from "../support/cli.js";

it("every known mutation still finds its line", () => {
  const r = spawnSync(process.execPath, ["scripts/known-mutants.mjs", "--check"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
});
