/**
 * A tenant a selective policy keeps from a region never crosses the wire to it: the peer
 * routes that answer with records (a stream by LSN, the origin's WAL, the export of winners,
 * the divergence check's buckets) send the asker its own records and the tenants it takes,
 * and name the LSNs they withheld with their tenant only (by key: only the tenants). A real node in this process, asked over real HTTP by links signed
 * as two other regions that take different tenants.
 */
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../../../test/support/tmp.js";
import { cliLink } from "../../cli/verify.js";
import { parseConfig } from "../../config/index.js";
import type { PeerLink } from "../../link/index.js";
import { bucketOf } from "../../store/index.js";
import { openRegion, type RunningNode } from "../run.js";
import { forAsker } from "./withhold.js";

const secret = "withhold-test-peer-secret-0123456789";
const policies = [
  { tenantID: "west", targetRegions: ["us-east-1", "us-west-2"] },
  { tenantID: "eu", targetRegions: ["us-east-1", "eu-west-1"] },
];

function config(region: string, urls: Record<string, string>) {
  return {
    region,
    dataDir: tempDir("crr-withhold-"),
    listen: { host: "127.0.0.1", port: 0 },
    regions: Object.fromEntries(Object.entries(urls).map(([r, url]) => [r, { url }])),
    crr: { enabled: true, replicationMode: "selective", policies },
    auth: { peerSecret: secret },
  };
}

const nowhere = {
  "us-east-1": "http://127.0.0.1:1",
  "us-west-2": "http://127.0.0.1:1",
  "eu-west-1": "http://127.0.0.1:1",
};

let node: RunningNode | undefined;
const links: PeerLink[] = [];
afterEach(async () => {
  for (const l of links.splice(0)) await l.close();
  await node?.close({ readinessGraceMs: 0 });
  node = undefined;
});

/** A link to us-east-1 signed as `asker` (another region of the mesh, with the shared secret). */
function linkAs(asker: string, url: string): PeerLink {
  const c = parseConfig(config(asker, { ...nowhere, "us-east-1": url }), "test", process.cwd(), {});
  const l = cliLink(c, "us-east-1");
  links.push(l);
  return l;
}

describe("forAsker", () => {
  const v = (lsn: number, origin: string, tenant: string) => ({ lsn, origin, tenant, key: `k${lsn}` });
  it("sends the asker its own records and the tenants it takes; names the others' LSNs and tenants only", () => {
    const takes = (region: string, tenant: string) => region === "us-west-2" && tenant === "west";
    const { sent, withheld } = forAsker(
      [v(1, "us-east-1", "west"), v(2, "us-east-1", "eu"), v(3, "us-west-2", "eu"), v(4, "eu-west-1", "eu")],
      "us-west-2",
      takes,
    );
    expect(sent.map((x) => x.lsn)).toEqual([1, 3]);
    expect(withheld).toEqual([
      { lsn: 2, tenant: "eu" },
      { lsn: 4, tenant: "eu" },
    ]);
  });
});

describe("the peer routes that answer with records", () => {
  it("withhold a tenant the policy keeps from the asking region, and say which LSNs they withheld", async () => {
    node = await openRegion(config("us-east-1", nowhere), { startAlone: true });
    const records = [
      { key: "west-key-1", tenant: "west", outcome: "approved", body: { secret: "west-only-1" } },
      { key: "eu-key-1", tenant: "eu", outcome: "approved", body: { secret: "eu-only-1" } },
      { key: "west-key-2", tenant: "west", outcome: "approved", body: { secret: "west-only-2" } },
      { key: "eu-key-2", tenant: "eu", outcome: "approved", body: { secret: "eu-only-2" } },
    ];
    const answers = await node.appendMany(records);
    const lsnOf = Object.fromEntries(
      answers.map((a, i) => [records[i]!.key, a.status === "fulfilled" ? a.value.lsn : -1]),
    );
    const byTenant = (tenant: string) => records.filter((r) => r.tenant === tenant).map((r) => lsnOf[r.key]!);
    for (const [asker, takes, kept] of [
      ["us-west-2", "west", "eu"],
      ["eu-west-1", "eu", "west"],
    ] as const) {
      const link = linkAs(asker, node.server.url);
      const incarnation = (await link.watermarks()).incarnation;
      const stream = await link.streamRecords({
        origin: "us-east-1",
        incarnation,
        fromLsn: 1,
        toLsn: 4,
        limit: 100,
      });
      expect(stream.versions.map((x) => x.lsn).sort()).toEqual(byTenant(takes).sort());
      expect(stream.withheld).toEqual(
        byTenant(kept)
          .sort()
          .map((lsn) => ({ lsn, tenant: kept })),
      );
      const wal = await link.walRecords([1, 2, 3, 4]);
      expect(wal.records.map((x) => x.tenant)).toEqual([takes, takes]);
      expect(wal.withheld).toEqual(
        byTenant(kept)
          .sort()
          .map((lsn) => ({ lsn, tenant: kept })),
      );
      const exported = await link.exportPage({ limit: 100 });
      expect(exported.versions.map((x) => x.key).sort()).toEqual(
        records.filter((r) => r.tenant === takes).map((r) => r.key),
      );
      expect(exported.withheldTenants).toEqual([kept]);
      const buckets = await link.buckets([...new Set(records.map((r) => bucketOf(r.key)))]);
      expect(buckets.versions.map((x) => x.tenant)).toEqual([takes, takes]);
      expect(buckets.withheldTenants).toEqual([kept]);
      // Nothing of the kept tenant's records crossed: not its keys, not its bodies. (Keys with
      // a "-": a two-letter key such as "e2" turns up inside a random incarnation's hex.)
      const seen = JSON.stringify([stream, wal, exported, buckets]);
      for (const r of records.filter((x) => x.tenant === kept)) {
        expect(seen).not.toContain(r.key);
        expect(seen).not.toContain(r.body.secret);
      }
    }
  });
});
