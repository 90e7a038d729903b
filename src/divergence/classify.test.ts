/**
 * Classification of a difference (invariant 7), pure: reported once both sides settled it,
 * never while it may still be in flight, and never in flight forever: age and a dead
 * incarnation settle it too.
 */
import { describe, expect, it } from "vitest";
import type { StoredRecord } from "../store/index.js";
import { classify, deadStreams, streamKey, type ClassifyInput } from "./classify.js";

const inc = "a".repeat(32);
const v = (origin: string, lsn: number, outcome = "accepted", wallMs = 10_000): StoredRecord => ({
  key: "k",
  tenant: "t",
  outcome,
  bodyJson: undefined,
  origin,
  incarnation: inc,
  lsn,
  hlc: { wallMs, logical: 0 },
});
const wm = (entries: Record<string, number>) =>
  new Map(Object.entries(entries).map(([origin, lsn]) => [streamKey(origin, inc), lsn]));

function input(over: Partial<ClassifyInput> & Pick<ClassifyInput, "local" | "remote">): ClassifyInput {
  return {
    key: "k",
    shouldHold: () => true,
    nowMs: 10_500,
    inFlightMsMax: 60_000,
    deadStreams: new Set(),
    ...over,
  };
}

describe("classify", () => {
  it("a record one side lacks is in flight while that side's watermark is below it, missing once it covers it", () => {
    const local = { region: "A", version: v("A", 5), watermarks: wm({ A: 5 }) };
    expect(
      classify(input({ local, remote: { region: "B", version: undefined, watermarks: wm({ A: 4 }) } })),
    ).toBeUndefined();
    expect(
      classify(input({ local, remote: { region: "B", version: undefined, watermarks: wm({ A: 5 }) } })),
    ).toMatchObject({
      kind: "missing",
      missingIn: "B",
      reason: "watermark",
    });
  });

  it("in flight has a bound: older than inFlightMsMax, or of a dead incarnation, it is missing", () => {
    const local = { region: "A", version: v("A", 5, "accepted", 1_000), watermarks: wm({ A: 5 }) };
    const remote = { region: "B", version: undefined, watermarks: wm({ A: 4 }) };
    expect(classify(input({ local, remote, nowMs: 1_000 + 60_000 }))).toBeUndefined();
    expect(classify(input({ local, remote, nowMs: 1_000 + 60_001 }))).toMatchObject({
      kind: "missing",
      reason: "age",
    });
    expect(classify(input({ local, remote, deadStreams: new Set([streamKey("A", inc)]) }))).toMatchObject({
      kind: "missing",
      reason: "dead-incarnation",
    });
  });

  it("two winners are divergent only when each side settled the other's version", () => {
    const a = v("A", 5, "accepted");
    const b = v("B", 3, "rejected");
    const settledBoth = input({
      local: { region: "A", version: a, watermarks: wm({ A: 5, B: 3 }) },
      remote: { region: "B", version: b, watermarks: wm({ A: 5, B: 3 }) },
    });
    expect(classify(settledBoth)).toMatchObject({ kind: "divergent" });
    // Only one side has the other's version: the other may still be on its way.
    const localOnly = input({
      local: { region: "A", version: a, watermarks: wm({ A: 5, B: 3 }) },
      remote: { region: "B", version: b, watermarks: wm({ A: 4, B: 3 }) },
    });
    expect(classify(localOnly)).toBeUndefined();
    const remoteOnly = input({
      local: { region: "A", version: a, watermarks: wm({ A: 5, B: 2 }) },
      remote: { region: "B", version: b, watermarks: wm({ A: 5, B: 3 }) },
    });
    expect(classify(remoteOnly)).toBeUndefined();
  });

  it("the same version with different content is divergent at once (a store changed outside the engine)", () => {
    const local = { region: "A", version: v("A", 5, "accepted"), watermarks: wm({}) };
    const remote = { region: "B", version: v("A", 5, "tampered"), watermarks: wm({}) };
    expect(classify(input({ local, remote }))).toMatchObject({ kind: "divergent", reason: "watermark" });
  });

  it("a copy differing from the other in any one field is divergent; an identical one is no finding", () => {
    // Found by Stryker (divergence-pure): only the outcome was ever changed, so each other
    // field of the comparison could be dropped unseen (a hand edit of a body, hidden).
    const same = v("A", 5);
    const changes: Array<[string, Partial<StoredRecord>]> = [
      ["tenant", { tenant: "t2" }],
      ["body", { bodyJson: '{"n":1}' }],
      ["wall clock", { hlc: { wallMs: 10_001, logical: 0 } }],
      ["logical clock", { hlc: { wallMs: 10_000, logical: 1 } }],
      ["outcome", { outcome: "tampered" }],
    ];
    const local = { region: "A", version: same, watermarks: wm({}) };
    for (const [field, change] of changes) {
      const remote = { region: "B", version: { ...same, ...change }, watermarks: wm({}) };
      expect(classify(input({ local, remote })), field).toMatchObject({ kind: "divergent" });
    }
    const remote = { region: "B", version: { ...same }, watermarks: wm({}) };
    expect(classify(input({ local, remote }))).toBeUndefined();
  });

  it("the local side lacking a record is judged like the remote one: missing in local once settled", () => {
    const remote = { region: "B", version: v("B", 3), watermarks: wm({ B: 3 }) };
    const behind = { region: "A", version: undefined, watermarks: wm({ B: 2 }) };
    expect(classify(input({ local: behind, remote }))).toBeUndefined();
    const settled = { region: "A", version: undefined, watermarks: wm({ B: 3 }) };
    expect(classify(input({ local: settled, remote }))).toMatchObject({
      kind: "missing",
      missingIn: "A",
      reason: "watermark",
    });
  });

  it("a side whose policy was widened to take the record's tenant after it was written: in flight (a backfill brings it) until inFlightMsMax after the widening, then missing by age", () => {
    // B's watermark passed A's LSN 5 while B's policy left tenant t out; since 20 s it takes t.
    const local = { region: "A", version: v("A", 5, "accepted", 10_000), watermarks: wm({ A: 5 }) };
    const widened = { atMs: 20_000, before: ["other"] };
    const remote = { region: "B", version: undefined, watermarks: wm({ A: 5 }), widened };
    expect(classify(input({ local, remote, nowMs: 20_000 + 60_000 }))).toBeUndefined();
    expect(classify(input({ local, remote, nowMs: 20_000 + 60_001 }))).toMatchObject({
      kind: "missing",
      missingIn: "B",
      reason: "age",
    });
    // A tenant it took before, a record written after the widening, or its own record: settled as ever.
    const notNew = { ...remote, widened: { atMs: 20_000, before: ["t"] } };
    expect(classify(input({ local, remote: notNew, nowMs: 21_000 }))).toMatchObject({ reason: "watermark" });
    const later = { ...local, version: v("A", 5, "accepted", 20_001) };
    expect(classify(input({ local: later, remote, nowMs: 21_000 }))).toMatchObject({ reason: "watermark" });
    // Stamped after the widening by a clock up to maxSkewMs ahead: it may have been written before.
    expect(classify(input({ local: later, remote, nowMs: 21_000, maxSkewMs: 1 }))).toBeUndefined();
    const own = { region: "A", version: undefined, watermarks: wm({ A: 5 }), widened };
    const theirs = { region: "B", version: v("A", 5, "accepted", 10_000), watermarks: wm({ A: 5 }) };
    expect(classify(input({ local: own, remote: theirs, nowMs: 21_000 }))).toMatchObject({
      kind: "missing",
      missingIn: "A",
      reason: "watermark",
    });
    // Two winners: the widened side has not settled the other's version yet.
    const mine = {
      region: "B",
      version: v("B", 3, "accepted", 9_000),
      watermarks: wm({ A: 5, B: 3 }),
      widened,
    };
    const lateLocal = { ...local, watermarks: wm({ A: 5, B: 3 }) };
    expect(classify(input({ local: lateLocal, remote: mine, nowMs: 21_000 }))).toBeUndefined();
  });

  it("a record the policy keeps out of the lacking region is no finding", () => {
    const local = { region: "A", version: v("A", 5), watermarks: wm({ A: 5 }) };
    const remote = { region: "B", version: undefined, watermarks: wm({ A: 5 }) };
    expect(classify(input({ local, remote, shouldHold: () => false }))).toBeUndefined();
  });

  it("dead streams: an origin's own other incarnation, or one a newer incarnation replaced on the same side", () => {
    const older = "b".repeat(32);
    const dead = deadStreams([
      {
        region: "A",
        incarnation: inc,
        streams: [
          { origin: "A", incarnation: older, updatedAtMs: 1 },
          { origin: "C", incarnation: older, updatedAtMs: 1 },
          { origin: "C", incarnation: inc, updatedAtMs: 2 },
        ],
      },
      { region: "B", incarnation: inc, streams: [{ origin: "A", incarnation: inc, updatedAtMs: 1 }] },
    ]);
    expect([...dead].sort()).toEqual([streamKey("A", older), streamKey("C", older)].sort());
  });

  // Found by Stryker (divergence-pure, 2026-12-04): each condition below could be made true
  // or dropped with every test green.
  it("copies of equal content but another identity (origin, incarnation or LSN) are two versions, not one", () => {
    const a = v("A", 5);
    const others: Array<[string, StoredRecord]> = [
      ["origin", { ...a, origin: "B" }],
      ["incarnation", { ...a, incarnation: "c".repeat(32) }],
      ["lsn", { ...a, lsn: 6 }],
    ];
    const all = { A: 9, B: 9 };
    for (const [field, b] of others) {
      const marks = new Map([...wm(all), [streamKey(b.origin, b.incarnation), 9]]);
      const local = { region: "A", version: a, watermarks: marks };
      const remote = { region: "B", version: b, watermarks: marks };
      expect(classify(input({ local, remote })), field).toMatchObject({
        kind: "divergent",
        reason: "watermark",
      });
    }
  });

  it("two identities of one origin are judged by the watermarks (in flight until settled), not as a hand edit", () => {
    const a = v("A", 5);
    const laterSameOrigin = v("A", 6, "rejected");
    const otherIncarnation = { ...v("A", 5, "rejected"), incarnation: "c".repeat(32) };
    const otherOrigin = v("B", 5, "rejected"); // same incarnation id and LSN, another origin
    for (const b of [laterSameOrigin, otherIncarnation, otherOrigin]) {
      const local = { region: "A", version: a, watermarks: wm({}) };
      const remote = { region: "B", version: b, watermarks: wm({}) };
      expect(classify(input({ local, remote })), `${b.incarnation}/${b.lsn}`).toBeUndefined();
    }
  });

  it("a finding names the reason the second side settled by, and each side's watermarks of the streams involved", () => {
    const a = v("A", 5, "accepted", 1_000);
    const b = v("B", 3, "rejected", 1_000);
    const old = { nowMs: 1_000 + 60_001 };
    // The local side settled b by its watermark, the remote side a only by age: "age".
    const byAge = classify(
      input({
        ...old,
        local: { region: "A", version: a, watermarks: wm({ A: 5, B: 3 }) },
        remote: { region: "B", version: b, watermarks: wm({ A: 2, B: 3 }) },
      }),
    );
    expect(byAge).toMatchObject({ kind: "divergent", reason: "age" });
    expect(byAge!.watermarks).toEqual({
      local: { [streamKey("A", inc)]: 5, [streamKey("B", inc)]: 3 },
      remote: { [streamKey("A", inc)]: 2, [streamKey("B", inc)]: 3 },
    });
    // The local side settled b because its stream is dead: that reason, whatever the other's.
    const byDead = classify(
      input({
        deadStreams: new Set([streamKey("B", inc)]),
        local: { region: "A", version: a, watermarks: wm({ A: 5 }) },
        remote: { region: "B", version: b, watermarks: wm({ A: 5, B: 3 }) },
      }),
    );
    expect(byDead).toMatchObject({ kind: "divergent", reason: "dead-incarnation" });
    // A record one side lacks: only its stream, on both sides (0 where unknown).
    const missing = classify(
      input({
        local: { region: "A", version: a, watermarks: wm({ A: 5, B: 7 }) },
        remote: { region: "B", version: undefined, watermarks: wm({ A: 5 }) },
      }),
    );
    expect(missing!.watermarks).toEqual({
      local: { [streamKey("A", inc)]: 5 },
      remote: { [streamKey("A", inc)]: 5 },
    });
    const unknown = classify(
      input({
        ...old,
        local: { region: "A", version: a, watermarks: wm({ A: 5 }) },
        remote: { region: "B", version: undefined, watermarks: wm({}) },
      }),
    );
    expect(unknown!.watermarks.remote).toEqual({ [streamKey("A", inc)]: 0 });
  });

  it("dead streams: a side's own incarnations are live, a third region's live ones come from who heard them, equal times replace nothing", () => {
    const older = "b".repeat(32);
    const fellow = "d".repeat(32);
    const dead = deadStreams(
      [
        {
          region: "A",
          incarnation: inc,
          incarnations: [inc, fellow],
          streams: [
            { origin: "A", incarnation: inc, updatedAtMs: 1 },
            { origin: "A", incarnation: fellow, updatedAtMs: 5 },
            // Same origin, same time: neither replaced the other.
            { origin: "D", incarnation: older, updatedAtMs: 3 },
            { origin: "D", incarnation: inc, updatedAtMs: 3 },
            // Another origin updated later replaces nothing.
            { origin: "E", incarnation: inc, updatedAtMs: 1 },
            { origin: "F", incarnation: older, updatedAtMs: 9 },
          ],
        },
      ],
      // What was heard of A elsewhere does not override A's own word; C's live set is used.
      new Map([
        ["A", new Set([older])],
        ["C", new Set([inc, fellow])],
      ]),
    );
    expect([...dead]).toEqual([]);
    const withC = deadStreams(
      [{ region: "A", incarnation: inc, streams: [{ origin: "C", incarnation: older, updatedAtMs: 1 }] }],
      new Map([["C", new Set([inc])]]),
    );
    expect([...withC]).toEqual([streamKey("C", older)]);
  });
});
