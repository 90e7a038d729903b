/**
 * What recovery does with the newest segment (tail-plan.ts), against what was written and
 * what others saw. Two kinds of check:
 * - the outcome each kind of damage must get, stated from the damage itself (a write that
 *   stopped, a bit flipped in synced bytes, damage between intact frames, a lost tail), with
 *   and without evidence, inside and outside the torn-tail window;
 * - for any damage at all, the safety rule: a plan never drops an LSN someone saw, never
 *   keeps a byte that is not an intact original frame, never cuts synced bytes (outside the
 *   torn-tail window) unless they belong to an unfinished appendBatch, and restores only
 *   what it was allowed to.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { frameBounds } from "../../test/support/segments.js";
import { FLAG_BATCH_CONTINUES, checkFrame, encodeFrames, type WalRecord } from "./record.js";
import { encodeSegmentHeader, scanSegment, segmentHeaderBytes } from "./segment.js";
import { looksTorn, planTail, runsOf, type Piece, type TailPlan } from "./tail-plan.js";

const firstLsn = 1;
const header = encodeSegmentHeader({
  region: "us-east-1",
  firstLsn,
  createdAtMs: 1_700_000_000_000,
  incarnation: "00112233445566778899aabbccddeeff",
});

/** Records whose bytes are never long runs of zeros (a run of zeros is how an unwritten sector looks). */
const recordArb = fc.record({
  key: fc.stringMatching(/^[a-z0-9]{1,12}$/),
  tenant: fc.constantFrom("tenant-a", "tenant-b"),
  outcome: fc.constantFrom("accepted", "rejected"),
  bodyJson: fc.option(
    fc.integer({ min: 0, max: 700 }).map((n) => JSON.stringify({ note: "x".repeat(n) })),
    { nil: undefined },
  ),
  hlc: fc.record({ wallMs: fc.integer({ min: 1, max: 2 ** 40 }), logical: fc.integer({ min: 1, max: 9 }) }),
});

interface Written {
  records: WalRecord[];
  image: Buffer;
  /** starts[i], ends[i]: where the frame of LSN firstLsn + i starts and ends. */
  starts: number[];
  ends: number[];
}

function written(fields: Array<Omit<WalRecord, "lsn" | "flags">>, batchCuts: boolean[] = []): Written {
  const records = fields.map((f, i) => ({
    ...f,
    lsn: firstLsn + i,
    flags: i < fields.length - 1 && batchCuts[i] ? FLAG_BATCH_CONTINUES : 0,
  }));
  const image = Buffer.concat([header, encodeFrames(records)]);
  return { records, image, ...frameBounds(image) };
}

const writtenArb = (min: number, max: number) =>
  fc.array(recordArb, { minLength: min, maxLength: max }).map((fs) => written(fs));

function plan(
  image: Buffer,
  seenLsn: number | undefined,
  o: { window?: number; restoreMax?: number } = {},
): TailPlan {
  return planTail({
    image,
    scan: scanSegment(image, {
      file: "s.wal",
      last: true,
      lenient: true,
      unsyncedBytesMax: o.window ?? 1 << 30,
    }),
    seenLsn,
    unsyncedBytesMax: o.window ?? 1 << 30,
    restoreLsnsMax: o.restoreMax ?? 1000,
  });
}

function flipBit(image: Buffer, bit: number): Buffer {
  const out = Buffer.from(image);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

/** The LSNs a plan leaves in the segment, in order (kept frames read back, restores as given). */
function lsnsAfter(image: Buffer, p: TailPlan): number[] {
  const fromBytes = (start: number, end: number) => {
    const lsns: number[] = [];
    for (let q = start; q < end;) {
      const f = checkFrame(image, q);
      if (f.kind !== "ok") throw new Error(`plan keeps a damaged frame at ${q}`);
      lsns.push(f.lsn);
      q = f.end;
    }
    return lsns;
  };
  const pieces: Piece[] =
    p.kind === "keep"
      ? [{ kind: "bytes", start: segmentHeaderBytes, end: image.length }]
      : p.kind === "cut"
        ? [{ kind: "bytes", start: segmentHeaderBytes, end: p.offset }]
        : p.kind === "rewrite"
          ? p.pieces
          : [];
  return pieces.flatMap((piece) =>
    piece.kind === "bytes"
      ? fromBytes(piece.start, piece.end)
      : Array.from({ length: piece.toLsn - piece.fromLsn + 1 }, (_, i) => piece.fromLsn + i),
  );
}

describe("a write that stopped (the only thing a crash does to the newest segment)", () => {
  it("any truncation, nobody saw past it: cut exactly after the last whole frame, or keep when nothing is torn", () => {
    fc.assert(
      fc.property(writtenArb(1, 12), fc.nat(), (w, cutSeed) => {
        const t = segmentHeaderBytes + (cutSeed % (w.image.length - segmentHeaderBytes + 1));
        const image = w.image.subarray(0, t);
        const k = w.ends.filter((e) => e <= t).length;
        const end = k === 0 ? segmentHeaderBytes : w.ends[k - 1]!;
        for (const seen of [undefined, 0, k]) {
          const p = plan(image, seen);
          if (end === t) expect(p).toEqual({ kind: "keep" });
          else expect(p).toMatchObject({ kind: "cut", offset: end });
        }
      }),
    );
  });

  it("a truncation before what a peer saw: the missing LSNs are restored after the kept frames, up to the limit", () => {
    fc.assert(
      fc.property(writtenArb(2, 12), fc.nat(), fc.integer({ min: 1, max: 5 }), (w, cutSeed, beyond) => {
        const t = segmentHeaderBytes + (cutSeed % (w.image.length - segmentHeaderBytes));
        const image = w.image.subarray(0, t);
        const k = w.ends.filter((e) => e <= t).length;
        const end = k === 0 ? segmentHeaderBytes : w.ends[k - 1]!;
        const seen = k + beyond;
        const pieces: Piece[] = [
          ...(end > segmentHeaderBytes ? [{ kind: "bytes" as const, start: segmentHeaderBytes, end }] : []),
          { kind: "restore", fromLsn: k + 1, toLsn: seen },
        ];
        expect(plan(image, seen)).toMatchObject({ kind: "rewrite", pieces });
        // One LSN more than the limit allows: refused, naming both.
        expect(plan(image, seen, { restoreMax: beyond - 1 })).toMatchObject({
          kind: "refuse",
          offset: end,
          fromLsn: k + 1,
          toLsn: seen,
          reason: expect.stringContaining(`${beyond} LSNs to restore, more than the ${beyond - 1}`),
        });
        expect(plan(image, seen, { restoreMax: beyond })).toMatchObject({ kind: "rewrite" });
      }),
    );
  });

  it("an appendBatch whose last frame is missing is cut whole, even when its frames are intact", () => {
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 2, maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
        fc.nat(),
        (fields, cuts, cutSeed) => {
          const w = written(fields, cuts);
          const t = w.ends[cutSeed % w.ends.length]!; // on a frame boundary: every kept frame intact
          let k = w.ends.filter((e) => e <= t).length;
          while (k > 0 && w.records[k - 1]!.flags & FLAG_BATCH_CONTINUES) k--;
          const end = k === 0 ? segmentHeaderBytes : w.ends[k - 1]!;
          const p = plan(w.image.subarray(0, t), k);
          if (end === t) expect(p).toEqual({ kind: "keep" });
          else
            expect(p).toMatchObject({
              kind: "cut",
              offset: end,
              reason: expect.stringMatching(/appendBatch/),
            });
        },
      ),
    );
  });

  it("sectors never written (zeros) after the last frame are a tear; a partial frame is one too", () => {
    const w = written([
      { key: "a", tenant: "t", outcome: "accepted", bodyJson: undefined, hlc: { wallMs: 5, logical: 1 } },
    ]);
    const zeros = Buffer.concat([w.image, Buffer.alloc(1024)]);
    expect(looksTorn(zeros, w.image.length)).toBe(true);
    expect(plan(zeros, undefined)).toMatchObject({ kind: "cut", offset: w.image.length });
    // Fewer than 64 zeros before a sector boundary do not look unwritten; the last stretch to the end does.
    const sector = (Math.floor(w.image.length / 512) + 1) * 512;
    const few = Buffer.concat([w.image, Buffer.alloc(sector - w.image.length), Buffer.alloc(10, 0xab)]);
    if (sector - w.image.length < 64) expect(looksTorn(few, w.image.length)).toBe(false);
    const partial = w.image.subarray(0, w.image.length - 1);
    expect(looksTorn(partial, segmentHeaderBytes)).toBe(true);
    expect(looksTorn(w.image.subarray(0, segmentHeaderBytes + 5), segmentHeaderBytes)).toBe(true);
  });

  it("a last frame whose length field and another byte changed, its own field lengths fitting the file: no tear (simulator seed 1084)", () => {
    const w = written([
      { key: "a", tenant: "t", outcome: "accepted", bodyJson: undefined, hlc: { wallMs: 5, logical: 1 } },
      { key: "b", tenant: "t", outcome: "accepted", bodyJson: '{"n":1}', hlc: { wallMs: 6, logical: 1 } },
    ]);
    const last = w.starts[1]!;
    // A bit of the length's second byte (the frame now seems to run past the file), and one in the body.
    const image = flipBit(flipBit(w.image, (last + 5) * 8 + 1), (w.ends[1]! - 2) * 8);
    expect(checkFrame(image, last).kind).toBe("short");
    expect(looksTorn(image, last)).toBe(false);
    // Nobody saw LSN 2: refused, never cut (a cut reissued the acknowledged LSN).
    expect(plan(image, 1).kind).toBe("refuse");
    expect(plan(image, 2)).toMatchObject({ kind: "rewrite" });
    // A real tear of the same frame (the file ends inside it, its fields intact) is still one.
    expect(looksTorn(w.image.subarray(0, w.ends[1]! - 3), last)).toBe(true);
  });
});

describe("a bit flipped in synced bytes (no crash does this)", () => {
  it("in a frame with intact frames after it: without evidence refused naming its LSN; with evidence that LSN is restored and every other frame kept", () => {
    fc.assert(
      fc.property(writtenArb(2, 10), fc.nat(), fc.nat(), (w, frameSeed, bitSeed) => {
        const i = frameSeed % (w.records.length - 1); // not the last frame
        const bits = (w.ends[i]! - w.starts[i]!) * 8;
        const image = flipBit(w.image, w.starts[i]! * 8 + (bitSeed % bits));
        const lsn = firstLsn + i;
        expect(plan(image, undefined)).toMatchObject({
          kind: "refuse",
          offset: w.starts[i],
          fromLsn: lsn,
          toLsn: lsn,
          reason: expect.stringContaining("with intact frames after them"),
        });
        const last = firstLsn + w.records.length - 1;
        for (const seen of [0, last, last + 2]) {
          const p = plan(image, seen);
          expect(p.kind).toBe("rewrite");
          const expected = w.records.map((r) => r.lsn);
          for (let l = last + 1; l <= seen; l++) expected.push(l);
          expect(lsnsAfter(image, p)).toEqual(expected);
          const restores = (p as { pieces: Piece[] }).pieces.filter((x) => x.kind === "restore");
          expect(restores[0]).toEqual({ kind: "restore", fromLsn: lsn, toLsn: lsn });
          expect((p as { reason: string }).reason).toContain(
            `damaged frames at offset ${w.starts[i]} (LSNs ${lsn}..${lsn})`,
          );
        }
      }),
    );
  });

  it("in the last frame: never cut as a tear; refused unless someone saw every LSN it could hold, then restored", () => {
    fc.assert(
      fc.property(writtenArb(1, 8), fc.nat(), (w, bitSeed) => {
        const i = w.records.length - 1;
        const bits = (w.ends[i]! - w.starts[i]!) * 8;
        const image = flipBit(w.image, w.starts[i]! * 8 + (bitSeed % bits));
        const lsn = firstLsn + i;
        for (const seen of [undefined, 0, lsn - 1]) {
          expect(plan(image, seen)).toMatchObject({
            kind: "refuse",
            offset: w.starts[i],
            fromLsn: lsn,
            toLsn: lsn,
            reason: expect.stringContaining("written whole (not a torn write)"),
          });
        }
        // Seen up to as many frames as the damaged bytes could hold (36 bytes at least each): restored.
        const fit = Math.floor((w.ends[i]! - w.starts[i]!) / 36);
        expect(plan(image, lsn - 1 + fit - 1)).toMatchObject({ kind: "refuse", fromLsn: lsn - 1 + fit });
        const p = plan(image, lsn - 1 + fit);
        expect(p, JSON.stringify(p)).toMatchObject({ kind: "rewrite" });
        expect(lsnsAfter(image, p)).toEqual(Array.from({ length: lsn - 1 + fit }, (_, j) => firstLsn + j));
        expect((p as { reason: string }).reason).toContain("a torn tail cut");
      }),
    );
  });

  it("further from the end than the torn-tail window: refused, whatever anybody saw", () => {
    fc.assert(
      fc.property(writtenArb(1, 8), fc.nat(), fc.constantFrom(undefined, 0, 3, 20), (w, bitSeed, seen) => {
        const i = w.records.length - 1;
        const bits = (w.ends[i]! - w.starts[i]!) * 8;
        const image = flipBit(w.image, w.starts[i]! * 8 + (bitSeed % bits));
        const window = image.length - w.starts[i]! - 1; // the damaged frame starts just outside it
        expect(plan(image, seen, { window })).toMatchObject({
          kind: "refuse",
          offset: w.starts[i],
          fromLsn: firstLsn + i,
          reason: expect.stringContaining("damaged beyond the torn-tail window"),
        });
      }),
    );
  });
});

describe("runs of intact frames", () => {
  it("a damaged frame splits the frames into the runs around it", () => {
    fc.assert(
      fc.property(writtenArb(3, 10), fc.nat(), (w, frameSeed) => {
        const i = 1 + (frameSeed % (w.records.length - 2)); // neither first nor last
        const image = flipBit(w.image, (w.starts[i]! + 12) * 8); // inside the LSN: the checksum fails
        const n = w.records.length;
        expect(runsOf(image, firstLsn)).toEqual([
          { offset: segmentHeaderBytes, end: w.ends[i - 1], firstLsn, lastLsn: firstLsn + i - 1 },
          {
            offset: w.starts[i + 1],
            end: w.ends[n - 1],
            firstLsn: firstLsn + i + 1,
            lastLsn: firstLsn + n - 1,
          },
        ]);
      }),
    );
  });
});

describe("any damage", () => {
  const damageArb: fc.Arbitrary<Damage> = fc.oneof(
    fc.record({
      kind: fc.constant("flip" as const),
      bits: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
    }),
    fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant("zeros" as const),
      at: fc.nat(),
      bytes: fc.integer({ min: 1, max: 1500 }),
    }),
  );

  type Damage =
    | { kind: "flip"; bits: number[] }
    | { kind: "truncate"; at: number }
    | { kind: "zeros"; at: number; bytes: number };

  function damaged(w: Written, d: Damage): { image: Buffer; firstDamage: number } {
    const body = w.image.length - segmentHeaderBytes;
    if (d.kind === "truncate") {
      const t = segmentHeaderBytes + (d.at % (body + 1));
      return { image: w.image.subarray(0, t), firstDamage: t };
    }
    const image = Buffer.from(w.image);
    if (d.kind === "zeros") {
      const at = segmentHeaderBytes + (d.at % body);
      image.fill(0, at, Math.min(image.length, at + d.bytes));
      return { image, firstDamage: at };
    }
    const positions = d.bits.map((b) => segmentHeaderBytes * 8 + (b % (body * 8)));
    for (const bit of positions) image[bit >> 3]! ^= 1 << (bit & 7);
    return { image, firstDamage: Math.min(...positions) >> 3 };
  }

  it("never drops a seen LSN, keeps only intact original frames, cuts synced bytes never, restores within the limit", () => {
    fc.assert(
      fc.property(
        writtenArb(1, 10),
        damageArb,
        fc.option(fc.nat({ max: 14 }), { nil: undefined }),
        fc.nat(),
        fc.integer({ min: 0, max: 6 }),
        (w, d, seen, windowSeed, restoreMax) => {
          const { image, firstDamage } = damaged(w, d);
          const window = windowSeed % (w.image.length + 1);
          const p = plan(image, seen, { window, restoreMax });
          if (p.kind === "refuse") {
            expect(p.fromLsn).toBeLessThanOrEqual(p.toLsn);
            expect(p.reason.length).toBeGreaterThan(0);
            return;
          }
          const lsns = lsnsAfter(image, p);
          // Consecutive from the segment's first LSN, through every LSN anyone saw.
          expect(lsns).toEqual(Array.from({ length: lsns.length }, (_, i) => firstLsn + i));
          expect(lsns.length).toBeGreaterThanOrEqual(seen ?? 0);
          // Kept bytes are the original frames, byte for byte, where they were written.
          const kept =
            p.kind === "keep"
              ? [{ start: segmentHeaderBytes, end: image.length }]
              : p.kind === "cut"
                ? [{ start: segmentHeaderBytes, end: p.offset }]
                : p.pieces.flatMap((x) => (x.kind === "bytes" ? [x] : []));
          for (const k of kept)
            expect(image.subarray(k.start, k.end).equals(w.image.subarray(k.start, k.end))).toBe(true);
          // Restored LSNs within the limit.
          const restored =
            p.kind === "rewrite"
              ? p.pieces.reduce((n, x) => n + (x.kind === "restore" ? x.toLsn - x.fromLsn + 1 : 0), 0)
              : 0;
          expect(restored).toBeLessThanOrEqual(restoreMax);
          // A cut (or a torn tail dropped by a rewrite) never reaches synced bytes, and
          // LSNs a plan gives up were never seen.
          const dropped = w.records.length - lsns.length;
          if (dropped > 0 && d.kind === "flip" && d.bits.length === 1)
            // A bit that changed after it was written is never taken for a tear (several
            // flips in one frame can look like one: then only what nobody saw is dropped).
            throw new Error(`a flipped bit dropped ${dropped} LSNs: ${JSON.stringify(p)}`);
          if (p.kind === "cut") {
            const unfinishedBatch = false; // writtenArb has no batches
            expect(p.offset >= image.length - window || unfinishedBatch).toBe(true);
            expect(p.offset).toBeLessThanOrEqual(
              firstDamage === image.length ? image.length : Math.max(firstDamage, segmentHeaderBytes),
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("the exact shape of each plan", () => {
  const fields = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      key: `key-${i}`,
      tenant: "tenant-a",
      outcome: "accepted",
      bodyJson: JSON.stringify({ i, pad: "y".repeat(30) }),
      hlc: { wallMs: 1000 + i, logical: 1 },
    }));

  it("tear or written bytes, by the sectors after the damage: 64 zeros to a sector boundary, or zeros to the end", () => {
    const w = written(fields(1));
    const at = w.image.length;
    const image = (size: number, zerosFrom: number, zerosTo: number) => {
      const b = Buffer.concat([w.image, Buffer.alloc(size - at, 0xab)]);
      b.fill(0, zerosFrom, zerosTo);
      return b;
    };
    // A whole sector of zeros after garbage: unwritten, a tear.
    expect(looksTorn(image(2048, 1024, 1536), at)).toBe(true);
    // 64 zeros up to a sector boundary are unwritten; 63 are not (a frame could hold them).
    expect(looksTorn(image(2048, 1024 - 64, 1024), 1024 - 64)).toBe(true);
    expect(looksTorn(image(2048, 1024 - 63, 1024), 1024 - 63)).toBe(false);
    // Zeros to the end of the file, however few: a tear.
    expect(looksTorn(image(2048, 2048 - 10, 2048), 2048 - 10)).toBe(true);
    expect(looksTorn(image(2048, 0, 0), 2048 - 10)).toBe(false);
    // Garbage everywhere: written bytes.
    expect(looksTorn(image(2048, 0, 0), at)).toBe(false);
    // Fewer than 8 bytes (not even a frame's length): a tear.
    expect(looksTorn(image(at + 7, 0, 0), at)).toBe(true);
  });

  it("a last frame whose length alone flipped is never a tear, whichever bit", () => {
    const w = written(fields(3));
    const last = w.starts[2]!;
    for (let bit = 0; bit < 32; bit++) {
      const image = Buffer.from(w.image);
      image.writeUInt32LE((image.readUInt32LE(last + 4) ^ (1 << bit)) >>> 0, last + 4);
      expect(looksTorn(image, last), `length bit ${bit}`).toBe(false);
      expect(plan(image, 2)).toMatchObject({ kind: "refuse", offset: last, fromLsn: 3 });
    }
  });

  it("bytes inserted between two frames: damage, not a tear; kept around when evidence exists", () => {
    const w = written(fields(4));
    const image = Buffer.concat([
      w.image.subarray(0, w.ends[1]),
      Buffer.alloc(40, 0xcd),
      w.image.subarray(w.ends[1]),
    ]);
    expect(plan(image, undefined)).toMatchObject({
      kind: "refuse",
      offset: w.ends[1],
      fromLsn: 3,
      toLsn: 2,
      reason: expect.stringContaining("with intact frames after them"),
    });
    expect(plan(image, 4)).toEqual({
      kind: "rewrite",
      pieces: [
        { kind: "bytes", start: segmentHeaderBytes, end: w.ends[1] },
        { kind: "bytes", start: w.ends[1]! + 40, end: image.length },
      ],
      reason: `damaged frames at offset ${w.ends[1]} (LSNs 3..2)`,
    });
  });

  it("names every reason of a rewrite, and refuses too many LSNs at the first damage", () => {
    const w = written(fields(5));
    const image = flipBit(w.image.subarray(0, w.ends[4]! - 3), (w.starts[1]! + 20) * 8); // LSN 2 damaged, LSN 5 torn
    const p = plan(image, 6);
    expect(p).toEqual({
      kind: "rewrite",
      pieces: [
        { kind: "bytes", start: segmentHeaderBytes, end: w.ends[0] },
        { kind: "restore", fromLsn: 2, toLsn: 2 },
        { kind: "bytes", start: w.starts[2], end: w.ends[3] },
        { kind: "restore", fromLsn: 5, toLsn: 6 },
      ],
      reason: `damaged frames at offset ${w.starts[1]} (LSNs 2..2); the WAL ends at LSN 4 before LSN 6 others have seen; a torn tail cut (incomplete frame (${w.ends[4]! - 3 - w.starts[4]!} of ${w.ends[4]! - w.starts[4]!} bytes) at offset ${w.starts[4]})`,
    });
    expect(plan(image, 6, { restoreMax: 2 })).toEqual({
      kind: "refuse",
      offset: w.starts[1],
      fromLsn: 2,
      toLsn: 6,
      reason: "3 LSNs to restore, more than the 2 recovery restores at start",
    });
  });

  it("an unfinished appendBatch that is the whole segment: cut to the header, or restored from what was seen", () => {
    const w = written(fields(4), [true, true, true, true]);
    const image = w.image.subarray(0, w.ends[2]); // the batch's last frame (LSN 4) never written
    expect(plan(image, 0)).toMatchObject({ kind: "cut", offset: segmentHeaderBytes });
    expect(plan(image, 2)).toEqual({
      kind: "rewrite",
      pieces: [{ kind: "restore", fromLsn: 1, toLsn: 2 }],
      reason: `the WAL ends at LSN 0 before LSN 2 others have seen; a torn tail cut (appendBatch without its final frame at offset ${segmentHeaderBytes})`,
    });
  });

  it("an appendBatch's run followed by damage that is no tear, or outside the window, is never cut as unfinished (found by review)", () => {
    const w = written(fields(6), [false, false, false, true, true, false]); // batch LSNs 4..6
    const lost = (fill: (b: Buffer) => void) => {
      const b = Buffer.alloc(64 * 1024);
      fill(b);
      return Buffer.concat([w.image.subarray(0, w.starts[5]), b]); // LSN 6 and more gone
    };
    for (const tail of [lost((b) => b.fill(0)), lost((b) => b.fill(0x5a))])
      expect(plan(tail, 3, { window: 4096 })).toMatchObject({
        kind: "refuse",
        offset: w.starts[5],
        reason: expect.stringContaining("damaged beyond the torn-tail window"),
      });
    // The batch's final frame flipped in synced bytes (inside the window): refused, not cut.
    const flipped = flipBit(w.image, (w.starts[5]! + 20) * 8);
    expect(plan(flipped, 3)).toMatchObject({ kind: "refuse", offset: w.starts[5], fromLsn: 6 });
  });
});
