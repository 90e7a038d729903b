/**
 * What opening a WAL directory checks and reports, in process on real files: the leftovers of
 * a segment creation that did not finish, files that are not segments, segments listed in any
 * order, headers that disagree with their file or the directory, damage a repair may and may
 * not cut, evidence that answers with the wrong records, a sealed segment torn in the middle
 * of the log, short reads, and the recovery report's figures.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AcknowledgedLossError, SegmentCorruptError } from "../../src/errors.js";
import { realRuntime } from "../../src/runtime/index.js";
import { nodeFileOps, type FileOps } from "../../src/util/file-ops.js";
import { Wal, decodeFrames, type RecoveryEvidence, type WalRecord } from "../../src/wal/index.js";
import { tempDir } from "../support/tmp.js";
import { flipBitIn, frameOf, newestSegment, sha256 } from "../support/wal-bytes.js";

const region = "us-east-1";
const segmentNames = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((n) => /^\d{20}\.wal$/.test(n))
    .sort();

/** A WAL of `n` records (segments of `segmentBytesMax`), closed; the records as read back. */
async function writeWal(dir: string, n: number, segmentBytesMax = 64 * 1024 * 1024): Promise<WalRecord[]> {
  const wal = await Wal.open({ dir, region, segmentBytesMax });
  for (let i = 1; i <= n; i++)
    await wal.append({ key: `k-${i}`, tenant: "t", outcome: "accepted", body: { i, pad: "p".repeat(100) } });
  const all = await readAll(wal);
  await wal.close();
  return all;
}

async function readAll(wal: Wal): Promise<WalRecord[]> {
  const all: WalRecord[] = [];
  for (let next = wal.firstLsn; next <= wal.durableLsn;) {
    const c = (await wal.read(next, { bytesMax: 1 << 24, recordsMax: 10_000 }))!;
    all.push(...decodeFrames(c.frames, { source: c.segment, baseOffset: c.offset, firstLsn: next }));
    next = c.lastLsn + 1;
  }
  return all;
}

const evidence = (all: WalRecord[], seen: number): RecoveryEvidence => ({
  acknowledgedLsn: async () => seen,
  records: async (_inc, from, to) => all.filter((r) => r.lsn >= from && r.lsn <= Math.min(to, seen)),
});

describe("the files of a WAL directory", () => {
  it("removes what a segment creation left unfinished, ignores files that are not segments", async () => {
    const dir = tempDir();
    await writeWal(dir, 3);
    const leftover = path.join(dir, "00000000000000000004.wal.tmp");
    fs.writeFileSync(leftover, "half a header");
    fs.writeFileSync(path.join(dir, "NOTES"), "an operator's note");
    fs.writeFileSync(path.join(dir, "wal.tmp.keep"), "not ours either");
    const wal = await Wal.open({ dir, region });
    expect(fs.existsSync(leftover)).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual(["00000000000000000001.wal", "NOTES", "wal.tmp.keep"]);
    expect(wal.durableLsn).toBe(3);
    await wal.close();
  });

  it("orders segments by their first LSN whatever order the directory lists them in", async () => {
    const dir = tempDir();
    const all = await writeWal(dir, 120, 4096);
    expect(segmentNames(dir).length).toBeGreaterThan(3);
    const reversed: FileOps = {
      ...nodeFileOps,
      readdir: async (d) => (await nodeFileOps.readdir(d)).reverse(),
    };
    const wal = await Wal.open({ dir, region, segmentBytesMax: 4096, fileOps: reversed });
    expect(wal.durableLsn).toBe(120);
    expect(wal.sealedSegments()).toHaveLength(segmentNames(dir).length - 1);
    expect((await readAll(wal)).map((r) => r.key)).toEqual(all.map((r) => r.key));
    expect((await wal.append({ key: "next", tenant: "t", outcome: "accepted" })).lsn).toBe(121);
    await wal.close();
  });

  it("reads each segment whole even when the disk answers in short reads", async () => {
    const dir = tempDir();
    const all = await writeWal(dir, 40);
    const short: FileOps = {
      ...nodeFileOps,
      read: (fd, buf, offset, length, position) =>
        nodeFileOps.read(fd, buf, offset, Math.min(length, 700), position),
    };
    const wal = await Wal.open({ dir, region, fileOps: short });
    expect(wal.durableLsn).toBe(40);
    expect((await readAll(wal)).map((r) => r.key)).toEqual(all.map((r) => r.key));
    await wal.close();
  });
});

describe("headers that disagree", () => {
  it("a segment whose header's first LSN is not its file name's is refused at offset 8, changing nothing", async () => {
    const dir = tempDir();
    await writeWal(dir, 120, 4096);
    const names = segmentNames(dir);
    const second = names[1]!;
    const wrong = path.join(dir, `${String(Number(second.slice(0, 20)) + 1).padStart(20, "0")}.wal`);
    fs.renameSync(path.join(dir, second), wrong);
    const err = await Wal.open({ dir, region, segmentBytesMax: 4096 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect(err).toMatchObject({ offset: 8 });
    expect((err as Error).message).toMatch(/header first LSN \d+ disagrees with the file name/);
    expect(fs.existsSync(wrong)).toBe(true);
  });

  it("a segment of another incarnation beside ours is refused at offset 24, naming both", async () => {
    const ours = tempDir();
    await writeWal(ours, 120, 4096);
    const theirs = tempDir();
    await writeWal(theirs, 120, 4096); // same region, same segment names, another incarnation
    const last = segmentNames(ours).at(-1)!;
    fs.copyFileSync(path.join(theirs, last), path.join(ours, last));
    const err = await Wal.open({ dir: ours, region, segmentBytesMax: 4096 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect(err).toMatchObject({ offset: 24 });
    expect((err as Error).message).toMatch(
      /incarnation [0-9a-f]{32} differs from the directory's [0-9a-f]{32}/,
    );
    expect(sha256(path.join(ours, last))).toBe(sha256(path.join(theirs, last))); // left as it was
  });
});

describe("a repair", () => {
  it("cuts at a damaged first record, losing what follows it, and says so", async () => {
    const dir = tempDir();
    await writeWal(dir, 10);
    flipBitIn(newestSegment(dir), 1);
    await expect(Wal.open({ dir, region })).rejects.toBeInstanceOf(SegmentCorruptError);
    const wal = await Wal.open({ dir, region, repair: true });
    expect(wal.durableLsn).toBe(0);
    expect(wal.recovery.repairedCorruption).toMatch(/^corrupt WAL segment 0+1\.wal at offset \d+: /);
    await wal.close();
  });

  it("with evidence, cuts damage nothing can restore only past what was acknowledged", async () => {
    const dir = tempDir();
    const wal0 = await Wal.open({ dir, region });
    for (let i = 1; i <= 200; i++)
      await wal0.append({ key: `k-${i}`, tenant: "t", outcome: "accepted", body: "x".repeat(60_000) });
    await wal0.close();
    const seg = newestSegment(dir);
    const buf = fs.readFileSync(seg);
    buf.fill(0, frameOf(seg, 100).offset); // far beyond the torn-tail window: refused, not cut as a tear
    fs.writeFileSync(seg, buf);
    const before = sha256(seg);
    const seen = (lsn: number): RecoveryEvidence => ({
      acknowledgedLsn: async () => lsn,
      records: async () => [],
    });
    // LSN 100 itself was acknowledged: even a repair must not cut it.
    const err = await Wal.open({ dir, region, repair: true, evidence: seen(100) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AcknowledgedLossError);
    expect(sha256(seg)).toBe(before);
    // Acknowledged up to 99: the repair cuts from 100, loudly.
    const wal = await Wal.open({ dir, region, repair: true, evidence: seen(99) });
    expect(wal.durableLsn).toBe(99);
    expect(wal.recovery).toMatchObject({
      acknowledgedLsn: 99,
      repairedCorruption: expect.stringMatching(/^corrupt WAL segment/),
    });
    await wal.close();
  });
});

describe("evidence that answers with the wrong records", () => {
  it("as many records as asked, one of them of another LSN: refused, naming the one missing", async () => {
    const dir = tempDir();
    const all = await writeWal(dir, 65);
    const seg = newestSegment(dir);
    flipBitIn(seg, 31); // (the later first: finding a frame reads the ones before it)
    flipBitIn(seg, 30);
    const before = sha256(seg);
    const twice: RecoveryEvidence = {
      acknowledgedLsn: async () => 65,
      // 30 twice where 30 and 31 were asked: the count is right, 31 is not there.
      records: async (_inc, from, to) =>
        all.filter((r) => r.lsn >= from && r.lsn <= to).map((r) => (r.lsn === 31 ? all[29]! : r)),
    };
    const err = await Wal.open({ dir, region, evidence: twice }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AcknowledgedLossError);
    expect((err as Error).message).toMatch(/1 of them \(first 31\) are held by nothing recovery could ask/);
    expect(sha256(seg)).toBe(before);
    const wal = await Wal.open({ dir, region, evidence: evidence(all, 65) });
    expect(wal.recovery.restored?.lsns).toEqual([[30, 31]]);
    expect([wal.recovery.truncatedBytes, wal.recovery.tornReason]).toEqual([0, undefined]); // restored, not cut
    expect((await readAll(wal)).map((r) => r.key)).toEqual(all.map((r) => r.key));
    await wal.close();
  });

  it("more records than asked is refused too", async () => {
    const dir = tempDir();
    const all = await writeWal(dir, 65);
    flipBitIn(newestSegment(dir), 30);
    const extra: RecoveryEvidence = {
      acknowledgedLsn: async () => 65,
      records: async (_inc, from, to) => all.filter((r) => r.lsn >= from && r.lsn <= to + 1),
    };
    await expect(Wal.open({ dir, region, evidence: extra })).rejects.toBeInstanceOf(AcknowledgedLossError);
  });
});

describe("a sealed segment", () => {
  it("that ends inside a frame is corrupt when read, not a torn tail: the newest segment alone may be torn", async () => {
    const dir = tempDir();
    await writeWal(dir, 120, 4096);
    const first = path.join(dir, segmentNames(dir)[0]!);
    const f = frameOf(first, 2);
    fs.truncateSync(first, f.offset + 10);
    const wal = await Wal.open({ dir, region, segmentBytesMax: 4096 });
    expect(wal.durableLsn).toBe(120); // sealed segments are checked on their first read
    await expect(wal.read(1, { bytesMax: 1 << 20, recordsMax: 10 })).rejects.toBeInstanceOf(
      SegmentCorruptError,
    );
    await wal.close();
  });
  it("that ends inside an appendBatch is corrupt at the batch's first frame: only the newest segment's batch may be cut", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region, segmentBytesMax: 4096 });
    for (let i = 0; i < 40; i++)
      await wal.appendBatch(
        [1, 2, 3].map((j) => ({
          key: `k-${i}-${j}`,
          tenant: "t",
          outcome: "accepted" as const,
          body: { pad: "p".repeat(100) },
        })),
      );
    await wal.close();
    const [firstName, secondName] = segmentNames(dir);
    const first = path.join(dir, firstName!);
    const last = Number(secondName!.slice(0, 20)) - 1; // the first segment's last LSN, a batch's final frame
    expect(last % 3).toBe(0);
    fs.truncateSync(first, frameOf(first, last).offset);
    const batchStart = frameOf(first, last - 2).offset;
    const reopened = await Wal.open({ dir, region, segmentBytesMax: 4096 });
    const err = await reopened.read(1, { bytesMax: 1 << 20, recordsMax: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect(err).toMatchObject({ offset: batchStart, reason: "appendBatch without its final frame" });
    await reopened.close();
  });
});

describe("the recovery report", () => {
  it("a new directory: created, one segment, nothing read, timed on the runtime's clock", async () => {
    let monoMs = 5_000;
    const runtime = { ...realRuntime, monoMs: () => (monoMs += 40) };
    const wal = await Wal.open({ dir: tempDir(), region, runtime });
    expect(wal.recovery).toMatchObject({
      created: true,
      segments: 1,
      lastLsn: 0,
      truncatedBytes: 0,
      tornReason: undefined,
      acknowledgedLsn: 0,
      durationMs: 40,
    });
    expect(wal.segmentRange(1)).toEqual({ firstLsn: 1, lastLsn: 0 });
    await wal.close();
  });

  it("a torn tail: the bytes cut, why, the evidence's figure; a clean reopen reports nothing cut", async () => {
    const dir = tempDir();
    const all = await writeWal(dir, 7);
    const seg = newestSegment(dir);
    const f = frameOf(seg, 7);
    fs.truncateSync(seg, f.offset + 20);
    let monoMs = 100_000;
    const runtime = { ...realRuntime, monoMs: () => (monoMs += 15) };
    const wal = await Wal.open({ dir, region, runtime, evidence: evidence(all, 6) });
    expect(wal.recovery).toMatchObject({
      created: false,
      lastLsn: 6,
      truncatedBytes: 20,
      acknowledgedLsn: 6,
    });
    expect(wal.recovery.durationMs).toBeGreaterThan(0);
    expect(wal.recovery.durationMs).toBeLessThan(1_000);
    expect(wal.recovery.tornReason).toMatch(/\w/);
    await wal.close();
    const again = await Wal.open({ dir, region });
    expect(again.recovery).toMatchObject({ truncatedBytes: 0, tornReason: undefined, lastLsn: 6 });
    await again.close();
  });
});
