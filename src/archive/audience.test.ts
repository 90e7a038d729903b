/**
 * The audience a region publishes for its archive (which regions its policy sends what), and
 * a restore that keeps of another region's records only what that region's own word sends
 * here, whatever this region's config says (configs may disagree: a rolling policy change).
 */
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { meshAudience, sealRing, testArchiver, testKeys } from "../../test/support/seal.js";
import { openStore } from "../../test/support/shipper-peer.js";
import { tempDir } from "../../test/support/tmp.js";
import type { NodeConfig } from "../config/index.js";
import { replicationPolicy } from "../config/index.js";
import { Wal } from "../wal/index.js";
import {
  audienceOf,
  peerAudiences,
  publishAudience,
  seedOrigins,
  sendsEverything,
  sendsTenant,
  type Audience,
} from "./audience.js";
import { listAll, planRestore, restoreInto } from "./restore.js";
import { NoSuchObjectError, type ArchiveStore, type StoredObject } from "./s3-store.js";

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

function bucket(): ArchiveStore {
  const objects = new Map<string, StoredObject>();
  return {
    async put(key, body, seal) {
      objects.set(key, { body: Buffer.from(body), seal });
    },
    async get(key) {
      const o = objects.get(key);
      if (!o) throw new NoSuchObjectError(`no such key ${key}`);
      return { body: Buffer.from(o.body), seal: { ...o.seal } };
    },
    async list(prefix, after, max) {
      return [...objects.keys()]
        .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
        .sort()
        .slice(0, max);
    },
    async folders() {
      return [];
    },
    close() {},
  };
}

const crr = (c: Partial<NodeConfig["crr"]>): NodeConfig["crr"] => ({
  enabled: true,
  replicationMode: "multi-way",
  peers: [],
  targetRegions: [],
  policies: [],
  conflictRule: "first-write-wins",
  regionPriority: [],
  ...c,
});

describe("archive audience", () => {
  it("says what each policy sends whom: everything to multi-way's peers and two-region's target, per tenant under selective, nothing when off", () => {
    const of = (c: Partial<NodeConfig["crr"]>) => audienceOf({ region: "us-east-1", crr: crr(c) }, 7);
    const multi = of({ peers: ["eu-west-1", "ap-south-1"] });
    expect(multi).toEqual({
      origin: "us-east-1",
      mode: "multi-way",
      sendsAllTo: ["ap-south-1", "eu-west-1"],
      tenants: {},
      atMs: 7,
    });
    expect(of({ replicationMode: "two-region", targetRegions: ["eu-west-1"] }).sendsAllTo).toEqual([
      "eu-west-1",
    ]);
    const selective = of({
      replicationMode: "selective",
      policies: [
        { tenantID: "a", targetRegions: ["us-east-1", "eu-west-1"] },
        { tenantID: "b", targetRegions: ["ap-south-1"] },
      ],
    });
    expect(selective).toMatchObject({
      mode: "selective",
      sendsAllTo: [],
      tenants: { a: ["eu-west-1"], b: ["ap-south-1"] },
    });
    expect(of({ enabled: false })).toMatchObject({ mode: "off", sendsAllTo: [], tenants: {} });

    expect(sendsEverything(multi, "eu-west-1")).toBe(true);
    expect(sendsEverything(selective, "eu-west-1")).toBe(false);
    expect(sendsTenant(multi, "eu-west-1", "anything")).toBe(true);
    expect(sendsTenant(multi, "mars-1", "anything")).toBe(false);
    expect(sendsTenant(selective, "eu-west-1", "a")).toBe(true);
    expect(sendsTenant(selective, "eu-west-1", "b")).toBe(false);
    expect(sendsTenant(selective, "eu-west-1", "no-policy")).toBe(false); // stays in its region
  });

  it("a bootstrap or rebuild seeds from another region's objects only when its audience sends this region everything", async () => {
    const store = bucket();
    const publish = (a: Partial<Audience> & { origin: string }) =>
      publishAudience(store, testKeys(a.origin).signer, "crr", { ...meshAudience, ...a });
    await publish({ origin: "us-east-1", sendsAllTo: ["ap-south-1", "eu-west-1"] });
    await publish({ origin: "ap-south-1", mode: "selective", sendsAllTo: [], tenants: { a: ["eu-west-1"] } });
    const seed = await seedOrigins(store, sealRing, "crr", "eu-west-1", [
      "us-east-1",
      "eu-west-1",
      "ap-south-1",
    ]);
    expect(seed.origins).toEqual(["eu-west-1", "us-east-1"]);
    expect([...seed.passedOver]).toEqual([
      ["ap-south-1", "ap-south-1's policy (selective) does not send eu-west-1 every record"],
    ]);
    const none = await seedOrigins(store, sealRing, "crr", "us-east-1", ["us-east-1", "mars-1"]);
    expect(none.origins).toEqual(["us-east-1"]);
    expect(none.passedOver.get("mars-1")).toContain("mars-1 has published no audience");
  });

  it("a restore keeps of another region's records only the tenants its published audience sends here, though this region's config takes every tenant; an origin without one is passed over", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: "us-east-1", segmentBytesMax: 1 << 20 });
    opened.push(wal);
    for (let i = 0; i < 6; i++)
      await wal.append({
        key: `k${i}`,
        tenant: ["shared", "kept-from-eu", "no-policy"][i % 3]!,
        outcome: "accepted",
      });
    const store = bucket();
    const selective: Audience = {
      ...meshAudience,
      mode: "selective",
      sendsAllTo: [],
      tenants: { shared: ["eu-west-1"], "kept-from-eu": ["ap-south-1"] },
    };
    await testArchiver(wal, store, tempDir(), undefined, selective).pass();
    // eu-west-1 still runs multi-way (its policy accepts every tenant), and lists a region that never archived.
    const self = "eu-west-1";
    const peers = await peerAudiences(store, sealRing, "crr", self, ["us-east-1", "eu-west-1", "ap-south-1"]);
    expect([...peers.audiences.keys()]).toEqual(["us-east-1"]);
    expect(peers.passedOver.get("ap-south-1")).toContain("ap-south-1 has published no audience");
    const plan = planRestore(await listAll(store, "crr/"), {
      prefix: "crr",
      origins: [self, ...peers.audiences.keys()],
    });
    const into = openStore(path.join(tempDir(), "restore.sqlite")); // closed by its module
    const report = await restoreInto({
      store,
      plan,
      into,
      toMs: undefined,
      policy: replicationPolicy({ region: self, crr: crr({ peers: ["us-east-1", "ap-south-1"] }) }),
      self,
      keys: sealRing,
      objectBytesMax: 1 << 24,
      originSends: (origin, tenant) => sendsTenant(peers.audiences.get(origin)!, self, tenant),
    });
    expect(report.streams[0]).toMatchObject({ origin: "us-east-1", fromLsn: 1, toLsn: 6 });
    const held = (await into.exportPage({ limit: 100 })).versions.map((r) => `${r.key} ${r.tenant}`);
    expect(held.sort()).toEqual(["k0 shared", "k3 shared"]);
    expect(await into.watermark("us-east-1", wal.incarnation)).toBe(6); // the rest is a policy's hole, not a gap
  });
});
