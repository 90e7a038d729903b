/**
 * The detector on real stores: two stores built from the same records in any order have
 * equal digests and no findings; any single record changed, added or removed outside the
 * engine (a second SQLite connection, as a hand edit would be) is found, and only that key.
 */
import Database from "better-sqlite3";
import fc from "fast-check";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DivergenceDetector, storeRemote } from "../../src/divergence/index.js";
import { silentLogger } from "../../src/log.js";
import { realRuntime } from "../../src/runtime/index.js";
import { SqliteStore, bucketCount, type ApplyBatchInput } from "../../src/store/index.js";
import { tempDir } from "../support/tmp.js";

const rule = { kind: "first-write-wins" } as const;
const inc = "ab".repeat(16);

const streamsArb = fc
  .array(
    fc.record({
      origin: fc.constantFrom("us-east-1", "eu-west-1"),
      key: fc.integer({ min: 0, max: 300 }),
      outcome: fc.constantFrom("accepted", "rejected"),
    }),
    {
      minLength: 2,
      maxLength: 80,
    },
  )
  .map((rs) => {
    const lsn: Record<string, number> = { "us-east-1": 0, "eu-west-1": 0 };
    const batches: ApplyBatchInput[] = rs.map((r, i) => {
      const n = ++lsn[r.origin]!;
      return {
        origin: r.origin,
        incarnation: inc,
        firstLsn: n,
        lastLsn: n,
        records: [
          {
            key: `key-${r.key}`,
            tenant: "t",
            outcome: r.outcome,
            bodyJson: undefined,
            lsn: n,
            hlc: { wallMs: 1000 + i, logical: 0 },
            flags: 0,
          },
        ],
      };
    });
    return batches;
  });

function detector(store: SqliteStore, other: SqliteStore, bootstrapping?: () => boolean): DivergenceDetector {
  return new DivergenceDetector({
    region: "a",
    incarnation: () => "a".repeat(32),
    store,
    remote: () => storeRemote(other, "remote", "0".repeat(32), bootstrapping),
    // Records here are timestamped near the epoch: age alone must not settle them.
    inFlightMsMax: Number.MAX_SAFE_INTEGER,
    runtime: { ...realRuntime, nowMs: () => 0 },
    log: silentLogger(),
  });
}

describe("divergence detection on stores", () => {
  it("same records, any order: equal digests and no findings; one change, addition or removal: exactly that key", async () => {
    await fc.assert(
      fc.asyncProperty(
        streamsArb,
        fc.integer({ min: 0, max: 2 }),
        fc.nat(),
        fc.nat(),
        async (batches, mutation, pick, seed) => {
          const dir = tempDir();
          const a = new SqliteStore({ path: path.join(dir, "a.sqlite"), rule });
          const b = new SqliteStore({ path: path.join(dir, "b.sqlite"), rule });
          try {
            for (const batch of batches) a.applySync(batch);
            // B gets each origin's stream in order, but the two streams interleaved differently.
            const shuffled = [...batches].sort(
              (x, y) =>
                ((x.firstLsn * 7919 + seed) % 101) - ((y.firstLsn * 7919 + seed) % 101) ||
                x.firstLsn - y.firstLsn,
            );
            for (const origin of ["eu-west-1", "us-east-1"])
              for (const batch of shuffled
                .filter((x) => x.origin === origin)
                .sort((x, y) => x.firstLsn - y.firstLsn))
                b.applySync(batch);
            expect(await b.rootDigest()).toBe(await a.rootDigest());
            expect((await detector(a, b).scanPeer("b")).findings).toEqual([]);

            const target = mutation === 1 ? path.join(dir, "a.sqlite") : path.join(dir, "b.sqlite");
            const raw = new Database(target);
            // The keys as a second connection reads them (asking the store for all 65,536
            // buckets took 0.75 s a run, most of this test's time).
            const keys = raw.prepare("SELECT key FROM records ORDER BY key").pluck().all() as string[];
            const key = keys[pick % keys.length]!;
            if (mutation === 0) raw.prepare("UPDATE records SET outcome = 'tampered' WHERE key = ?").run(key);
            else raw.prepare("DELETE FROM records WHERE key = ?").run(key); // 1: B has one A lacks; 2: A has one B lacks
            raw.close();
            await (mutation === 1 ? a : b).scrub(0, bucketCount);
            const scan = await detector(a, b).scanPeer("b");
            expect(scan.findings.map((f) => f.key)).toEqual([key]);
            expect(scan.findings[0]!.kind).toBe(mutation === 0 ? "divergent" : "missing");
            if (mutation !== 0) expect(scan.findings[0]!.missingIn).toBe(mutation === 1 ? "a" : "b");
            expect(scan.bucketsDiffering).toBe(1);
          } finally {
            await a.close();
            await b.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("does not report a record the other side has not applied yet (in flight)", async () => {
    const a = new SqliteStore({ path: ":memory:", rule });
    const b = new SqliteStore({ path: ":memory:", rule });
    const rec = (lsn: number, key: string, wallMs: number) => ({
      origin: "us-east-1",
      incarnation: inc,
      firstLsn: lsn,
      lastLsn: lsn,
      records: [
        {
          key,
          tenant: "t",
          outcome: "accepted",
          bodyJson: undefined,
          lsn,
          hlc: { wallMs, logical: 0 },
          flags: 0,
        },
      ],
    });
    a.applySync(rec(1, "k1", 1));
    b.applySync(rec(1, "k1", 1));
    a.applySync(rec(2, "k2", 2)); // not yet at b: b's watermark is 1
    expect((await detector(a, b).scanPeer("b")).findings).toEqual([]);
    const conflicting = { ...rec(1, "k2", 0), origin: "eu-west-1" };
    b.applySync(conflicting); // b holds another version of k2 that a has not seen either
    expect((await detector(a, b).scanPeer("b")).findings).toEqual([]);
    a.applySync(conflicting);
    b.applySync(rec(2, "k2", 2));
    expect((await detector(a, b).scanPeer("b")).findings).toEqual([]); // both applied both: they agree
    await a.close();
    await b.close();
  });

  it("does not compare with a peer that is bootstrapping: its watermarks run ahead of its records (simulator)", async () => {
    const a = new SqliteStore({ path: ":memory:", rule });
    const b = new SqliteStore({ path: ":memory:", rule });
    const batch = (lsn: number) => ({
      origin: "us-east-1",
      incarnation: inc,
      firstLsn: lsn,
      lastLsn: lsn,
      records: [
        {
          key: `k${lsn}`,
          tenant: "t",
          outcome: "accepted",
          bodyJson: undefined,
          lsn,
          hlc: { wallMs: lsn, logical: 0 },
          flags: 0,
        },
      ],
    });
    a.applySync(batch(1));
    a.applySync(batch(2));
    // b copies a's watermark first, the records after (as a bootstrap may): k1, k2 look missing.
    b.applySync({ ...batch(2), firstLsn: 1, records: [] });
    let copying = true;
    await expect(detector(a, b, () => copying).scanPeer("b")).rejects.toThrow(/b is bootstrapping/);
    copying = false;
    expect((await detector(a, b, () => copying).scanPeer("b")).findings.map((f) => f.key).sort()).toEqual([
      "k1",
      "k2",
    ]);
    await a.close();
    await b.close();
  });

  it("does not compare a peer's watermarks from one process with its records from another (simulator seed 1302)", async () => {
    const a = new SqliteStore({ path: ":memory:", rule });
    const before = new SqliteStore({ path: ":memory:", rule });
    const after = new SqliteStore({ path: ":memory:", rule });
    const batch = {
      origin: "us-east-1",
      incarnation: inc,
      firstLsn: 1,
      lastLsn: 1,
      records: [
        {
          key: "k1",
          tenant: "t",
          outcome: "accepted",
          bodyJson: undefined,
          lsn: 1,
          hlc: { wallMs: 1, logical: 0 },
          flags: 0,
        },
      ],
    };
    a.applySync(batch);
    before.applySync(batch);
    // The peer's watermarks are read from its process before it lost its disk; its records
    // from the process after, which has not got k1 back yet: k1 would look missing.
    const scan = (
      boots: [string, string],
      stores: [string | undefined, string | undefined] = ["s", "s"],
      several = false,
    ) =>
      new DivergenceDetector({
        region: "a",
        incarnation: () => "a".repeat(32),
        ...(several ? { severalNodes: { regions: new Set(["b"]), heard: () => [] } } : {}),
        store: a,
        remote: () => {
          const old = storeRemote(before, "b");
          const fresh = storeRemote(after, "b");
          return {
            ...fresh,
            watermarks: async () => ({ ...(await old.watermarks()), boot: boots[0], storeId: stores[0] }),
            buckets: async (bs) => ({ ...(await fresh.buckets(bs)), boot: boots[1], storeId: stores[1] }),
          };
        },
        inFlightMsMax: Number.MAX_SAFE_INTEGER,
        runtime: { ...realRuntime, nowMs: () => 0 },
        log: silentLogger(),
      }).scanPeer("b");
    await expect(scan(["boot-1", "boot-2"])).rejects.toThrow(/b restarted during the comparison/);
    await expect(scan(["boot-1", "boot-1"], ["store-1", "store-2"])).rejects.toThrow(/b restarted/);
    // A store whose id went with its meta (emptied under a running node) is another store.
    await expect(scan(["boot-1", "boot-1"], ["store-1", undefined])).rejects.toThrow(/b restarted/);
    // One process for both (a real loss there): reported.
    const found = [["missing", "k1"]];
    const kinds = (r: Awaited<ReturnType<typeof scan>>) => r.findings.map((f) => [f.kind, f.key]);
    expect(kinds(await scan(["boot-2", "boot-2"]))).toEqual(found);
    // A region served by several nodes answers by turns from its nodes, on one store: compared
    // (the review: by boot, most comparisons with it were dropped); two stores are not.
    expect(kinds(await scan(["node-1", "node-2"], ["s", "s"], true))).toEqual(found);
    await expect(scan(["node-1", "node-1"], ["store-1", "store-2"], true)).rejects.toThrow(/b restarted/);
    for (const st of [a, before, after]) await st.close();
  });

  it("does not take a key of a tenant the peer withheld (its policy keeps it from this region) for missing there", async () => {
    const a = new SqliteStore({ path: ":memory:", rule });
    const b = new SqliteStore({ path: ":memory:", rule });
    const record = (key: string, tenant: string, lsn: number) => ({
      key,
      tenant,
      outcome: "accepted",
      bodyJson: undefined,
      lsn,
      hlc: { wallMs: lsn, logical: 0 },
      flags: 0,
    });
    const batch = {
      origin: "us-east-1",
      incarnation: inc,
      firstLsn: 1,
      lastLsn: 2,
      records: [record("k1", "kept-from-a", 1), record("k2", "t", 2)],
    };
    a.applySync(batch);
    // b's watermark covers k1 but it answers without it: naming its tenant as withheld (its
    // policy keeps it from a), or not (then k1 is lost there).
    b.applySync({ ...batch, records: [record("k2", "t", 2)] });
    const scan = (named: boolean) =>
      new DivergenceDetector({
        region: "a",
        incarnation: () => "a".repeat(32),
        store: a,
        remote: () => {
          const r = storeRemote(b, "b");
          return {
            ...r,
            buckets: async (bs) => {
              const x = await r.buckets(bs);
              const versions = x.versions.filter((v) => v.tenant !== "kept-from-a");
              return { ...x, versions, ...(named ? { withheldTenants: ["kept-from-a"] } : {}) };
            },
          };
        },
        inFlightMsMax: Number.MAX_SAFE_INTEGER,
        runtime: { ...realRuntime, nowMs: () => 0 },
        log: silentLogger(),
      }).scanPeer("b");
    const kinds = (r: Awaited<ReturnType<typeof scan>>) => r.findings.map((f) => f.key).sort();
    expect(kinds(await scan(false))).toEqual(["k1"]);
    expect(kinds(await scan(true))).toEqual([]);
    for (const st of [a, b]) await st.close();
  });

  describe("a third region served by several nodes (one stream per node)", () => {
    const third = "ap-south-1";
    const [inc1, inc2, gone] = ["1", "2", "9"].map((d) => d.repeat(32)) as [string, string, string];
    /** A holds a record of node 1's stream that B has not received yet; node 2's stream was updated after it. */
    async function scan(heardHere: string[], heardThere: string[], several = new Set([third])) {
      let nowMs = 1_000;
      const a = new SqliteStore({ path: ":memory:", rule, nowMs: () => nowMs });
      const b = new SqliteStore({ path: ":memory:", rule, nowMs: () => nowMs });
      const batch = (incarnation: string, key: string) => ({
        origin: third,
        incarnation,
        firstLsn: 1,
        lastLsn: 1,
        records: [
          {
            key,
            tenant: "t",
            outcome: "ok",
            bodyJson: undefined,
            lsn: 1,
            hlc: { wallMs: 1, logical: 0 },
            flags: 0,
          },
        ],
      });
      a.applySync(batch(inc1, "k1"));
      nowMs += 1_000;
      a.applySync(batch(inc2, "k2"));
      b.applySync(batch(inc2, "k2"));
      const remote = storeRemote(b, "b", "0".repeat(32));
      const d = new DivergenceDetector({
        region: "a",
        incarnation: () => "a".repeat(32),
        severalNodes: {
          regions: several,
          heard: () => heardHere.map((incarnation) => ({ region: third, incarnation })),
        },
        store: a,
        remote: () => ({
          ...remote,
          watermarks: async () => ({
            ...(await remote.watermarks()),
            seen: heardThere.map((incarnation) => ({
              region: third,
              incarnation,
              boot: "x",
              agoMs: 0,
              firstAgoMs: 0,
            })),
          }),
        }),
        inFlightMsMax: Number.MAX_SAFE_INTEGER,
        runtime: { ...realRuntime, nowMs: () => 0 },
        log: silentLogger(),
      });
      try {
        return (await d.scanPeer("b")).findings;
      } finally {
        await a.close();
        await b.close();
      }
    }

    it("a live node's stream is in flight, whichever side heard the node", async () => {
      expect(await scan([inc1, inc2], [])).toEqual([]);
      expect(await scan([], [inc1, inc2])).toEqual([]);
      expect(await scan([inc1], [inc2])).toEqual([]);
    });

    it("a region not configured with several nodes keeps the old rule: its stream updated last is its live one", async () => {
      const findings = await scan([inc1, inc2], [inc1, inc2], new Set());
      expect(findings.map((f) => [f.kind, f.key, f.missingIn])).toEqual([["missing", "k1", "b"]]);
    });

    it("a stream no side heard from lately is dead: what it lacks is reported", async () => {
      const findings = await scan([inc2, gone], [inc2]);
      expect(findings.map((f) => [f.kind, f.key, f.missingIn])).toEqual([["missing", "k1", "b"]]);
    });
  });
});
