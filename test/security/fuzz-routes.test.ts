/**
 * Generated bad input at every POST route of a real node (the routes come from its own
 * OpenAPI document, so a new route is fuzzed without editing this test), unsigned and
 * signed as a peer: every answer is a 4xx JSON error `{code, message}` (the batch route:
 * or one such refusal per record, with its `status`), never a 5xx, and
 * nothing was applied (digest, watermarks, audit head, readiness unchanged). Also checks
 * that the document served at GET /openapi.json is the checked-in docs/openapi.json
 * (`npm run openapi` rewrites it). fast-check, seeded; the seed is printed.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sharedSecret, signRequest } from "../../src/protocol/index.js";
import { repoRoot } from "../support/cli.js";
import { Cluster, status, testSecret, type TestNode } from "../support/cluster.js";

let cluster: Cluster;
let node: TestNode;
const signer = sharedSecret(testSecret, ["us-east-1", "eu-west-1"]).signer;
const seed = Number(process.env.CRR_FUZZ_SEED ?? Date.now() % 1_000_000);

beforeAll(async () => {
  cluster = await Cluster.start({
    shared: true,
    regions: ["eu-west-1"],
    common: {
      regions: { "us-east-1": { url: "http://127.0.0.1:9" } },
      crr: { enabled: true, peers: ["us-east-1"] },
      recovery: { startAlone: true },
    },
  });
  node = cluster.node("eu-west-1");
});
afterAll(() => cluster.stop());

/** Any JSON made invalid by construction: an object with a key no schema allows, or not an object. */
const badJson = fc.oneof(
  fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 4 }).map((d) => ({ ...d, __fuzz: 1 })),
  fc.array(fc.jsonValue(), { maxLength: 4 }),
  fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)),
);

const body = fc.oneof(
  badJson.map((j) => ({ type: "application/json", bytes: Buffer.from(JSON.stringify(j)) })),
  fc.uint8Array({ maxLength: 512 }).map((b) => ({ type: "application/octet-stream", bytes: Buffer.from(b) })),
  fc.string({ maxLength: 200 }).map((s) => ({ type: "application/json", bytes: Buffer.from(s) })),
  fc.string({ maxLength: 50 }).map((s) => ({ type: "text/plain", bytes: Buffer.from(s) })),
);

describe(`every route, generated bad input (seed ${seed}; CRR_FUZZ_SEED=${seed} replays)`, () => {
  it("serves the checked-in OpenAPI document", async () => {
    const served = await (await fetch(`${node.url}/openapi.json`)).json();
    const checkedIn = JSON.parse(fs.readFileSync(path.join(repoRoot, "docs", "openapi.json"), "utf8"));
    expect(served, "docs/openapi.json is stale: npm run openapi").toEqual(checkedIn);
  });

  it("answers 4xx JSON errors and changes nothing", async () => {
    const doc = (await (await fetch(`${node.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const routes = Object.entries(doc.paths)
      .filter(([, ops]) => "post" in ops)
      .map(([p]) => p);
    expect(routes.length).toBeGreaterThan(8);
    const before = await status(node);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), body, fc.boolean(), async (route, b, sign) => {
        const headers: Record<string, string> = { "content-type": b.type };
        if (sign)
          Object.assign(
            headers,
            signRequest({
              signer,
              method: "POST",
              path: route,
              body: b.bytes,
              region: "us-east-1",
              to: "eu-west-1",
              nowMs: Date.now(),
              nonce: randomBytes(16).toString("hex"),
              rule: "first-write-wins/1",
            }),
          );
        const res = await fetch(`${node.url}${route}`, { method: "POST", headers, body: b.bytes });
        const text = await res.text();
        const what = `${route} signed=${sign} ${b.type} ${b.bytes.toString("hex").slice(0, 80)} -> ${res.status} ${text.slice(0, 200)}`;
        // The batch route answers an array of bad records with one refusal per record.
        const refusals: unknown[] =
          route === "/v1/records/batch" && res.status === 200 ? (JSON.parse(text) as unknown[]) : [text];
        for (const refusal of refusals) {
          const answer = (typeof refusal === "string" ? JSON.parse(refusal) : refusal) as Record<
            string,
            unknown
          >;
          const status = typeof refusal === "string" ? res.status : answer.status;
          expect(status, what).toBeGreaterThanOrEqual(400);
          expect(status, what).toBeLessThan(500);
          expect(typeof answer.code, what).toBe("string");
          expect(typeof answer.message, what).toBe("string");
        }
      }),
      { seed, numRuns: 600 },
    );
    const after = await status(node);
    expect(after.store).toEqual(before.store);
    expect(after.watermarks).toEqual(before.watermarks);
    expect(after.audit.seq).toBe(before.audit.seq);
    expect(after.readiness.ready).toBe(true);
  });
});
