/**
 * Issue "Trust between regions", items 2 and 3, against real `crr serve` processes:
 * - with a key per region, whoever holds one region's key (or the old shared secret) cannot
 *   speak for another: a record written as another origin, an empty skip-gap batch that
 *   would move a watermark, and the admin routes of another region are all refused;
 * - a request signed for one region is refused by another (403), and a request replayed
 *   to the same region after it restarted is refused (its replay floor survived).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  BATCH_FLAG_SKIP_GAP,
  ed25519Signer,
  encodeBatch,
  sharedSecret,
  signRequest,
  type Signer,
} from "../../src/protocol/index.js";
import { encodeFrames } from "../../src/wal/index.js";
import { Cluster, api, append, status, testSecret, waitConverged } from "../support/cluster.js";
import { keyConfig, regionKeys } from "../support/pki.js";
import { tempDir, waitFor } from "../support/tmp.js";

const names = ["us-east-1", "us-west-2"];

function signed(
  signer: Signer,
  o: { method?: string; path: string; body?: Buffer | string; region: string; to: string; nowMs?: number },
): Record<string, string> {
  return signRequest({
    signer,
    method: o.method ?? "POST",
    path: o.path,
    body: o.body ?? "",
    region: o.region,
    to: o.to,
    nowMs: o.nowMs ?? Date.now(),
    nonce: randomBytes(16).toString("hex"),
    rule: "first-write-wins/1",
    incarnation: "c".repeat(32),
    boot: "attacker",
  });
}

describe("a key per region", () => {
  it("replicates, and no region's key speaks for another", async () => {
    const keys = regionKeys(tempDir("crr-keys-"), names);
    const cluster = await Cluster.start({
      regions: names.map((name) => ({ name, config: keyConfig(keys, name) })),
    });
    const [east, west] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    await append(east, { key: "k-east", tenant: "t", outcome: "accepted" });
    await append(west, { key: "k-west", tenant: "t", outcome: "accepted" });
    await waitConverged([east, west]);
    const before = await status(west);
    const eastKey = ed25519Signer(fs.readFileSync(keys["us-east-1"]!.privateKeyFile));

    // East's key, signing as west, writes a record into west with a forged timestamp.
    const forged = encodeBatch(
      { origin: "us-west-2", incarnation: "c".repeat(32), firstLsn: 1, lastLsn: 1, recordCount: 1, flags: 0 },
      encodeFrames([
        {
          key: "k1",
          tenant: "t",
          outcome: "forged",
          bodyJson: undefined,
          lsn: 1,
          hlc: { wallMs: 1, logical: 0 },
          flags: 0,
        },
      ]),
    );
    const asWest = signed(eastKey, {
      path: "/v1/replicate",
      body: forged,
      region: "us-west-2",
      to: "us-west-2",
    });
    const r1 = await api(`${west.url}/v1/replicate`, {
      method: "POST",
      headers: { ...asWest, "content-type": "application/octet-stream" },
      body: forged,
    });
    expect(r1).toMatchObject({ status: 401, body: { code: "unauthenticated", message: "unknown key" } });

    // An empty skip-gap batch, as east, sent to west by someone holding only the shared secret.
    const skip = encodeBatch(
      {
        origin: "us-east-1",
        incarnation: (await status(east)).incarnation,
        firstLsn: 2,
        lastLsn: 1_000_000,
        recordCount: 0,
        flags: BATCH_FLAG_SKIP_GAP,
      },
      Buffer.alloc(0),
    );
    const shared = sharedSecret(testSecret, names).signer;
    const r2 = await api(`${west.url}/v1/replicate`, {
      method: "POST",
      headers: {
        ...signed(shared, { path: "/v1/replicate", body: skip, region: "us-east-1", to: "us-west-2" }),
        "content-type": "application/octet-stream",
      },
      body: skip,
    });
    expect(r2).toMatchObject({ status: 401, body: { message: "unknown key" } });

    // East's own key calling west's admin routes (a peer is not an admin), and an unknown region.
    const drain = await api(`${west.url}/v1/admin/drain`, {
      method: "POST",
      headers: signed(eastKey, { path: "/v1/admin/drain", region: "us-east-1", to: "us-west-2" }),
    });
    expect(drain.status).toBe(401);
    const nobody = await api(`${west.url}/v1/admin/drain`, {
      method: "POST",
      headers: signed(eastKey, { path: "/v1/admin/drain", region: "nobody", to: "us-west-2" }),
    });
    expect(nobody).toMatchObject({ status: 401, body: { message: "unknown region 'nobody'" } });

    // A repair from east of a key both hold alike: west's detector finds no difference, so it is refused.
    const same = (await api<Record<string, unknown>>(`${west.url}/v1/records/k-east`)).body;
    const held = { ...(await status(east)), same };
    const text = JSON.stringify({
      versions: [
        {
          key: "k-east",
          tenant: "t",
          outcome: "overwritten",
          bodyJson: null,
          origin: "us-east-1",
          incarnation: held.incarnation,
          lsn: same.lsn,
          hlc: { wallMs: 1, logical: 0 },
        },
      ],
    });
    const repair = await api(`${west.url}/v1/divergence/repair`, {
      method: "POST",
      headers: {
        ...signed(eastKey, {
          path: "/v1/divergence/repair",
          body: text,
          region: "us-east-1",
          to: "us-west-2",
        }),
        "content-type": "application/json",
      },
      body: text,
    });
    expect(repair).toMatchObject({ status: 403, body: { code: "repair_refused", key: "k-east" } });
    expect((await api<{ outcome: string }>(`${west.url}/v1/records/k-east`)).body.outcome).toBe("accepted");

    const after = await status(west);
    expect(after.watermarks).toEqual(before.watermarks);
    expect(after.store.digest).toBe(before.store.digest);
    expect((await api(`${west.url}/v1/records/k1`)).status).toBe(404);
    expect(after.readiness.ready).toBe(true);
  });
});

describe("signatures name their destination and outlive a restart", () => {
  it("a drain signed for one region is refused by another, and by the same one after it restarted", async () => {
    const cluster = await Cluster.start({ regions: names });
    const [east, west] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    const shared = sharedSecret(testSecret, names).signer;
    // What an operator's command sends east (signed as east itself: an admin of east).
    const forEast = signed(shared, { path: "/v1/admin/drain", region: "us-east-1", to: "us-east-1" });
    const toWest = await api(`${west.url}/v1/admin/drain`, { method: "POST", headers: forEast });
    expect(toWest).toMatchObject({
      status: 403,
      body: { message: "signed for region 'us-east-1', this is 'us-west-2'" },
    });
    expect((await status(west)).readiness.ready).toBe(true);

    const once = await api(`${east.url}/v1/admin/drain`, { method: "POST", headers: forEast });
    expect(once.status).toBe(200);
    const undrain = signed(shared, { path: "/v1/admin/undrain", region: "us-east-1", to: "us-east-1" });
    expect((await api(`${east.url}/v1/admin/undrain`, { method: "POST", headers: undrain })).status).toBe(
      200,
    );
    expect((await api(`${east.url}/v1/admin/drain`, { method: "POST", headers: forEast })).status).toBe(401);

    await cluster.stopNode("us-east-1", "SIGKILL");
    await cluster.startNode("us-east-1");
    const replayed = await api(`${east.url}/v1/admin/drain`, { method: "POST", headers: forEast });
    expect(replayed).toMatchObject({ status: 401, body: { code: "unauthenticated" } });
    expect(String((replayed.body as { message: string }).message)).toMatch(
      /signed before this node last restarted/,
    );
    expect((await status(east)).readiness.ready).toBe(true);
    // The floor is on disk, next to the data.
    expect(fs.existsSync(path.join(east.dataDir, "auth-floor.json"))).toBe(true);
    // Fresh requests still work at once (peers resume replication after the restart).
    await append(east, { key: "after-restart", tenant: "t", outcome: "accepted" });
    await waitFor(
      async () => ((await api(`${west.url}/v1/records/after-restart`)).status === 200 ? true : undefined),
      "west to receive east's record after the restart",
    );
  });
});
