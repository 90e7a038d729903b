/**
 * The conflict rule alone, against an independent model: each rule written out as a sort key
 * (a tuple compared field by field), so a change to the order is caught without a store.
 * The convergence of stores under the rule is merge.test.ts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareVersions, ruleName, sameVersion, type MergeRule, type VersionId } from "./merge.js";

const regions = ["ap-south-1", "eu-west-1", "us-east-1"];
const version = fc.record({
  origin: fc.constantFrom(...regions, "sa-east-1"),
  incarnation: fc.constantFrom("a".repeat(32), "b".repeat(32)),
  lsn: fc.integer({ min: 1, max: 3 }),
  hlc: fc.record({ wallMs: fc.integer({ min: 1000, max: 1002 }), logical: fc.integer({ min: 0, max: 1 }) }),
});

/** The model: first-write-wins sorts by (wallMs, logical, origin, incarnation, lsn), smallest first. */
function firstWriteKey(v: VersionId): Array<string | number> {
  return [v.hlc.wallMs, v.hlc.logical, v.origin, v.incarnation, v.lsn];
}
function modelCompare(rule: MergeRule, a: VersionId, b: VersionId): number {
  const key = (v: VersionId): Array<string | number> => {
    if (rule.kind !== "primary-wins") return firstWriteKey(v);
    const rank = rule.priority.includes(v.origin) ? rule.priority.indexOf(v.origin) : rule.priority.length;
    return [rank, ...firstWriteKey(v)];
  };
  const [ka, kb] = [key(a), key(b)];
  for (let i = 0; i < ka.length; i++) {
    if (ka[i]! < kb[i]!) return rule.kind === "last-write-wins" ? 1 : -1;
    if (ka[i]! > kb[i]!) return rule.kind === "last-write-wins" ? -1 : 1;
  }
  return 0;
}

const rules: MergeRule[] = [
  { kind: "first-write-wins" },
  { kind: "last-write-wins" },
  { kind: "primary-wins", priority: ["us-east-1", "eu-west-1"] },
];

describe("the conflict rule", () => {
  for (const rule of rules)
    it(`${ruleName(rule)} orders versions as its model does (the sign of the comparison)`, () => {
      fc.assert(
        fc.property(version, version, (a, b) => {
          expect(Math.sign(compareVersions(rule, a, b)) + 0).toBe(modelCompare(rule, a, b));
        }),
        { seed: 20261122, numRuns: 2000 },
      );
    });

  it("names each rule as the peers compare it", () => {
    expect(rules.map(ruleName)).toEqual([
      "first-write-wins",
      "last-write-wins",
      "primary-wins(us-east-1>eu-west-1)",
    ]);
  });

  it("calls two versions the same only when origin, incarnation and LSN are all equal", () => {
    const v = { origin: "us-east-1", incarnation: "a".repeat(32), lsn: 4, hlc: { wallMs: 1, logical: 0 } };
    expect(sameVersion(v, { ...v, hlc: { wallMs: 2, logical: 0 } })).toBe(true);
    expect(sameVersion(v, { ...v, lsn: 5 })).toBe(false);
    expect(sameVersion(v, { ...v, origin: "eu-west-1" })).toBe(false);
    expect(sameVersion(v, { ...v, incarnation: "b".repeat(32) })).toBe(false);
  });
});
