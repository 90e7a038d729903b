/**
 * Writes docs/openapi.json: the OpenAPI document a node serves at GET /openapi.json, built
 * from the route schemas (@fastify/swagger). A test compares a running node's document with
 * this file, so it cannot go stale.
 *
 *   npm run openapi
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseConfig } from "../src/config/index.js";
import { Region, buildServer } from "../src/node/index.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-openapi-"));
try {
  const config = parseConfig(
    {
      region: "r1",
      dataDir: dir,
      regions: { r1: { url: "http://127.0.0.1:1" } },
      crr: { enabled: false },
      auth: { peerSecret: "openapi-document-only-0123456789" },
    },
    "openapi",
    dir,
  );
  const region = await Region.open(config, { startAlone: true });
  const app = buildServer(region);
  const res = await app.inject({ method: "GET", url: "/openapi.json" });
  await app.close();
  await region.close();
  const target = path.join(import.meta.dirname, "..", "docs", "openapi.json");
  fs.writeFileSync(target, `${JSON.stringify(JSON.parse(res.body), null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), target)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
