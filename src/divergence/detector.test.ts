/**
 * The detector's own bookkeeping on real (in-memory) stores: which region should hold what
 * under a selective policy, a comparison too large for one request (split into requests,
 * each bucket and key compared once), what a scan reports of itself (keys compared, bytes
 * and time of this scan alone), the keys a repair asks about, and our own records of a
 * tenant the peer withholds from us.
 */
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../log.js";
import { realRuntime } from "../runtime/index.js";
import { SqliteStore, bucketOf, type ApplyBatchInput } from "../store/index.js";
import type { WalRecord } from "../wal/index.js";
import { DivergenceDetector, storeRemote, type RemoteView } from "./detector.js";

const rule = { kind: "first-write-wins" } as const;
const inc = "ab".repeat(16);
const opened: SqliteStore[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

function store(): SqliteStore {
  const s = new SqliteStore({ path: ":memory:", rule });
  opened.push(s);
  return s;
}

function rec(lsn: number, key = `k${lsn}`, tenant = "t", outcome = "accepted"): WalRecord {
  return {
    key,
    tenant,
    outcome,
    bodyJson: undefined,
    lsn,
    hlc: { wallMs: 1000 + lsn, logical: 0 },
    flags: 0,
  };
}

/** One batch of `origin`'s stream 1..lastLsn holding `records` (a subset: the rest left out by a policy). */
const batch = (origin: string, lastLsn: number, records: WalRecord[]): ApplyBatchInput => ({
  origin,
  incarnation: inc,
  firstLsn: 1,
  lastLsn,
  records,
});

/** A remote that counts its requests and what each asked for. */
function counted(remote: RemoteView) {
  const trees: Array<{ level: number; indexes: number }> = [];
  const buckets: number[] = [];
  const view: RemoteView = {
    ...remote,
    tree: (level, indexes) => (trees.push({ level, indexes: indexes.length }), remote.tree(level, indexes)),
    buckets: (b) => (buckets.push(b.length), remote.buckets(b)),
  };
  return { view, trees, buckets };
}

function detectorOf(local: SqliteStore, remote: () => RemoteView, o: { monoMs?: () => number } = {}) {
  return new DivergenceDetector({
    region: "a",
    incarnation: () => "a".repeat(32),
    store: local,
    remote,
    inFlightMsMax: Number.MAX_SAFE_INTEGER,
    runtime: { ...realRuntime, nowMs: () => 0, monoMs: o.monoMs ?? realRuntime.monoMs },
    log: silentLogger(),
  });
}

describe("which region should hold a tenant's records", () => {
  it("every region without a selective policy; the origin always; else the tenant's targets only", () => {
    const d = (selectivePolicies?: Array<{ tenantID: string; targetRegions: string[] }>) =>
      new DivergenceDetector({
        region: "a",
        incarnation: () => "a".repeat(32),
        store: store(),
        remote: () => {
          throw new Error("not used");
        },
        inFlightMsMax: 1,
        selectivePolicies,
        runtime: realRuntime,
        log: silentLogger(),
      });
    expect(d().shouldHold("b", "c", "any")).toBe(true);
    const selective = d([
      { tenantID: "t1", targetRegions: ["a", "b"] },
      { tenantID: "t2", targetRegions: ["c"] },
    ]);
    expect(selective.shouldHold("b", "a", "t1")).toBe(true);
    expect(selective.shouldHold("b", "a", "t2")).toBe(false);
    expect(selective.shouldHold("c", "c", "t1")).toBe(true); // its own records, whatever the policy
    expect(selective.shouldHold("b", "a", "unlisted")).toBe(false);
    expect(selective.shouldHold("c", "a", "t2")).toBe(true);
  });
});

describe("a large comparison", () => {
  /**
   * B holds 1..1200 of us-east-1; A the same watermark without 512 of them in 512 buckets
   * (it lost them): exactly two full bucket requests.
   */
  async function lostThousand() {
    const a = store();
    const b = store();
    const all = Array.from({ length: 1200 }, (_, i) => rec(i + 1));
    const buckets = new Set<number>();
    const lost = all.filter(
      (r) => buckets.size < 512 && !buckets.has(bucketOf(r.key)) && buckets.add(bucketOf(r.key)),
    );
    b.applySync(batch("us-east-1", 1200, all));
    a.applySync(
      batch(
        "us-east-1",
        1200,
        all.filter((r) => !lost.includes(r)),
      ),
    );
    return { a, b, all, lost };
  }

  it("is split into requests of at most 4096 tree nodes and 256 buckets, none empty, and finds each lost key once", async () => {
    const { a, b, all, lost: lostRecords } = await lostThousand();
    const remote = counted(storeRemote(b));
    const scan = await detectorOf(a, () => remote.view).scanPeer("b");
    expect(scan.findings.map((f) => f.key).sort()).toEqual(lostRecords.map((r) => r.key).sort());
    expect(scan.findings.every((f) => f.kind === "missing" && f.missingIn === "a")).toBe(true);
    const lost = new Set(lostRecords.map((r) => bucketOf(r.key)));
    expect(scan.bucketsDiffering).toBe(512);
    // Every key in those buckets, on either side, compared once.
    expect(scan.keysCompared).toBe(all.filter((r) => lost.has(bucketOf(r.key))).length);
    expect(remote.buckets).toEqual([256, 256]);
    const leaf = remote.trees.filter((t) => t.level === 4).map((t) => t.indexes);
    expect(leaf.length).toBeGreaterThan(1);
    expect(leaf.slice(0, -1).every((n) => n === 4096)).toBe(true);
    expect(remote.trees.every((t) => t.indexes > 0 && t.indexes <= 4096)).toBe(true);
  });

  it("reports the bytes and time of this scan alone", async () => {
    const { a, b } = await lostThousand();
    const remote = storeRemote(b);
    let monoMs = 1_000;
    const timed: RemoteView = {
      ...remote,
      watermarks: async () => ((monoMs += 2_500), remote.watermarks()),
    };
    const d = detectorOf(a, () => timed, { monoMs: () => monoMs });
    const first = await d.scanPeer("b");
    const second = await d.scanPeer("b");
    expect(first.bytes).toBeGreaterThan(0);
    expect(second.bytes).toBe(first.bytes); // the link's count goes on; a scan reports its own
    expect([first.durationMs, second.durationMs]).toEqual([2_500, 2_500]);
  });
});

describe("the keys a repair asks about", () => {
  it("are compared now, and only they are reported, even beside another finding in their bucket", async () => {
    const a = store();
    const b = store();
    const k5 = bucketOf("k5");
    let n = 0;
    while (bucketOf(`beside-${n}`) !== k5) n++;
    const beside = `beside-${n}`; // in k5's bucket
    const all = [rec(1, "k1"), rec(2, "k5"), rec(3, beside), rec(4, "k9")];
    b.applySync(batch("us-east-1", 4, all));
    a.applySync(batch("us-east-1", 4, [all[0]!, all[3]!])); // lost k5 and its neighbour
    const d = detectorOf(a, () => storeRemote(b));
    expect((await d.checkKeys("b", ["k5", "k9"])).map((f) => [f.key, f.kind])).toEqual([["k5", "missing"]]);
    expect(await d.checkKeys("b", ["k1"])).toEqual([]);
  });
});

describe("our own records of a tenant the peer withholds from us", () => {
  it("are still compared: the peer sends them back, whatever its policy", async () => {
    const a = store();
    const b = store();
    // Region a's own record of tenant T, which b's policy keeps from a (b holds it as a's target).
    const ours = { origin: "a", incarnation: "a".repeat(32), firstLsn: 1, lastLsn: 1 };
    a.applySync({ ...ours, records: [rec(1, "k-T", "T", "accepted")] });
    b.applySync({ ...ours, records: [rec(1, "k-T", "T", "changed")] });
    const remote = storeRemote(b);
    const withholding: RemoteView = {
      ...remote,
      buckets: async (buckets) => ({ ...(await remote.buckets(buckets)), withheldTenants: ["T"] }),
    };
    const findings = await detectorOf(a, () => withholding).scanPeer("b");
    expect(findings.findings.map((f) => [f.key, f.kind])).toEqual([["k-T", "divergent"]]);
  });
});

describe("a region served by several nodes", () => {
  it("takes a fellow node's stream for a live one: its newest record, not yet at the peer, is in flight", async () => {
    const a = store();
    const b = store();
    const fellow = "f".repeat(32);
    // Written by a's other node (its own incarnation), applied to the region's store, not yet at b.
    a.applySync({ origin: "a", incarnation: fellow, firstLsn: 1, lastLsn: 1, records: [rec(1, "k-f")] });
    const detector = (fellows?: () => Promise<ReadonlySet<string>>) =>
      new DivergenceDetector({
        region: "a",
        incarnation: () => "a".repeat(32),
        fellows,
        store: a,
        remote: () => storeRemote(b, "b"),
        inFlightMsMax: Number.MAX_SAFE_INTEGER,
        runtime: { ...realRuntime, nowMs: () => 0 },
        log: silentLogger(),
      });
    expect((await detector(async () => new Set([fellow])).scanPeer("b")).findings).toEqual([]);
    // Without the fellows, the stream is taken for an older incarnation of a: settled, so missing.
    const alone = await detector().scanPeer("b");
    expect(alone.findings.map((f) => [f.key, f.kind, f.missingIn])).toEqual([["k-f", "missing", "b"]]);
  });
});
