/**
 * Invariants 5 and 9 against a real `crr serve`: every request the peer API must refuse is
 * refused with a 4xx and a reason, and changes nothing (digest, watermarks, record count).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeBatch, sharedSecret, signRequest } from "../../src/protocol/index.js";
import { encodeFrames, type WalRecord } from "../../src/wal/index.js";
import { Cluster, api, append, status, testSecret, type TestNode } from "../support/cluster.js";

let cluster: Cluster;
let node: TestNode;
const incarnation = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

beforeAll(async () => {
  // One real node (eu-west-1) whose peers are down: we play us-east-1 by hand.
  cluster = await Cluster.start({
    shared: true,
    regions: ["eu-west-1"],
    common: {
      regions: { "us-east-1": { url: "http://127.0.0.1:9" }, "us-west-2": { url: "http://127.0.0.1:9" } },
      crr: {
        enabled: true,
        replicationMode: "selective",
        policies: [
          { tenantID: "tenant-a", targetRegions: ["eu-west-1", "us-east-1"] },
          { tenantID: "tenant-us", targetRegions: ["us-east-1", "us-west-2"] },
        ],
      },
      reader: { bodyBytesMax: 65536 },
      // Its peers are down on purpose: this region starts with no state and serves alone.
      recovery: { startAlone: true },
    },
  });
  node = cluster.node("eu-west-1");
});
afterAll(() => cluster.stop());

const rec = (lsn: number, tenant = "tenant-a"): WalRecord => ({
  key: `k${lsn}`,
  tenant,
  outcome: "accepted",
  bodyJson: undefined,
  lsn,
  hlc: { wallMs: Date.now(), logical: 0 },
  flags: 0,
});

function batch(
  records: WalRecord[],
  origin = "us-east-1",
  firstLsn = records[0]!.lsn,
  lastLsn = records.at(-1)!.lsn,
): Buffer {
  return encodeBatch(
    { origin, incarnation, firstLsn, lastLsn, recordCount: records.length, flags: 0 },
    encodeFrames(records),
  );
}

/**
 * `direct`: to the node's own port, not through the cluster's front. A node that refuses a
 * body before reading it closes the connection: through one more hop the refusal can be
 * lost in the reset, which would fail the test by chance.
 */
function post(body: Buffer, headers: Record<string, string>, direct = false) {
  const url = direct ? `http://127.0.0.1:${node.listenPort}` : node.url;
  return api(`${url}/v1/replicate`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", ...headers },
    body,
  });
}

const signerOf = (secret: string) =>
  sharedSecret(secret, ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"]).signer;

const signed = (
  body: Buffer,
  over: {
    region?: string;
    to?: string;
    secret?: string;
    nowMs?: number;
    rule?: string;
    incarnation?: string;
    boot?: string;
  } = {},
) =>
  signRequest({
    signer: signerOf(over.secret ?? testSecret),
    method: "POST",
    path: "/v1/replicate",
    body,
    region: over.region ?? "us-east-1",
    to: over.to ?? "eu-west-1",
    nowMs: over.nowMs ?? Date.now(),
    nonce: randomBytes(16).toString("hex"),
    rule: over.rule ?? "first-write-wins/1",
    incarnation: over.incarnation ?? incarnation,
    boot: over.boot ?? "first",
  });

async function unchanged<T>(send: () => Promise<T>): Promise<T> {
  const before = await status(node);
  const result = await send();
  const after = await status(node);
  expect(after.store).toEqual(before.store);
  expect(after.watermarks).toEqual(before.watermarks);
  return result;
}

describe("the peer API refuses, and changes nothing", () => {
  it("accepts a good batch (the control case)", async () => {
    const body = batch([rec(1), rec(2)]);
    const r = await post(body, signed(body));
    expect(r).toMatchObject({ status: 200, body: { watermark: 2, applied: 2 } });
  });

  const cases: Array<
    [string, () => Promise<{ status: number; body: Record<string, unknown> }>, number, string]
  > = [
    ["no signature", async () => post(batch([rec(3)]), {}), 401, "unauthenticated"],
    [
      "another secret",
      async () => {
        const b = batch([rec(3)]);
        return post(b, signed(b, { secret: "not-the-deployment-secret" }));
      },
      401,
      "unauthenticated",
    ],
    [
      "a stale timestamp",
      async () => {
        const b = batch([rec(3)]);
        return post(b, signed(b, { nowMs: Date.now() - 10 * 60_000 }));
      },
      401,
      "unauthenticated",
    ],
    [
      "a tampered body",
      async () => {
        const b = batch([rec(3)]);
        const h = signed(b);
        b[b.length - 1]! ^= 1;
        return post(b, h);
      },
      400,
      "bad_digest",
    ],
    [
      "a bad record checksum",
      async () => {
        const frames = Buffer.from(encodeFrames([rec(3)]));
        frames[frames.length - 1]! ^= 1;
        const b = encodeBatch(
          { origin: "us-east-1", incarnation, firstLsn: 3, lastLsn: 3, recordCount: 1, flags: 0 },
          frames,
        );
        return post(b, signed(b));
      },
      400,
      "bad_batch",
    ],
    [
      "a malformed body",
      async () => {
        const b = Buffer.from("this is not a batch");
        return post(b, signed(b));
      },
      400,
      "bad_batch",
    ],
    [
      "a body over the limit",
      async () => {
        const b = batch(
          Array.from({ length: 1200 }, (_, i) => ({ ...rec(3 + i), key: `long-key-${i}-${"x".repeat(60)}` })),
        );
        return post(b, signed(b), true);
      },
      413,
      "body_too_large",
    ],
    [
      "an unknown origin (no region of the deployment: no key speaks for it)",
      async () => {
        const b = batch([rec(1)], "ap-south-1");
        return post(b, signed(b, { region: "ap-south-1" }));
      },
      401,
      "unauthenticated",
    ],
    [
      "a request signed for another region",
      async () => {
        const b = batch([rec(3)]);
        return post(b, signed(b, { to: "us-west-2" }));
      },
      403,
      "unauthenticated",
    ],
    [
      "an origin other than the signer",
      async () => {
        const b = batch([rec(1)], "us-west-2");
        return post(b, signed(b));
      },
      403,
      "origin_mismatch",
    ],
    [
      "a tenant the policy keeps out",
      async () => {
        const b = batch([rec(3), rec(4, "tenant-us")]);
        return post(b, signed(b));
      },
      403,
      "tenant_not_allowed",
    ],
    [
      "a batch beyond the watermark (rewind)",
      async () => {
        const b = batch([rec(50)]);
        return post(b, signed(b));
      },
      409,
      "watermark_gap",
    ],
    [
      "a record timestamped further ahead than the clock skew allows",
      async () => {
        const b = batch([{ ...rec(3), hlc: { wallMs: Date.now() + 10 * 60_000, logical: 0 } }]);
        return post(b, signed(b));
      },
      400,
      "clock_skew",
    ],
    [
      "a peer that merges by another rule",
      async () => {
        const b = batch([rec(3)]);
        return post(b, signed(b, { rule: "last-write-wins/1" }));
      },
      409,
      "rule_mismatch",
    ],
    [
      "a peer that does not say its rule",
      async () => {
        const b = batch([rec(3)]);
        return post(b, signed(b, { rule: "" }));
      },
      409,
      "rule_mismatch",
    ],
    [
      "a second node serving the sender's region while the first one is still heard from",
      async () => {
        // The second node speaks first (its health probe), then the first one speaks again
        // (an already-applied batch): the second one appeared while the first is alive.
        const probe = signRequest({
          signer: signerOf(testSecret),
          method: "GET",
          path: "/v1/watermarks",
          body: "",
          region: "us-east-1",
          to: "eu-west-1",
          nowMs: Date.now(),
          nonce: randomBytes(16).toString("hex"),
          incarnation: "b".repeat(32),
          boot: "second",
        });
        expect((await api(`${node.url}/v1/watermarks`, { headers: probe })).status).toBe(200);
        const b = encodeBatch(
          {
            origin: "us-east-1",
            incarnation: "b".repeat(32),
            firstLsn: 1,
            lastLsn: 1,
            recordCount: 1,
            flags: 0,
          },
          encodeFrames([rec(1)]),
        );
        // The first keeps speaking (already-applied batches: nothing changes) over more than a
        // probe interval (the default 2 s): one late request of a dead instance proves nothing.
        for (let i = 0; i < 2; i++) {
          const again = batch([rec(1), rec(2)]);
          expect((await post(again, signed(again))).status).toBe(200);
          if (i === 0) await new Promise((resolve) => setTimeout(resolve, 2_500));
        }
        return post(b, signed(b, { incarnation: "b".repeat(32), boot: "second" }));
      },
      409,
      "duplicate_region",
    ],
    [
      "unknown batch flags",
      async () => {
        const b = encodeBatch(
          { origin: "us-east-1", incarnation, firstLsn: 3, lastLsn: 3, recordCount: 1, flags: 8 },
          encodeFrames([rec(3)]),
        );
        return post(b, signed(b));
      },
      400,
      "bad_batch",
    ],
    [
      "JSON instead of a batch",
      async () =>
        api(`${node.url}/v1/replicate`, {
          method: "POST",
          headers: { "content-type": "application/json", ...signed(Buffer.from("{}")) },
          body: "{}",
        }),
      415,
      "unsupported_media_type",
    ],
  ];
  for (const [what, send, code, label] of cases) {
    it(`refuses ${what} with ${code} ${label}`, async () => {
      const r = await unchanged(send);
      expect(r.status).toBe(code);
      expect(r.body.code).toBe(label);
      expect(typeof r.body.message).toBe("string");
      expect(JSON.stringify(r.body)).not.toContain(testSecret);
    });
  }

  it("refuses a replayed request", async () => {
    const body = batch([rec(3)]);
    const headers = signed(body);
    expect((await post(body, headers)).status).toBe(200);
    const replay = await unchanged(() => post(body, headers));
    expect(replay).toMatchObject({
      status: 401,
      body: { code: "unauthenticated", message: "replayed request (nonce already used)" },
    });
  });

  it("answers the watermark to a batch it already applied (idempotent) and to a rewind", async () => {
    const body = batch([rec(1), rec(2)]);
    expect(await unchanged(() => post(body, signed(body)))).toMatchObject({
      status: 200,
      body: { watermark: 3, applied: 0 },
    });
    const ahead = batch([rec(9)]);
    expect((await post(ahead, signed(ahead))).body).toMatchObject({ code: "watermark_gap", watermark: 3 });
  });

  it("refuses bad public API requests with the field that was wrong", async () => {
    const long = await unchanged(() =>
      append(node, { key: "k".repeat(300), tenant: "tenant-a", outcome: "accepted" }),
    );
    expect(long).toMatchObject({ status: 400, body: { code: "record_invalid", field: "key" } });
    expect(long.body.message).toMatch(/300 bytes exceeds the limit of 256/);
    const missing = await api(`${node.url}/v1/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "k" }),
    });
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/must have required property 'tenant'/);
    const extra = await api(`${node.url}/v1/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "k", tenant: "t", outcome: "a", color: "red" }),
    });
    expect(extra.status).toBe(400);
    const broken = await api(`${node.url}/v1/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(broken.status).toBe(400);
    // Malformed UTF-16 in key, tenant or outcome (a lone surrogate) is refused, naming the field:
    // "x\ud800y" and "x\ud801y" would both encode to "x\ufffdy" and merge in one region only.
    for (const field of ["key", "tenant", "outcome"] as const) {
      const rec = { key: "k-utf", tenant: "tenant-a", outcome: "accepted", [field]: "x\ud800y" };
      const r = await unchanged(() => append(node, rec));
      expect(r, field).toMatchObject({ status: 400, body: { code: "record_invalid", field } });
      expect(r.body.message).toMatch(/lone UTF-16 surrogate/);
    }
    // No type coercion: a number is not a key.
    const coerced = await unchanged(() =>
      api(`${node.url}/v1/records`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: 123, tenant: "tenant-a", outcome: "accepted" }),
      }),
    );
    expect(coerced.status).toBe(400);
    expect(coerced.body.message).toMatch(/key must be string/);
    const tooMany = await append(node, { key: "w1", tenant: "tenant-a", outcome: "accepted" }, 5);
    expect(tooMany).toMatchObject({ status: 400, body: { field: "wait" } });
    expect((await api(`${node.url}/v1/records/nope`)).status).toBe(404);
  });
});
