/**
 * Convergence (invariants 3 and 4): for any records written in 2-5 regions, every store that
 * applied all of them - whatever the delivery order, with any re-delivery and any refused
 * out-of-order batch - holds the same winners, the same conflicts and the same digest; the
 * winner of each key is the one the merge rule picks over all its versions.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { WalRecord } from "../wal/index.js";
import type { MergeRule } from "./merge.js";
import { SqliteStore } from "./sqlite-store.js";
import type { ApplyBatchInput } from "./types.js";

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
  store: SqliteStore,
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

async function snapshot(store: SqliteStore) {
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

describe("merge rule and store convergence", () => {
  for (const rule of rules) {
    it(`${rule.kind}: any delivery order and duplication converges to the rule's winners`, async () => {
      await fc.assert(
        fc.asyncProperty(streamsArb, scheduleArb, scheduleArb, async (streams, s1, s2) => {
          const a = new SqliteStore({ path: ":memory:", rule });
          const b = new SqliteStore({ path: ":memory:", rule });
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
        { numRuns: 60 },
      );
    });
  }

  it("applying a batch twice equals applying it once, and a gap changes nothing", async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb, async (streams) => {
        const once = new SqliteStore({ path: ":memory:", rule: rules[0]! });
        const twice = new SqliteStore({ path: ":memory:", rule: rules[0]! });
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
      { numRuns: 60 },
    );
  });
});
