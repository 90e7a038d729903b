/**
 * What recovery does with the newest segment, decided from its bytes and from the evidence
 * of what was acknowledged. Pure: bytes and numbers in, a plan out; recovery.ts does the I/O.
 *
 * The segment is read as runs of intact, consecutive frames separated by damaged stretches
 * (found byte by byte: the next frame that checks and continues the LSNs). Then:
 * - a damaged stretch between two runs is damage inside written data, never a tear: its
 *   LSNs must be restored from the evidence (the store and the peers hold every
 *   acknowledged record), and every intact frame around it is kept;
 * - bytes after the last run are a torn tail when they lie inside the torn-tail window (a
 *   writer never has more unsynced) and nobody saw past the last run: cut. Inside what was
 *   seen: restore. Outside the window: synced records of unknown extent were destroyed:
 *   refuse;
 * - a segment that ends before what was seen (restored from an old copy, a lost tail):
 *   restore the missing LSNs;
 * - anything that cannot be restored: refuse, changing nothing.
 * Without evidence (the WAL on its own) nothing can be restored: damage between runs or
 * outside the window refuses, a tail inside the window is cut.
 */
import { FLAG_BATCH_CONTINUES, checkFrame, readFlags } from "./record.js";
import {
  bodyBytesMax,
  frameHeaderBytes,
  keyBytesMax,
  outcomeBytesMax,
  recordFixedBytes,
  tenantBytesMax,
} from "../limits.js";
import { findResync, segmentHeaderBytes, type SegmentScan } from "./segment.js";

/** A stretch of intact, consecutive frames. */
export interface Run {
  offset: number;
  end: number;
  firstLsn: number;
  lastLsn: number;
}

/** The new segment, piece by piece: bytes kept as they are, or LSNs restored from the evidence. */
export type Piece =
  { kind: "bytes"; start: number; end: number } | { kind: "restore"; fromLsn: number; toLsn: number };

export type TailPlan =
  | { kind: "keep" }
  /** Cut at `offset`: never acknowledged. */
  | { kind: "cut"; offset: number; reason: string }
  | { kind: "rewrite"; pieces: Piece[]; reason: string }
  /** Damage nothing may resolve: refuse to open. */
  | { kind: "refuse"; offset: number; fromLsn: number; toLsn: number; reason: string };

export interface TailPlanInput {
  image: Buffer;
  scan: SegmentScan;
  /** Highest LSN anyone is known to have seen; undefined when there is no evidence at all. */
  seenLsn: number | undefined;
  /** The torn-tail window: a writer never has more than this written and not synced. */
  unsyncedBytesMax: number;
  /** The most LSNs a start may restore (more is refused, naming the claim). */
  restoreLsnsMax: number;
}

/** Every run of intact frames, in order, starting with the first after the header. */
export function runsOf(image: Buffer, firstLsn: number): Run[] {
  const runs: Run[] = [];
  let p = segmentHeaderBytes;
  let expected = firstLsn;
  for (;;) {
    const start = p;
    const runFirst = expected;
    while (p < image.length) {
      const f = checkFrame(image, p);
      if (f.kind !== "ok" || f.lsn !== expected) break;
      expected++;
      p = f.end;
    }
    if (p > start) runs.push({ offset: start, end: p, firstLsn: runFirst, lastLsn: expected - 1 });
    if (p >= image.length) return runs;
    const next = findResync(image, p, expected);
    if (!next) return runs;
    p = next.offset;
    expected = next.firstLsn;
  }
}

/** A disk writes a sector whole or not at all. */
const sectorBytes = 512;
/** Zeros in a row that no frame holds (its fixed fields have at most 8). */
const zeroRunBytesMin = 64;

function zeros(image: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (image[i] !== 0) return false;
  return true;
}

/** Whether one flipped bit of the length of the frame at `at` makes it fit the file and check. */
function lengthFlipFits(image: Buffer, at: number): boolean {
  const length = image.readUInt32LE(at + 4);
  for (let bit = 0; bit < 32; bit++) {
    const copy = Buffer.from(image.subarray(at));
    copy.writeUInt32LE((length ^ (1 << bit)) >>> 0, 4);
    const f = checkFrame(copy, 0);
    if (f.kind === "ok") return true;
  }
  return false;
}

/**
 * Where the frame at `at` ends by the lengths of its four fields (inside its payload), when the
 * file holds them and each is within its bound; undefined otherwise (unwritten, or changed).
 */
function endByFields(image: Buffer, at: number): number | undefined {
  const fields = at + frameHeaderBytes + 18;
  if (image.length < fields + 10) return undefined;
  const key = image.readUInt16LE(fields);
  const tenant = image.readUInt16LE(fields + 2);
  const outcome = image.readUInt16LE(fields + 4);
  const body = image.readUInt32LE(fields + 6);
  const within = (n: number, min: number, max: number) => n >= min && n <= max;
  if (!within(key, 1, keyBytesMax) || !within(tenant, 1, tenantBytesMax)) return undefined;
  if (!within(outcome, 1, outcomeBytesMax) || !within(body, 0, bodyBytesMax)) return undefined;
  return at + frameHeaderBytes + recordFixedBytes + key + tenant + outcome + body;
}

/**
 * Whether the bytes from `at` to the end look like a write that stopped (a tear) rather than
 * written bytes that changed afterwards (a bit flip in synced data). A segment is only ever
 * appended to, so a tear leaves a frame the file ends inside, or sectors never written
 * (zeros). A frame the file ends inside only because one bit of its length flipped is no
 * tear; nor is one whose own field lengths say it ends inside the file (its length field
 * changed, with more bytes changed after it: the simulator, seed 1084, two flipped bits in
 * the last frame cut as a tear and its acknowledged LSN reissued); neither is a complete
 * frame with a bad checksum and no unwritten sector.
 */
export function looksTorn(image: Buffer, at: number): boolean {
  const f = checkFrame(image, at);
  if (f.kind === "short") {
    if (image.length - at < frameHeaderBytes) return true;
    if (lengthFlipFits(image, at)) return false;
    const end = endByFields(image, at);
    return end === undefined || end > image.length;
  }
  for (let s = at; s < image.length;) {
    const next = Math.min(image.length, (Math.floor(s / sectorBytes) + 1) * sectorBytes);
    if ((next - s >= zeroRunBytesMin || next === image.length) && zeros(image, s, next)) return true;
    s = next;
  }
  return false;
}

/** Where an unfinished appendBatch at the end of `run` starts (its frames were never acknowledged), if any. */
function unfinishedBatchStart(image: Buffer, run: Run): { offset: number; lsn: number } | undefined {
  let start: { offset: number; lsn: number } | undefined;
  let lsn = run.firstLsn;
  for (let p = run.offset; p < run.end; lsn++) {
    const f = checkFrame(image, p) as { end: number };
    if (readFlags(image, p) & FLAG_BATCH_CONTINUES) start ??= { offset: p, lsn };
    else start = undefined;
    p = f.end;
  }
  return start;
}

/** What is wrong with the frame at `at` (where LSN `lsn` was expected), in the scanner's words. */
function problemAt(image: Buffer, at: number, lsn: number): string {
  const f = checkFrame(image, at);
  if (f.kind === "bad") return f.reason;
  if (f.kind === "short") return `incomplete frame (${image.length - at} of ${f.need} bytes)`;
  return `LSN ${f.lsn} where ${lsn} was expected`;
}

export function planTail(i: TailPlanInput): TailPlan {
  const { image, scan, seenLsn } = i;
  const seen = seenLsn ?? 0;
  const runs = runsOf(image, scan.header.firstLsn);
  const pieces: Piece[] = [];
  const damage: string[] = [];
  let last = scan.header.firstLsn - 1; // the last LSN kept so far
  let end = segmentHeaderBytes; // where the kept bytes end
  let firstDamageAt: number | undefined; // where the first stretch to restore was
  for (const run of runs) {
    if (run.firstLsn > last + 1 || run.offset > end) {
      // A damaged stretch inside written data: restore its LSNs (or refuse).
      if (seenLsn === undefined) {
        const why = damage.length === 0 && scan.problem ? scan.problem.reason : "damaged frames";
        return {
          kind: "refuse",
          offset: end,
          fromLsn: last + 1,
          toLsn: run.firstLsn - 1,
          reason: `${why}, with intact frames after them`,
        };
      }
      if (run.firstLsn > last + 1) {
        pieces.push({ kind: "restore", fromLsn: last + 1, toLsn: run.firstLsn - 1 });
        firstDamageAt ??= end;
      }
      damage.push(`offset ${end} (LSNs ${last + 1}..${run.firstLsn - 1})`);
    }
    pieces.push({ kind: "bytes", start: run.offset, end: run.end });
    last = run.lastLsn;
    end = run.end;
  }
  const lastRun = runs.at(-1);
  // Bytes after the last intact frame that are no tear: synced bytes changed (a bit flip, a
  // bad sector). They may hold as many frames as fit in them, each of which a client may
  // have been answered for: unless the evidence covers every one of them, never cut, never
  // reissue.
  const tailFramesMax = Math.floor((image.length - end) / (frameHeaderBytes + recordFixedBytes));
  if (
    end < image.length &&
    seen < last + Math.max(1, tailFramesMax) &&
    end >= image.length - i.unsyncedBytesMax &&
    !looksTorn(image, end)
  ) {
    const from = Math.max(last, seen) + 1;
    const more = last + tailFramesMax - from;
    return {
      kind: "refuse",
      offset: end,
      fromLsn: from,
      toLsn: from,
      reason: `${problemAt(image, end, last + 1)} at offset ${end} in bytes that were written whole (not a torn write): LSN ${from}${more > 0 ? ` (and up to ${more} after it)` : ""} may have been acknowledged and no store or peer holds it`,
    };
  }
  // An appendBatch whose last frame never made it: its frames were never acknowledged.
  // Only when what follows the run is a tear (or nothing): a batch whose final frame is
  // damaged in synced bytes, or outside the torn-tail window, was complete and may have been
  // acknowledged (found by review: 5 MiB of synced frames were cut behind such a batch).
  const tornAfter =
    end === image.length || (end >= image.length - i.unsyncedBytesMax && looksTorn(image, end));
  const batch =
    lastRun && end === lastRun.end && tornAfter ? unfinishedBatchStart(image, lastRun) : undefined;
  if (batch) {
    const kept = pieces.at(-1) as { kind: "bytes"; start: number; end: number };
    kept.end = batch.offset;
    if (kept.end === kept.start) pieces.pop();
    last = batch.lsn - 1;
    end = batch.offset;
  }
  const tailBytes = image.length - end;
  const tailReason =
    tailBytes > 0
      ? `${batch ? "appendBatch without its final frame" : problemAt(image, end, last + 1)} at offset ${end}`
      : undefined;
  if (tailBytes > 0 && end < image.length - i.unsyncedBytesMax && !batch) {
    // Bytes past the last intact frame, further from the end than any unsynced write: synced
    // records were destroyed and nothing says how many.
    return {
      kind: "refuse",
      offset: end,
      fromLsn: last + 1,
      toLsn: Math.max(last + 1, seen),
      reason: `damaged beyond the torn-tail window (${tailReason})`,
    };
  }
  if (seen > last) pieces.push({ kind: "restore", fromLsn: last + 1, toLsn: seen });
  const restoring = pieces.reduce((n, p) => n + (p.kind === "restore" ? p.toLsn - p.fromLsn + 1 : 0), 0);
  if (restoring > i.restoreLsnsMax) {
    // Named by what it would have restored: damaged stretches first, then a lost tail.
    const restores = pieces.filter((p) => p.kind === "restore");
    return {
      kind: "refuse",
      offset: firstDamageAt ?? end,
      fromLsn: restores[0]!.fromLsn,
      toLsn: restores.at(-1)!.toLsn,
      reason: `${restoring} LSNs to restore, more than the ${i.restoreLsnsMax} recovery restores at start`,
    };
  }
  if (restoring === 0 && damage.length === 0)
    return tailBytes > 0 ? { kind: "cut", offset: end, reason: tailReason! } : { kind: "keep" };
  const why = [
    ...damage.map((d) => `damaged frames at ${d}`),
    ...(seen > last ? [`the WAL ends at LSN ${last} before LSN ${seen} others have seen`] : []),
    ...(tailBytes > 0 ? [`a torn tail cut (${tailReason})`] : []),
  ].join("; ");
  return { kind: "rewrite", pieces, reason: why };
}
