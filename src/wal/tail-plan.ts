/**
 * What recovery does with the newest segment, decided from its bytes and from the evidence
 * of what was acknowledged. Pure: bytes and numbers in, a plan out; recovery.ts does the I/O.
 *
 * A torn tail is bytes written after the last fdatasync, so nobody saw them. The evidence
 * (the highest LSN this region's store, its peers' watermarks or its shipper state say was
 * seen) separates a torn tail from damage to acknowledged records:
 * - nothing wrong and nothing missing: keep the segment;
 * - a problem with no intact frames after it, past everything seen: a torn tail, cut it;
 * - a problem inside what was seen, or followed by intact frames (damage inside written
 *   data): restore the damaged LSNs from the evidence (the store and the peers hold every
 *   record), keep the intact frames after them; if the evidence lacks any, refuse;
 * - the segment ends before what was seen (restored from an old copy, a lost tail): restore
 *   the missing LSNs, or refuse.
 * Without evidence (the WAL used on its own), the torn-tail window decides as before.
 */
import { findResync, type Resync, type SegmentScan } from "./segment.js";

export type TailPlan =
  | { kind: "keep" }
  /** Cut at `offset`: never acknowledged. */
  | { kind: "cut"; offset: number; reason: string }
  /**
   * Rewrite the segment as: bytes [0, prefixEnd), then the restored records `gap`, then the
   * intact run `later` (bytes copied), then the restored records `tail`.
   */
  | {
      kind: "restore";
      prefixEnd: number;
      gap: [number, number] | undefined;
      later: Resync | undefined;
      tail: [number, number] | undefined;
      reason: string;
    }
  /** Damage the evidence cannot resolve and no evidence to tell: refuse to open. */
  | { kind: "refuse"; offset: number; fromLsn: number; toLsn: number; reason: string };

export interface TailPlanInput {
  image: Buffer;
  scan: SegmentScan;
  /** Highest LSN anyone is known to have seen; undefined when there is no evidence at all. */
  seenLsn: number | undefined;
  /** The torn-tail window, used only without evidence. */
  unsyncedBytesMax: number;
}

export function planTail(i: TailPlanInput): TailPlan {
  const { scan, seenLsn } = i;
  const problem = scan.problem;
  const seen = seenLsn ?? 0;
  if (!problem) {
    if (seen <= scan.lastLsn) return { kind: "keep" };
    return restore(
      scan.validBytes,
      undefined,
      undefined,
      scan.lastLsn,
      seen,
      "the WAL ends before LSNs others have seen",
    );
  }
  const later = findResync(i.image, problem.offset, problem.lsn);
  if (!later) {
    // Nothing intact follows: a tail. Torn if nobody saw past what is kept.
    if (seenLsn === undefined) {
      if (problem.offset < i.image.length - i.unsyncedBytesMax)
        return {
          kind: "refuse",
          offset: problem.offset,
          fromLsn: problem.lsn,
          toLsn: problem.lsn,
          reason: problem.reason,
        };
      return {
        kind: "cut",
        offset: scan.validBytes,
        reason: `${problem.reason} at offset ${problem.offset}`,
      };
    }
    if (seen <= scan.lastLsn)
      return {
        kind: "cut",
        offset: scan.validBytes,
        reason: `${problem.reason} at offset ${problem.offset}`,
      };
    return restore(
      scan.validBytes,
      undefined,
      undefined,
      scan.lastLsn,
      seen,
      `${problem.reason} at offset ${problem.offset}, inside acknowledged records`,
    );
  }
  // Intact frames after damaged ones: damage inside written data, never a tear to cut.
  const gap: [number, number] = [problem.lsn, later.firstLsn - 1];
  if (seenLsn === undefined)
    return { kind: "refuse", offset: problem.offset, fromLsn: gap[0], toLsn: gap[1], reason: problem.reason };
  return restore(
    problem.offset,
    gap,
    later,
    later.lastLsn,
    seen,
    `${problem.reason} at offset ${problem.offset}, followed by intact LSNs ${later.firstLsn}..${later.lastLsn}`,
  );
}

function restore(
  prefixEnd: number,
  gap: [number, number] | undefined,
  later: Resync | undefined,
  keptLsn: number,
  seen: number,
  reason: string,
): TailPlan {
  const tail: [number, number] | undefined = seen > keptLsn ? [keptLsn + 1, seen] : undefined;
  return { kind: "restore", prefixEnd, gap: gap && gap[0] <= gap[1] ? gap : undefined, later, tail, reason };
}
