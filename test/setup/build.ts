/**
 * Tests that run the `crr` command use the compiled package (what `npx crr` runs after
 * `npm ci`), so build it once before the suite.
 */
import { execFileSync } from "node:child_process";

export default function setup(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    stdio: "inherit",
  });
}
