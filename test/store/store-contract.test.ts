/**
 * The dedup store's contract, run against SQLite and PostgreSQL alike (test/support/stores.ts):
 * - convergence (invariants 3 and 4): for any records written in 2-5 regions, every store
 *   that applied all of them, whatever the delivery order, with any re-delivery and any
 *   refused out-of-order batch, holds the same winners, conflicts and digest, and the
 *   winner of each key is the one the rule picks (a model written here, not merge.ts);
 * - a batch applies once, all or nothing, watermark included;
 * - digests are equal for equal content, across the two engines too;
 * - streams by LSN, hand edits found by scrub and undone by repair, export pages,
 *   conflicts, deleteSince, meta;
 * - two handles on one store (two nodes of a region) applying at once end as one applying
 *   everything in order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { WalRecord } from "../../src/wal/index.js";
import {
  bucketCount,
  bucketOf,
  nodeDigest,
  treeFanout,
  type ApplyBatchInput,
  type DedupStore,
  type MergeRule,
} from "../../src/store/index.js";
import { bothStoreKinds, storeKinds, type StoreKind } from "../support/stores.js";

const regions = ["ap-south-1", "eu-west-1", "us-east-1", "us-west-2", "sa-east-1"];
const incarnation = "00000000000000000000000000000001";

interface Stream {
  origin: string;
  batches: ApplyBatchInput[];
}

/** Each origin writes records for keys from a small pool (so keys collide), cut into batches. */
const streamsArb = fc.integer({ min: 2, max: 5 }).chain((n) =>
  fc.tuple(
    ...regions.slice(0, n).map((origin) =>
      fc
        .array(
          fc.record({
            key: fc.constantFrom("a", "b", "c", "d", "e", "f"),
            outcome: fc.constantFrom("accepted", "rejected", "escalated"),
            wallMs: fc.integer({ min: 1000, max: 1010 }), // narrow: equal timestamps happen
            logical: fc.integer({ min: 0, max: 2 }),
            cut: fc.boolean(),
          }),
          { maxLength: 12 },
        )
        .map((rs): Stream => {
          const batches: ApplyBatchInput[] = [];
          let current: WalRecord[] = [];
          rs.forEach((r, i) => {
            current.push({
              key: r.key,
              tenant: "t",
              outcome: r.outcome,
              bodyJson: undefined,
              lsn: i + 1,
              hlc: { wallMs: r.wallMs, logical: r.logical },
              flags: 0,
            });
            if (r.cut || i === rs.length - 1) {
              batches.push({
                origin,
                incarnation,
                firstLsn: current[0]!.lsn,
                lastLsn: i + 1,
                records: current,
              });
              current = [];
            }
          });
          return { origin, batches };
        }),
    ),
  ),
);

/** A delivery schedule: (stream, batch) picks, any order, repeats allowed. */
const scheduleArb = fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 40 });

async function deliver(
  store: DedupStore,
  streams: Stream[],
  schedule: Array<[number, number]>,
): Promise<void> {
  for (const [s, b] of schedule) {
    const stream = streams[s % streams.length]!;
    if (stream.batches.length === 0) continue;
    await store.applyBatch(stream.batches[b % stream.batches.length]!); // may be "gap" or "already": both change nothing
  }
  // Then everything in order (what the shippers eventually achieve), twice.
  for (let round = 0; round < 2; round++)
    for (const stream of streams) for (const batch of stream.batches) await store.applyBatch(batch);
}

async function snapshot(store: DedupStore) {
  const winners: Record<string, unknown> = {};
  for (const k of ["a", "b", "c", "d", "e", "f"]) winners[k] = await store.get(k);
  const losers = (await store.conflicts({ limit: 10_000 }))
    .map((c) => `${c.key}/${c.loser.origin}/${c.loser.lsn}`)
    .sort();
  return {
    winners,
    losers,
    digest: await store.rootDigest(),
    stats: await store.stats(),
    watermarks: (await store.watermarks()).map((w) => [w.origin, w.lsn]).sort(),
  };
}

/**
 * The rules as the design states them, written out without merge.ts, so a change to the
 * rule under test cannot also change what the test expects:
 * - first write wins: the earliest timestamp; on a tie, the origin whose name sorts first;
 * - last write wins: the latest timestamp; on a tie, the origin whose name sorts last;
 * - primary wins: the origin earliest in the priority list (unlisted ones last); on a tie,
 *   first write wins.
 */
function plainWinner(
  rule: MergeRule,
  versions: Array<{ origin: string; lsn: number; hlc: { wallMs: number; logical: number } }>,
) {
  const rank = (o: string) => {
    if (rule.kind !== "primary-wins") return 0;
    const i = rule.priority.indexOf(o);
    return i === -1 ? rule.priority.length : i;
  };
  // Written earlier: by timestamp, then origin name, then (one origin, one timestamp: only a
  // generator makes those) the one written first in its stream.
  const earlier = (x: (typeof versions)[0], y: (typeof versions)[0]) =>
    x.hlc.wallMs < y.hlc.wallMs ||
    (x.hlc.wallMs === y.hlc.wallMs &&
      (x.hlc.logical < y.hlc.logical ||
        (x.hlc.logical === y.hlc.logical &&
          (x.origin < y.origin || (x.origin === y.origin && x.lsn < y.lsn)))));
  let best = versions[0]!;
  for (const v of versions.slice(1)) {
    const beats =
      rule.kind === "last-write-wins"
        ? earlier(best, v)
        : rank(v.origin) < rank(best.origin) || (rank(v.origin) === rank(best.origin) && earlier(v, best));
    if (beats) best = v;
  }
  return best;
}

const rules: MergeRule[] = [
  { kind: "first-write-wins" },
  { kind: "last-write-wins" },
  { kind: "primary-wins", priority: ["us-west-2", "ap-south-1"] },
];

const records = (origin: string, from: number, n: number, keyOf = (i: number) => `key-${i}`, wallMs = 5000) =>
  Array.from({ length: n }, (_, i): WalRecord => ({
    key: keyOf(from + i),
    tenant: "t",
    outcome: i % 2 ? "accepted" : "rejected",
    bodyJson: `{"i":${from + i},"o":"${origin}"}`,
    lsn: from + i,
    hlc: { wallMs: wallMs + from + i, logical: 0 },
    flags: 0,
  }));
const batch = (origin: string, rs: WalRecord[]): ApplyBatchInput => ({
  origin,
  incarnation,
  firstLsn: rs[0]!.lsn,
  lastLsn: rs.at(-1)!.lsn,
  records: rs,
});
const fww: MergeRule = { kind: "first-write-wins" };

/**
 * us-east-1's records 1..n, then eu-west-1's earlier versions of keys 5..9 (its LSNs 1..5):
 * they win (first write), and us-east-1's versions of those keys are kept as conflict losers.
 */
async function applyWithLosers(store: DedupStore, n: number): Promise<void> {
  await store.applyBatch(batch("us-east-1", records("us-east-1", 1, n)));
  await store.applyBatch(
    batch(
      "eu-west-1",
      records("eu-west-1", 5, 5, undefined, 0).map((r, i) => ({ ...r, lsn: i + 1 })),
    ),
  );
}

async function using<T>(kind: StoreKind, rule: MergeRule, slot: string, fn: (s: DedupStore) => Promise<T>) {
  const { store } = await kind.open(rule, slot);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

describe.each(storeKinds)("the $name store", (kind) => {
  for (const rule of rules) {
    it(`${rule.kind}: any delivery order and duplication converges to the rule's winners`, async () => {
      await fc.assert(
        fc.asyncProperty(streamsArb, scheduleArb, scheduleArb, async (streams, s1, s2) => {
          const a = (await kind.open(rule, "a")).store;
          const b = (await kind.open(rule, "b")).store;
          try {
            await deliver(a, streams, s1);
            await deliver(b, streams, s2);
            const [sa, sb] = [await snapshot(a), await snapshot(b)];
            expect(sa).toEqual(sb);
            // The winner is the rule's pick over all versions of the key.
            const all = streams.flatMap((s) =>
              s.batches.flatMap((bt) => bt.records.map((r) => ({ ...r, origin: s.origin, incarnation }))),
            );
            for (const key of new Set(all.map((r) => r.key))) {
              const best = plainWinner(
                rule,
                all.filter((r) => r.key === key),
              );
              expect(sa.winners[key]).toMatchObject({ origin: best.origin, lsn: best.lsn });
            }
            expect(sa.stats.records + sa.stats.conflicts).toBe(all.length); // every version kept: winner or loser
          } finally {
            await a.close();
            await b.close();
          }
        }),
        { numRuns: kind.runs },
      );
    });
  }

  it("applying a batch twice equals applying it once, and a gap changes nothing", async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb, async (streams) => {
        const once = (await kind.open(rules[0]!, "a")).store;
        const twice = (await kind.open(rules[0]!, "b")).store;
        try {
          for (const s of streams) {
            for (const batch of s.batches) {
              await once.applyBatch(batch);
              const first = await twice.applyBatch(batch);
              const second = await twice.applyBatch(batch);
              expect(first.status).toBe("applied");
              expect(second).toEqual({ status: "already", watermark: batch.lastLsn });
            }
            if (s.batches.length > 0) {
              const beyond = { ...s.batches[0]!, firstLsn: 1000, lastLsn: 1001 };
              expect((await twice.applyBatch(beyond)).status).toBe("gap");
            }
          }
          expect(await snapshot(once)).toEqual(await snapshot(twice));
        } finally {
          await once.close();
          await twice.close();
        }
      }),
      { numRuns: kind.runs },
    );
  });

  it("answers each batch with what it did: applied, duplicates (versions held already) and the conflicts it decided", async () => {
    const opened = await kind.open(fww, "a");
    const store = opened.store;
    try {
      const us = records("us-east-1", 1, 3, (i) => ["a", "b", "c"][i - 1]!);
      expect(await store.applyBatch(batch("us-east-1", us))).toEqual({
        status: "applied",
        watermark: 3,
        applied: 3,
        duplicates: 0,
        conflicts: [],
      });
      // eu-west-1 decided "a" earlier (it wins) and "d" alone.
      const eu = records("eu-west-1", 1, 2, (i) => ["a", "d"][i - 1]!, 0);
      const version = ({ flags: _f, ...r }: WalRecord, origin: string) => ({ ...r, origin, incarnation });
      expect(await store.applyBatch(batch("eu-west-1", eu))).toEqual({
        status: "applied",
        watermark: 2,
        applied: 2,
        duplicates: 0,
        conflicts: [
          {
            key: "a",
            winner: version(eu[0]!, "eu-west-1"),
            loser: version(us[0]!, "us-east-1"),
            rule: "first-write-wins",
          },
        ],
      });
      // A batch that overlaps what was applied: only the LSNs above the watermark count.
      const more = records("eu-west-1", 2, 2, (i) => ["d", "e"][i - 2]!, 0);
      expect(await store.applyBatch(batch("eu-west-1", more))).toEqual({
        status: "applied",
        watermark: 3,
        applied: 1,
        duplicates: 0,
        conflicts: [],
      });
      // A backfill (below the watermark, which stays): a version held already, as winner or
      // as loser, is a duplicate, not a conflict decided again; a missing one is applied.
      await opened.exec("DELETE FROM records WHERE key = $1", ["b"]);
      expect(await store.applyBatch({ ...batch("us-east-1", us), backfill: true })).toEqual({
        status: "applied",
        watermark: 3,
        applied: 1,
        duplicates: 2,
        conflicts: [],
      });
      expect(await store.get("b")).toMatchObject({ origin: "us-east-1", lsn: 2 });
      expect(await store.applyBatch(batch("us-east-1", us))).toEqual({ status: "already", watermark: 3 });
    } finally {
      await store.close();
    }
  });

  it("a batch that fails half way changes nothing: records, conflicts, watermark and digest stay as they were", async () => {
    await using(kind, fww, "a", async (store) => {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 10)));
      const before = { stats: await store.stats(), root: await store.rootDigest() };
      // The third record cannot be stored (NOT NULL timestamp): the two before it, and the
      // conflict the first makes with an earlier version, must not stay either.
      await store.applyBatch(
        batch(
          "eu-west-1",
          records("eu-west-1", 1, 1, () => "key-11", 0),
        ),
      );
      const mid = { stats: await store.stats(), root: await store.rootDigest() };
      const poisoned = records("us-east-1", 11, 5).map((r, i) =>
        i === 2 ? { ...r, hlc: { wallMs: null as unknown as number, logical: 0 } } : r,
      );
      for (const apply of [store.applyBatch.bind(store), store.applyLocal.bind(store)])
        await expect(apply(batch("us-east-1", poisoned))).rejects.toThrow(
          /^store .*: apply( a batch)? failed/,
        );
      expect(await store.stats()).toEqual(mid.stats);
      expect(await store.rootDigest()).toBe(mid.root);
      expect(mid.root).not.toBe(before.root);
      expect(await store.watermark("us-east-1", incarnation)).toBe(10);
      expect((await store.get("key-11"))?.origin).toBe("eu-west-1");
      expect(await store.get("key-12")).toBeUndefined();
    });
  });

  it("finds every version of a stream by LSN, winners and losers, and tells a hand-edited copy from an intact one; scrub shows the edit, repair undoes it", async () => {
    const opened = await kind.open(fww, "a");
    const store = opened.store;
    try {
      await applyWithLosers(store, 20);
      const stream = await store.streamVersions("us-east-1", incarnation, 1, 20, 100);
      expect(stream.map((v) => v.lsn)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(stream.every((v) => v.origin === "us-east-1" && v.intact)).toBe(true);
      expect(await store.streamVersions("us-east-1", incarnation, 21, 30, 100)).toEqual([]);
      expect((await store.streamVersions("us-east-1", incarnation, 3, 6, 2)).map((v) => v.lsn)).toEqual([
        3, 4,
      ]);
      const root = await store.rootDigest();
      const original = (await store.get("key-15"))!;

      await opened.exec("UPDATE records SET outcome = 'tampered' WHERE key = $1", ["key-15"]);
      expect(await store.rootDigest()).toBe(root); // nothing the engine wrote changed
      const [edited] = await store.streamVersions("us-east-1", incarnation, 15, 15, 1);
      expect(edited).toMatchObject({ outcome: "tampered", intact: false });
      // A bootstrap or rebuild copying from this store never gets the edited copy (simulator seed 52).
      const exported = async () => (await store.exportPage({ limit: 1000 })).versions.map((v) => v.key);
      expect(await exported()).not.toContain("key-15");
      expect(await exported()).toContain("key-14");
      // Slices as the monitor scrubs them: every other bucket (wrapping past the last) finds
      // nothing, the edited one alone finds it.
      const edited15 = bucketOf("key-15");
      expect(await store.scrub(edited15 + 1, bucketCount - 1)).toEqual([]);
      expect(await store.rootDigest()).toBe(root);
      expect(await store.scrub(edited15, 1)).toEqual([edited15]);
      expect(await store.rootDigest()).not.toBe(root);
      const inBucket = await store.bucketVersions([bucketOf("key-15")]);
      expect(inBucket.find((v) => v.key === "key-15")).toMatchObject({ intact: false });
      expect(await store.scrub(0, bucketCount)).toEqual([]); // corrected once

      expect(await store.repair([original])).toEqual(["key-15"]);
      expect(await exported()).toContain("key-15");
      expect(await store.rootDigest()).toBe(root);
      expect((await store.streamVersions("us-east-1", incarnation, 15, 15, 1))[0]).toMatchObject({
        outcome: original.outcome,
        intact: true,
      });
      expect(await store.repair([original])).toEqual([]); // already as established
    } finally {
      await store.close();
    }
  });

  it("a scrub names the wrong buckets in the order it reads them, from its first bucket across the wrap", async () => {
    const opened = await kind.open(fww, "a");
    const store = opened.store;
    try {
      await applyWithLosers(store, 20);
      // Three keys of distinct buckets, lowest first; the scrub starts at the middle one.
      const byBucket = new Map(
        Array.from({ length: 20 }, (_, i) => `key-${i + 1}`).map((k) => [bucketOf(k), k]),
      );
      const [low, mid, high] = [...byBucket.keys()]
        .sort((a, b) => a - b)
        .filter((_, i, all) => [0, Math.floor(all.length / 2), all.length - 1].includes(i));
      // From each of the three: an order the engine's own reads give cannot match all three.
      const starts: [number, number[]][] = [
        [low!, [low!, mid!, high!]],
        [mid!, [mid!, high!, low!]],
        [high!, [high!, low!, mid!]],
        [high! + 1, [low!, mid!, high!]],
      ];
      for (const [round, [from, order]] of starts.entries()) {
        for (const b of [low!, mid!, high!])
          await opened.exec("UPDATE records SET outcome = $1 WHERE key = $2", [
            `edit ${round}`,
            byBucket.get(b),
          ]);
        expect(await store.scrub(from, bucketCount)).toEqual(order);
        expect(await store.scrub(from, bucketCount)).toEqual([]);
      }
    } finally {
      await store.close();
    }
  });

  it("a conflict loser changed by hand, or whose hash was cleared or replaced, is not intact evidence; a read of it never fails", async () => {
    const opened = await kind.open(fww, "a");
    const store = opened.store;
    try {
      await applyWithLosers(store, 10);
      const before = await store.streamVersions("us-east-1", incarnation, 5, 9, 10);
      expect(before.map((v) => [v.lsn, v.intact])).toEqual([5, 6, 7, 8, 9].map((l) => [l, true]));

      await opened.exec("UPDATE conflicts SET outcome = 'edited by hand' WHERE key = $1", ["key-7"]);
      await opened.exec("UPDATE conflicts SET body = NULL WHERE key = $1", ["key-6"]);
      await opened.exec("UPDATE conflicts SET vh = NULL WHERE key = $1", ["key-8"]);
      await opened.exec("UPDATE conflicts SET vh = $1 WHERE key = $2", ["", "key-9"]); // text in SQLite
      const after = await store.streamVersions("us-east-1", incarnation, 5, 9, 10);
      expect(after.map((v) => [v.lsn, v.intact])).toEqual([
        [5, true],
        [6, false],
        [7, false],
        [8, false],
        [9, false],
      ]);
      expect(after[2]).toMatchObject({ key: "key-7", outcome: "edited by hand" }); // as found, for the operator
      // The winners of those keys are untouched: the digest never covered losers.
      expect((await store.get("key-7"))!.origin).toBe("eu-west-1");

      // A repair with the true versions (crr verify, from the origin's WAL or a peer) puts each
      // back over its loser row, which keeps its id; an intact loser is left as it is.
      const ids = (await store.conflicts()).map((c) => [c.id, c.loser.lsn]);
      // The versions as the origin sent them (the ledger), not as this store read them back.
      const truth = records("us-east-1", 1, 10)
        .slice(4, 9)
        .map(({ flags: _f, ...r }) => ({ ...r, origin: "us-east-1", incarnation }));
      expect(await store.repair(truth)).toEqual([]); // no winner changed
      const healed = await store.streamVersions("us-east-1", incarnation, 5, 9, 10);
      expect(healed).toEqual(truth.map((v) => ({ ...v, intact: true })));
      expect((await store.conflicts()).map((c) => [c.id, c.loser.lsn])).toEqual(ids);
      expect((await store.stats()).conflicts).toBe(5);
    } finally {
      await store.close();
    }
  });

  it("a winner changed by hand that a newer decision beats is not kept as a loser, before or after a scrub noted it (simulator seed 1151)", async () => {
    for (const scrubbed of [false, true]) {
      const opened = await kind.open(fww, scrubbed ? "b" : "a");
      const store = opened.store;
      try {
        await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 3)));
        await opened.exec("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", ["key-2"]);
        if (scrubbed) await store.scrub(0, bucketCount);
        // eu-west-1 decided key-2 earlier: it wins (first write), and the edited copy is displaced.
        const r = await store.applyBatch(
          batch(
            "eu-west-1",
            records("eu-west-1", 2, 1, undefined, 0).map((x) => ({ ...x, lsn: 1 })),
          ),
        );
        expect(r).toMatchObject({ status: "applied", applied: 1 });
        expect(r.status === "applied" && r.conflicts).toEqual([
          expect.objectContaining({ key: "key-2", loserDamaged: true }),
        ]);
        expect(await store.conflicts()).toEqual([]);
        // Noted in the same transaction for the audit pump, the copy as found, until forgotten.
        const noted = await store.auditNotes(10);
        expect(noted).toEqual([
          {
            id: expect.any(Number),
            entry: {
              kind: "tampered-displaced",
              key: "key-2",
              displaced: expect.objectContaining({ origin: "us-east-1", lsn: 2, outcome: "edited by hand" }),
              winner: (await store.get("key-2"))!,
              detectedAtMs: expect.any(Number),
            },
          },
        ]);
        await store.forgetAuditNotes([noted[0]!.id]);
        expect(await store.auditNotes(10)).toEqual([]);
        // Its LSN is missing (crr verify puts an intact copy back); the new winner is intact.
        expect((await store.streamVersions("us-east-1", incarnation, 1, 3, 10)).map((v) => v.lsn)).toEqual([
          1, 3,
        ]);
        expect(await store.streamVersions("eu-west-1", incarnation, 1, 1, 1)).toEqual([
          expect.objectContaining({ key: "key-2", intact: true }),
        ]);
        // An intact copy of the displaced version put back is kept as the loser.
        const original = records("us-east-1", 1, 3)[1]!;
        const { flags: _flags, ...version } = { ...original, origin: "us-east-1", incarnation };
        expect(await store.repair([version])).toEqual([]);
        expect((await store.conflicts()).map((c) => [c.loser.origin, c.loser.lsn, c.loser.outcome])).toEqual([
          ["us-east-1", 2, original.outcome],
        ]);
      } finally {
        await store.close();
      }
    }
  });

  it("repair: the true version of a winner edited by hand is written over it, and the edit is kept nowhere; a version that beats an edited winner does not keep the edit as its loser", async () => {
    const opened = await kind.open(fww, "a");
    const store = opened.store;
    try {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 3)));
      const root = await store.rootDigest();
      const truth = records("us-east-1", 1, 3).map(({ flags: _f, ...r }) => ({
        ...r,
        origin: "us-east-1",
        incarnation,
      }));
      // The row's content edited, its version hash left as it was (what a hand edit does).
      await opened.exec("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", ["key-1"]);
      expect(await store.repair([truth[0]!])).toEqual(["key-1"]);
      expect(await store.streamVersions("us-east-1", incarnation, 1, 1, 1)).toEqual([
        { ...truth[0], intact: true },
      ]);
      expect(await store.conflicts()).toEqual([]); // not a loser of itself
      expect(await store.rootDigest()).toBe(root);
      expect(await store.repair([truth[0]!])).toEqual([]); // intact now: nothing to write
      // eu-west-1's earlier version of key-2 beats the winner edited here: the edit is no loser.
      await opened.exec("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", ["key-2"]);
      const earlier = { ...truth[1]!, origin: "eu-west-1", lsn: 1, hlc: { wallMs: 1, logical: 0 } };
      expect(await store.repair([earlier])).toEqual(["key-2"]);
      expect(await store.get("key-2")).toEqual(earlier);
      expect(await store.conflicts()).toEqual([]);
      // Audited as displaced, as a stream's newer decision would have it (found by review).
      expect((await store.auditNotes(10)).map((n) => n.entry)).toEqual([
        {
          kind: "tampered-displaced",
          key: "key-2",
          displaced: { ...truth[1], outcome: "edited by hand" },
          winner: earlier,
          detectedAtMs: expect.any(Number),
        },
      ]);
      // A key the scrubber noted, then deleted by hand: its true version put back is intact.
      await opened.exec("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", ["key-3"]);
      expect(await store.scrub(0, bucketCount)).toHaveLength(1);
      await opened.exec("DELETE FROM records WHERE key = $1", ["key-3"]);
      expect(await store.repair([truth[2]!])).toEqual(["key-3"]);
      expect(await store.streamVersions("us-east-1", incarnation, 3, 3, 1)).toEqual([
        { ...truth[2], intact: true },
      ]);
      // A key the scrubber noted, repaired in place (its row updated, not inserted): intact after.
      await opened.exec("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", ["key-1"]);
      await store.scrub(0, bucketCount);
      expect((await store.streamVersions("us-east-1", incarnation, 1, 1, 1))[0]!.intact).toBe(false);
      expect(await store.repair([truth[0]!])).toEqual(["key-1"]);
      expect(await store.streamVersions("us-east-1", incarnation, 1, 1, 1)).toEqual([
        { ...truth[0], intact: true },
      ]);
    } finally {
      await store.close();
    }
  });

  it("a scrubber's note goes only when the engine writes the key again: a version applied after a hand delete is intact, a row put back by hand is not", async () => {
    const opened = await kind.open(fww, "a");
    let store = opened.store;
    try {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 4)));
      const intactOf = async (origin: string, lsn: number) =>
        (await store.streamVersions(origin, incarnation, lsn, lsn, 1)).map((v) => v.intact);
      const edit = (key: string, outcome: string) =>
        opened.exec("UPDATE records SET outcome = $1 WHERE key = $2", [outcome, key]);
      // key-1 edited by hand, noted by the scrubber, deleted by hand; eu-west-1's version of
      // key-1 arrives next, a new key to the store: intact at once, and after a scrub.
      // key-4 edited by hand, noted, deleted by hand; sa-east-1's version of key-4 arrives.
      await edit("key-4", "edited by hand");
      expect(await store.scrub(0, bucketCount)).toEqual([bucketOf("key-4")]);
      await opened.exec("DELETE FROM records WHERE key = $1", ["key-4"]);
      await store.applyBatch(
        batch(
          "sa-east-1",
          records("sa-east-1", 1, 1, () => "key-4"),
        ),
      );
      expect(await intactOf("sa-east-1", 1)).toEqual([true]);
      expect(await store.scrub(0, bucketCount)).toEqual([bucketOf("key-4")]); // the hand delete
      expect(await intactOf("sa-east-1", 1)).toEqual([true]);
      // The same with key-1 and a restart in between: the store knows it holds a note from its tables.
      await edit("key-1", "edited by hand");
      expect(await store.scrub(0, bucketCount)).toEqual([bucketOf("key-1")]);
      await store.close();
      store = await opened.another();
      await opened.exec("DELETE FROM records WHERE key = $1", ["key-1"]);
      await store.applyBatch(batch("eu-west-1", records("eu-west-1", 1, 1)));
      expect(await intactOf("eu-west-1", 1)).toEqual([true]);
      await store.scrub(0, bucketCount);
      expect(await intactOf("eu-west-1", 1)).toEqual([true]);
      // key-2 edited twice, each edit scrubbed: not intact, however often scrubbed.
      await edit("key-2", "edited by hand");
      expect(await store.scrub(0, bucketCount)).toEqual([bucketOf("key-2")]);
      await edit("key-2", "edited again");
      expect(await store.scrub(0, bucketCount)).toEqual([bucketOf("key-2")]);
      expect(await store.scrub(0, bucketCount)).toEqual([]);
      expect(await intactOf("us-east-1", 2)).toEqual([false]);
      // key-3 edited and scrubbed (its row then matches its stored hash), deleted by hand,
      // scrubbed, and its row put back by hand as it was: still not intact (found by review).
      await edit("key-3", "edited by hand");
      await store.scrub(0, bucketCount);
      await opened.exec("CREATE TABLE kept_by_hand AS SELECT * FROM records WHERE key = 'key-3'");
      await opened.exec("DELETE FROM records WHERE key = $1", ["key-3"]);
      await store.scrub(0, bucketCount);
      await opened.exec("INSERT INTO records SELECT * FROM kept_by_hand");
      await opened.exec("DROP TABLE kept_by_hand");
      await store.scrub(0, bucketCount);
      expect(await intactOf("us-east-1", 3)).toEqual([false]);
    } finally {
      await store.close();
    }
  });

  it("a stream read prefers the intact copy of an LSN held both as a winner and as a loser", async () => {
    const opened = await kind.open(fww, "a");
    const store = opened.store;
    try {
      // us-east-1's key-2 loses to eu-west-1's earlier version, then that winner is lost (a hand
      // delete) and us-east-1's version is put back as the winner: LSN 2 is in both tables.
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 3)));
      await store.applyBatch(
        batch(
          "eu-west-1",
          records("eu-west-1", 2, 1, undefined, 0).map((r) => ({ ...r, lsn: 1 })),
        ),
      );
      await opened.exec("DELETE FROM records WHERE key = $1", ["key-2"]);
      const truth = records("us-east-1", 1, 3).map(({ flags: _f, ...r }) => ({
        ...r,
        origin: "us-east-1",
        incarnation,
      }))[1]!;
      expect(await store.repair([truth])).toEqual(["key-2"]);
      expect((await store.conflicts()).map((c) => [c.loser.origin, c.loser.lsn])).toEqual([["us-east-1", 2]]);
      // The winner's row edited: the loser's copy is the intact one.
      await opened.exec("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", ["key-2"]);
      expect(await store.streamVersions("us-east-1", incarnation, 2, 2, 1)).toEqual([
        { ...truth, intact: true },
      ]);
      // The winner put back and the loser's row edited instead: the winner's copy is.
      expect(await store.repair([truth])).toEqual(["key-2"]);
      await opened.exec("UPDATE conflicts SET outcome = 'edited by hand' WHERE key = $1", ["key-2"]);
      expect(await store.streamVersions("us-east-1", incarnation, 2, 2, 1)).toEqual([
        { ...truth, intact: true },
      ]);
      expect((await store.streamVersions("us-east-1", incarnation, 1, 3, 10)).map((v) => v.lsn)).toEqual([
        1, 2, 3,
      ]);
    } finally {
      await store.close();
    }
  });

  it("repair: a version the rule prefers replaces the winner and the old one is kept as a loser; one it does not is kept as a loser", async () => {
    await using(kind, fww, "a", async (store) => {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 2)));
      const earlier = {
        ...(await store.get("key-1"))!,
        origin: "eu-west-1",
        lsn: 7,
        hlc: { wallMs: 1, logical: 0 },
      };
      const later = {
        ...(await store.get("key-2"))!,
        origin: "eu-west-1",
        lsn: 8,
        hlc: { wallMs: 9e9, logical: 0 },
      };
      expect(await store.repair([earlier, later])).toEqual(["key-1"]);
      expect(await store.get("key-1")).toMatchObject({ origin: "eu-west-1", lsn: 7 });
      expect(await store.get("key-2")).toMatchObject({ origin: "us-east-1", lsn: 2 });
      const losers = (await store.conflicts()).map((c) => `${c.key}:${c.loser.origin}:${c.winner.origin}`);
      expect(losers.sort()).toEqual(["key-1:us-east-1:eu-west-1", "key-2:eu-west-1:us-east-1"]);
      expect(await store.watermark("eu-west-1", incarnation)).toBe(0); // repair never moves a watermark
      expect(await store.auditNotes(10)).toEqual([]); // not asked to audit
    });
  });

  it("repair with an audit notes each version it wrote as a winner, in its own transaction; nothing else", async () => {
    await using(kind, fww, "a", async (store) => {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 3)));
      const v = (key: string, lsn: number, wallMs: number) => ({
        ...(records("us-east-1", 1, 3).find((r) => r.key === key) as WalRecord),
        origin: "eu-west-1",
        incarnation,
        lsn,
        hlc: { wallMs, logical: 0 },
      });
      const { flags: _a, ...earlier } = v("key-1", 7, 1); // wins
      const { flags: _b, ...later } = v("key-2", 8, 9e9); // loses: kept as a loser
      const { flags: _c, ...fresh } = { ...v("key-1", 9, 1), key: "key-9" }; // a key not held
      const held = (await store.get("key-3"))!; // the same version, intact: nothing written
      expect(await store.repair([earlier, later, fresh, held], { requestedBy: "ops" })).toEqual([
        "key-1",
        "key-9",
      ]);
      const notes = await store.auditNotes(10);
      expect(notes.map((n) => n.entry)).toEqual([
        { kind: "repair", key: "key-1", requestedBy: "ops", written: earlier, rule: "first-write-wins" },
        { kind: "repair", key: "key-9", requestedBy: "ops", written: fresh, rule: "first-write-wins" },
      ]);
      expect(notes[0]!.id).toBeLessThan(notes[1]!.id);
      expect(await store.auditNotes(10, notes[0]!.id)).toEqual([notes[1]]); // a page after an id
    });
  });

  it("exports every winner once in key order across pages, by origin, leaving out covered streams", async () => {
    await using(kind, fww, "a", async (store) => {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 30)));
      await store.applyBatch(
        batch(
          "eu-west-1",
          records("eu-west-1", 1, 12, (i) => `eu-${i}`),
        ),
      );
      const pages = async (o: {
        origin?: string;
        covered?: Array<{ origin: string; incarnation: string; lsn: number }>;
      }) => {
        const keys: string[] = [];
        let after: { bucket: number; key: string } | undefined;
        do {
          const page = await store.exportPage({ ...o, after, limit: 7 });
          keys.push(...page.versions.map((v) => v.key));
          after = page.next;
        } while (after);
        return keys;
      };
      const all = await pages({});
      expect(all).toHaveLength(42);
      expect(new Set(all).size).toBe(42);
      expect(all.map((k) => bucketOf(k))).toEqual(all.map((k) => bucketOf(k)).sort((a, b) => a - b));
      expect((await pages({ origin: "eu-west-1" })).sort()).toEqual(
        Array.from({ length: 12 }, (_, i) => `eu-${i + 1}`).sort(),
      );
      const rest = await pages({ covered: [{ origin: "us-east-1", incarnation, lsn: 25 }] });
      expect(rest.filter((k) => k.startsWith("key-")).sort()).toEqual(
        ["key-26", "key-27", "key-28", "key-29", "key-30"].sort(),
      );
      // One page that holds everything says there is no next one; the first bucket is in it.
      let first = 0;
      while (bucketOf(`first-${first}`) !== 0) first++;
      await store.applyBatch(
        batch(
          "ap-south-1",
          records("ap-south-1", 1, 1, () => `first-${first}`),
        ),
      );
      const whole = await store.exportPage({ limit: 1000 });
      expect(whole.next).toBeUndefined();
      expect(whole.versions.map((v) => v.key)[0]).toBe(`first-${first}`);
      expect(whole.versions).toHaveLength(43);
    });
  });

  it("lists conflicts after an id with the key's current winner; numbers new ones above a reserved mark", async () => {
    await using(kind, fww, "a", async (store) => {
      await store.reserveConflictIds(3);
      await store.reserveConflictIds(2); // never lowers it
      await store.applyBatch(
        batch(
          "a",
          records("a", 1, 1, () => "shared"),
        ),
      );
      await store.applyBatch(
        batch(
          "b",
          records("b", 1, 1, () => "shared", 6000),
        ),
      );
      await store.applyBatch(
        batch(
          "c",
          records("c", 1, 1, () => "shared", 0),
        ),
      );
      const rows = await store.conflicts({ afterId: 3, limit: 10 });
      expect(rows.map((c) => c.id)).toEqual([4, 5]);
      expect(rows.map((c) => c.loser.origin)).toEqual(["b", "a"]);
      expect(rows.every((c) => c.winner.origin === "c")).toBe(true); // the current winner
      expect((await store.conflicts({ afterId: 4 })).map((c) => c.id)).toEqual([5]);
      expect((await store.conflicts({ afterId: 3, limit: 1 })).map((c) => c.id)).toEqual([4]);
      // A bucket that holds nothing adds no version (one key in all: its neighbour is empty).
      const empty = (bucketOf("shared") + 1) % bucketCount;
      expect(await store.bucketVersions([empty, bucketOf("shared"), empty])).toHaveLength(1);
      // Raised again once conflicts were numbered (a log restored ahead of this store).
      await store.reserveConflictIds(20);
      await store.reserveConflictIds(20);
      await store.applyBatch(
        batch(
          "d",
          records("d", 1, 1, () => "shared", 7000),
        ),
      );
      expect((await store.conflicts({ afterId: 5 })).map((c) => c.id)).toEqual([21]);
    });
  });

  it("deleteSince drops what was written from a time on and moves watermarks back before it", async () => {
    await using(kind, fww, "a", async (store) => {
      await store.applyBatch(batch("us-east-1", records("us-east-1", 1, 10)));
      const root = await store.rootDigest();
      await store.applyBatch(batch("us-east-1", records("us-east-1", 11, 10)));
      const removed = await store.deleteSince(5000 + 11);
      expect(removed).toEqual([{ origin: "us-east-1", incarnation, fromLsn: 11, removed: 10 }]);
      expect(await store.watermark("us-east-1", incarnation)).toBe(10);
      expect(await store.rootDigest()).toBe(root);
      expect((await store.applyBatch(batch("us-east-1", records("us-east-1", 11, 10)))).status).toBe(
        "applied",
      );
      // Versions written outside a stream (a bootstrap's exported winners, a repair) above its
      // watermark, or of a stream without one: the watermark is never raised over LSNs the
      // store never received (the review: the origin then skipped them).
      const late = 9e9;
      const outside = (origin: string, lsn: number, key: string) => ({
        key,
        tenant: "t",
        outcome: "accepted",
        bodyJson: undefined,
        origin,
        incarnation,
        lsn,
        hlc: { wallMs: late, logical: 0 },
      });
      await store.repair([outside("us-east-1", 50, "late-1"), outside("eu-west-1", 7, "late-2")]);
      await store.deleteSince(late);
      expect(await store.watermark("us-east-1", incarnation)).toBe(20);
      expect(await store.watermark("eu-west-1", incarnation)).toBe(0);
      expect((await store.watermarks()).map((w) => w.origin)).toEqual(["us-east-1"]);
    });
  });

  it("keeps meta values; is empty only with no record, conflict or watermark; resetWatermark moves either way", async () => {
    await using(kind, fww, "a", async (store) => {
      expect(await store.isEmpty()).toBe(true);
      expect(await store.getMeta("bootstrap")).toBeUndefined();
      await store.setMeta("bootstrap", "running");
      await store.setMeta("bootstrap", "done");
      expect(await store.getMeta("bootstrap")).toBe("done");
      expect(await store.isEmpty()).toBe(true);
      await store.resetWatermark("x", incarnation, 5);
      expect(await store.isEmpty()).toBe(false);
      await store.resetWatermark("x", incarnation, 2);
      expect(await store.watermark("x", incarnation)).toBe(2);
      expect((await store.watermarks()).map((w) => [w.origin, w.lsn])).toEqual([["x", 2]]);
    });
  });

  // Only a store several nodes share (SQLite keeps its digests in the one process that holds the data directory's lock).
  if (kind.shared)
    it("two handles on one store (two nodes of a region) applying overlapping batches at once end as one store applying them in order", async () => {
      const opened = await kind.open(fww, "a");
      const other = await opened.another();
      const model = (await kind.open(fww, "b")).store;
      try {
        // Three origins writing a shared pool of keys; each batch delivered to both handles at once.
        const streams = ["ap-south-1", "eu-west-1", "us-east-1"].map((o, n) =>
          records(o, 1, 60, (i) => `k-${(i * (n + 2)) % 40}`, 5000 + n).map((r, i) => ({
            ...r,
            hlc: { wallMs: 5000 + ((i * 7 + n * 3) % 50), logical: n },
          })),
        );
        const batches = streams.flatMap((rs, n) =>
          Array.from({ length: 6 }, (_, b) =>
            batch(["ap-south-1", "eu-west-1", "us-east-1"][n]!, rs.slice(b * 10, b * 10 + 10)),
          ),
        );
        for (let b = 0; b < 6; b++) {
          const round = batches.filter((_, i) => i % 6 === b);
          const answers = await Promise.all(
            round.flatMap((x) => [opened.store.applyBatch(x), other.applyBatch(x)]),
          );
          // Each batch applied by exactly one handle, "already" on the other.
          for (let i = 0; i < answers.length; i += 2)
            expect([answers[i]!.status, answers[i + 1]!.status].sort()).toEqual(["already", "applied"]);
        }
        for (const x of batches) await model.applyBatch(x);
        expect(await snapshotOf(opened.store, 40)).toEqual(await snapshotOf(model, 40));
        expect(await snapshotOf(other, 40)).toEqual(await snapshotOf(model, 40));
      } finally {
        await other.close();
        await opened.store.close();
        await model.close();
      }
    });
});

async function snapshotOf(store: DedupStore, keys: number) {
  const winners: unknown[] = [];
  for (let k = 0; k < keys; k++) winners.push(await store.get(`k-${k}`));
  const losers = (await store.conflicts({ limit: 10_000 }))
    .map((c) => `${c.key}/${c.loser.origin}/${c.loser.lsn}`)
    .sort();
  return { winners, losers, digest: await store.rootDigest(), stats: await store.stats() };
}

describe("SQLite and PostgreSQL side by side", () => {
  it("the same batches give the same digest tree, bucket contents and stream reads in both engines", async () => {
    const [sq, pgs] = await Promise.all(
      [bothStoreKinds.sqlite, bothStoreKinds.postgres].map((k) => k.open(fww, "x")),
    );
    try {
      for (const s of [sq!.store, pgs!.store]) {
        await s.applyBatch(
          batch(
            "us-east-1",
            records("us-east-1", 1, 200, (i) => `key-${i % 150}`),
          ),
        );
        await s.applyLocal(
          batch(
            "eu-west-1",
            records("eu-west-1", 1, 100, (i) => `key-${i * 3}`, 0),
          ),
        );
      }
      const [a, b] = [sq!.store, pgs!.store];
      expect(await b.rootDigest()).toBe(await a.rootDigest());
      const [ta, tb] = [await a.digestTree(), await b.digestTree()];
      for (let level = 0; level < 3; level++)
        for (let i = 0; i < Math.min(treeFanout ** level, 64); i++)
          expect(nodeDigest(tb, level, i).equals(nodeDigest(ta, level, i))).toBe(true);
      const buckets = [...new Set(["key-3", "key-30", "key-149"].map(bucketOf))];
      const sorted = (vs: Array<{ key: string }>) => [...vs].sort((x, y) => (x.key < y.key ? -1 : 1));
      expect(sorted(await b.bucketVersions(buckets))).toEqual(sorted(await a.bucketVersions(buckets)));
      expect(await b.streamVersions("us-east-1", incarnation, 1, 200, 500)).toEqual(
        await a.streamVersions("us-east-1", incarnation, 1, 200, 500),
      );
      expect(await b.stats()).toEqual(await a.stats());
    } finally {
      await sq!.store.close();
      await pgs!.store.close();
    }
  });
});
