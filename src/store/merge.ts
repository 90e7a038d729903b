/**
 * The conflict rule: which of two versions of a key wins. Pure, total orders only, so every
 * region that applied the same versions picks the same winner whatever the arrival order
 * (strong eventual consistency). Property-tested in merge.test.ts.
 */
import { compareHlc, type Hlc } from "../clock/index.js";

export type MergeRule =
  | { kind: "first-write-wins" }
  | { kind: "last-write-wins" }
  /** Versions from a region earlier in `priority` win; unlisted regions rank last; ties fall back to first-write-wins. */
  | { kind: "primary-wins"; priority: readonly string[] };

/** What the rule looks at; the identity of a version is (origin, incarnation, lsn). */
export interface VersionId {
  origin: string;
  incarnation: string;
  lsn: number;
  hlc: Hlc;
}

export function sameVersion(a: VersionId, b: VersionId): boolean {
  return a.lsn === b.lsn && a.origin === b.origin && a.incarnation === b.incarnation;
}

function cmp(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** First-write-wins order: smallest (hlc, origin); incarnation and lsn only break ties between impossible twins. */
function firstWriteOrder(a: VersionId, b: VersionId): number {
  return (
    compareHlc(a.hlc, b.hlc) ||
    cmp(a.origin, b.origin) ||
    cmp(a.incarnation, b.incarnation) ||
    cmp(a.lsn, b.lsn)
  );
}

/** Negative when `a` beats `b`, positive when `b` beats `a`, 0 only for the same version. */
export function compareVersions(rule: MergeRule, a: VersionId, b: VersionId): number {
  switch (rule.kind) {
    case "first-write-wins":
      return firstWriteOrder(a, b);
    case "last-write-wins":
      return -firstWriteOrder(a, b);
    case "primary-wins": {
      const rank = (o: string) => {
        const i = rule.priority.indexOf(o);
        return i < 0 ? rule.priority.length : i;
      };
      return rank(a.origin) - rank(b.origin) || firstWriteOrder(a, b);
    }
  }
}

export function ruleName(rule: MergeRule): string {
  return rule.kind === "primary-wins" ? `primary-wins(${rule.priority.join(">")})` : rule.kind;
}

/** Two different versions of one key: which wins under `rule`, and whether the incoming one takes the key. */
export function contest<T extends VersionId>(
  rule: MergeRule,
  existing: T,
  incoming: T,
): { winner: T; loser: T; incomingWins: boolean } {
  const incomingWins = compareVersions(rule, incoming, existing) < 0;
  return incomingWins
    ? { winner: incoming, loser: existing, incomingWins }
    : { winner: existing, loser: incoming, incomingWins };
}
