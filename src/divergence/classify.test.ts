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
    expect(classify(input({ local, remote }))).toMatchObject({ kind: "divergent" });
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
});
