/**
 * The WAL's own bookkeeping, in process on real files, checked against the bytes on disk and
 * what each append was told: where a chunk says its frames are, reads through the index of a
 * long segment and of a frame larger than the read window, the cache of recent groups and its
 * limits, waiting for durability (abort, close), the queue bound, restored records, a failed
 * write and a failed truncate, the archive's view of sealed and active segments, and stats.
 */
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  RecordInvalidError,
  SegmentCorruptError,
  WalBusyError,
  WalClosedError,
  WalLsnUnavailableError,
  WalWriteError,
} from "../../src/errors.js";
import { realRuntime } from "../../src/runtime/index.js";
import { nodeFileOps, type FileOps } from "../../src/util/file-ops.js";
import {
  FLAG_BATCH_CONTINUES,
  Wal,
  decodeFrames,
  type AppendAck,
  type WalChunk,
  type WalRecord,
} from "../../src/wal/index.js";
import { faultyFs } from "../support/faulty-fs.js";
import { tempDir, waitFor } from "../support/tmp.js";
import { frameOf } from "../support/wal-bytes.js";

const region = "us-east-1";
const rec = (i: number, pad = 0) => ({
  key: `k-${i}`,
  tenant: "t",
  outcome: "accepted",
  body: { i, pad: "p".repeat(pad) },
});
const opened: Wal[] = [];
afterEach(async () => {
  for (const w of opened.splice(0)) await w.close();
});

async function open(o: Omit<Parameters<typeof Wal.open>[0], "region">): Promise<Wal> {
  const w = await Wal.open({ region, ...o });
  opened.push(w);
  return w;
}

/** Each chunk's frames are exactly the bytes its segment holds at its offset. */
function matchesDisk(dir: string, c: WalChunk): void {
  const file = fs.readFileSync(path.join(dir, c.segment));
  expect(Buffer.compare(file.subarray(c.offset, c.offset + c.frames.length), c.frames)).toBe(0);
}

const decode = (c: WalChunk): WalRecord[] =>
  decodeFrames(c.frames, { source: c.segment, baseOffset: c.offset, firstLsn: c.firstLsn });

/** Append `n` records from `from`, `group` at a time (each lot one group commit). */
async function appendAll(wal: Wal, n: number, pad = 0, from = 1, group = 100): Promise<AppendAck[]> {
  const acks: AppendAck[] = [];
  for (let i = from; i < from + n; i += group)
    acks.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(group, from + n - i) }, (_, j) => wal.append(rec(i + j, pad))),
      )),
    );
  return acks;
}

describe("reads", () => {
  it("from the cache of recent groups: any LSN, within the limits, frames where the chunk says", async () => {
    const dir = tempDir();
    const wal = await open({ dir });
    await appendAll(wal, 300, 50);
    for (const [from, recordsMax, bytesMax] of [
      [1, 1000, 1 << 20],
      [57, 30, 1 << 20],
      [150, 1000, 2_000],
      [300, 10, 1],
    ] as const) {
      const c = (await wal.read(from, { recordsMax, bytesMax }))!;
      matchesDisk(dir, c);
      const got = decode(c);
      expect(got[0]!.lsn).toBe(from);
      expect(got.at(-1)!.lsn).toBe(c.lastLsn);
      expect(got.length).toBeLessThanOrEqual(301 - from);
      expect(got.length).toBeLessThanOrEqual(recordsMax);
      expect(c.frames.length <= bytesMax || got.length === 1).toBe(true);
      if (bytesMax === 1 << 20) expect(got.length).toBe(Math.min(recordsMax, 301 - from));
    }
    expect(await wal.read(301, { recordsMax: 10, bytesMax: 1 << 20 })).toBeUndefined();
  });

  it("from disk after a reopen: through the index of a segment longer than its index step, and from any LSN", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region });
    await appendAll(wal, 2_600);
    await wal.close();
    const again = await open({ dir });
    for (const from of [1, 1023, 1024, 1025, 2048, 2049, 2500, 2600]) {
      const c = (await again.read(from, { recordsMax: 50, bytesMax: 1 << 20 }))!;
      matchesDisk(dir, c);
      const got = decode(c);
      expect(got.map((r) => r.lsn)).toEqual(
        Array.from({ length: Math.min(50, 2601 - from) }, (_, i) => from + i),
      );
      expect(JSON.parse(got[0]!.bodyJson!).i).toBe(from);
    }
    const small = (await again.read(10, { recordsMax: 1000, bytesMax: 500 }))!;
    expect(small.frames.length).toBeLessThanOrEqual(500);
    expect(small.lastLsn).toBeGreaterThan(10);
  });

  it("from the active segment once the cache let go of it: through the index built while writing", async () => {
    const dir = tempDir();
    const wal = await open({ dir });
    // ~33 MB in one segment, in groups of 10: the 16 MiB cache keeps about the last 2,000.
    await appendAll(wal, 4_000, 8_000, 1, 10);
    expect(wal.stats().segments).toBe(1);
    for (const from of [1, 2, 1023, 1024, 1025, 1026, 1100]) {
      const c = (await wal.read(from, { recordsMax: 3, bytesMax: 1 << 20 }))!;
      matchesDisk(dir, c);
      expect(decode(c).map((r) => JSON.parse(r.bodyJson!).i)).toEqual([from, from + 1, from + 2]);
    }
  });

  it("from disk, at most bytesMax (but always one record), a window larger than the first read", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region });
    await appendAll(wal, 60, 50_000, 1, 5); // ~50 KB a record, 3 MB in all
    await wal.close();
    const again = await open({ dir });
    for (const [from, bytesMax] of [
      [1, 100],
      [7, 2 << 20],
      [1, 16 << 20],
    ] as const) {
      const c = (await again.read(from, { recordsMax: 1000, bytesMax }))!;
      matchesDisk(dir, c);
      const got = decode(c);
      expect(got[0]!.lsn).toBe(from);
      if (bytesMax === 100) expect(got).toHaveLength(1);
      else {
        expect(c.frames.length).toBeLessThanOrEqual(bytesMax);
        // As many as fit: one more would not (or none is left).
        expect(c.lastLsn === 60 || c.frames.length + c.frames.length / got.length > bytesMax).toBe(true);
      }
    }
    expect((await again.read(1, { recordsMax: 1000, bytesMax: 16 << 20 }))!.lastLsn).toBe(60);
  });

  it("take every frame that fits bytesMax exactly, from the cache and from disk", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region });
    await appendAll(wal, 10, 100, 1, 10); // one group
    const frameBytes = async (w: Wal, lsn: number) =>
      (await w.read(lsn, { recordsMax: 1, bytesMax: 1 << 20 }))!.frames.length;
    const exactly = async (w: Wal) => {
      const three = (await frameBytes(w, 2)) + (await frameBytes(w, 3)) + (await frameBytes(w, 4));
      expect((await w.read(2, { recordsMax: 100, bytesMax: three }))!.lastLsn).toBe(4);
      expect((await w.read(2, { recordsMax: 100, bytesMax: three - 1 }))!.lastLsn).toBe(3);
    };
    await exactly(wal); // the recent groups' cache
    await wal.close();
    await exactly(await open({ dir })); // the segment on disk
  });

  it("stop at the end of a segment, and the next read starts the next one", async () => {
    const dir = tempDir();
    const wal = await open({ dir, segmentBytesMax: 4096 });
    await appendAll(wal, 200, 20, 1, 10);
    const sealed = wal.sealedSegments();
    expect(sealed.length).toBeGreaterThan(2);
    const c = (await wal.read(sealed[0]!.firstLsn, { recordsMax: 10_000, bytesMax: 1 << 24 }))!;
    expect(c.lastLsn).toBe(sealed[0]!.lastLsn);
    const d = (await wal.read(c.lastLsn + 1, { recordsMax: 10_000, bytesMax: 1 << 24 }))!;
    expect(d.segment).toBe(sealed[1]!.file);
    expect(d.firstLsn).toBe(sealed[1]!.firstLsn);
    expect(wal.segmentRange(c.lastLsn)).toEqual({
      firstLsn: sealed[0]!.firstLsn,
      lastLsn: sealed[0]!.lastLsn,
    });
    expect(wal.segmentRange(200)).toEqual({ firstLsn: wal.activeDurable().firstLsn, lastLsn: 200 });
  });

  it("a sealed segment that ends before the next one starts is corrupt, and stays so for later reads", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region, segmentBytesMax: 4096 });
    await appendAll(wal, 200, 20, 1, 10);
    const first = wal.sealedSegments()[0]!;
    await wal.close();
    // Drop the first segment's last frame: what is left is a valid segment that ends too early.
    const buf = fs.readFileSync(first.path);
    let p = 128;
    let lastStart = p;
    while (p < buf.length) {
      lastStart = p;
      p += 8 + buf.readUInt32LE(p + 4);
    }
    fs.writeFileSync(first.path, buf.subarray(0, lastStart));
    let reads = 0;
    const counting: FileOps = {
      ...nodeFileOps,
      open: (f, flags, mode) => (reads++, nodeFileOps.open(f, flags, mode)),
    };
    const again = await open({ dir, segmentBytesMax: 4096, fileOps: counting });
    const before = reads;
    await expect(again.read(1, { recordsMax: 10, bytesMax: 1 << 20 })).rejects.toThrow(
      /ends at LSN \d+ but \d+\.wal starts at/,
    );
    // The LSN it lacks is below the durable mark: never "nothing durable yet" (a tail would spin).
    await expect(again.read(first.lastLsn, { recordsMax: 10, bytesMax: 1 << 20 })).rejects.toBeInstanceOf(
      SegmentCorruptError,
    );
    expect(reads - before).toBe(1); // the second read failed without opening it again
  });
});

describe("a sealed segment damaged before its first read after a reopen", () => {
  it("fails that read at the damage, with its reason, and every later one at once", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region, segmentBytesMax: 4096 });
    await appendAll(wal, 200, 20, 1, 10);
    const first = wal.sealedSegments()[0]!;
    await wal.close();
    const at = frameOf(first.path, 3);
    const bytes = fs.readFileSync(first.path);
    bytes[at.end - 1]! ^= 0x10;
    fs.writeFileSync(first.path, bytes);
    let opens = 0;
    const counting: FileOps = {
      ...nodeFileOps,
      open: (f, flags, mode) => (opens++, nodeFileOps.open(f, flags, mode)),
    };
    const again = await open({ dir, segmentBytesMax: 4096, fileOps: counting });
    const before = opens;
    const err = await again.read(1, { recordsMax: 10, bytesMax: 1 << 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect(err).toMatchObject({ offset: at.offset, reason: "checksum mismatch" });
    await expect(again.read(2, { recordsMax: 10, bytesMax: 1 << 20 })).rejects.toBe(err);
    expect(opens - before).toBe(1);
  });
});

describe("group commit", () => {
  it("an append made while a group is in its fdatasync goes in the next group; both are answered, in order, on disk", async () => {
    const ops = faultyFs();
    const dir = tempDir();
    const wal = await open({ dir, fileOps: ops });
    let release!: () => void;
    ops.syncGate = new Promise((r) => (release = r));
    const a = wal.append(rec(1));
    await waitFor(() => ops.syncsWaiting > 0, "the first group's fdatasync");
    const b = wal.append(rec(2)); // a new group: the first is in the writer's hands
    await new Promise((r) => setImmediate(r));
    ops.syncGate = undefined;
    release();
    expect([(await a).lsn, (await b).lsn]).toEqual([1, 2]);
    await wal.append(rec(3));
    const c = (await wal.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!;
    matchesDisk(dir, c);
    expect(decode(c).map((r) => r.key)).toEqual(["k-1", "k-2", "k-3"]);
    expect(wal.stats().fsyncs).toBe(3);
  });
});

describe("waiting for durability", () => {
  it("answers at once when already durable, waits for a later LSN, rejects on abort and on close", async () => {
    const wal = await Wal.open({ dir: tempDir(), region });
    await appendAll(wal, 5);
    expect(await wal.waitForDurable(4)).toBe(5);
    const later = wal.waitForDurable(5);
    await wal.append(rec(6));
    expect(await later).toBe(6);
    const ac = new AbortController();
    const aborted = wal.waitForDurable(6, ac.signal);
    ac.abort(new Error("stopped by the test"));
    await expect(aborted).rejects.toThrow("stopped by the test");
    const already = new AbortController();
    already.abort(new Error("before"));
    await expect(wal.waitForDurable(6, already.signal)).rejects.toThrow("before");
    const closing = expect(wal.waitForDurable(6)).rejects.toBeInstanceOf(WalClosedError);
    await wal.close();
    await closing;
    // After the close too: it would wait for an event that never comes again.
    await expect(wal.waitForDurable(6)).rejects.toBeInstanceOf(WalClosedError);
    expect(await wal.waitForDurable(5)).toBe(6); // what is durable stays so
  });

  it("resolves only once the durable LSN is past the one waited on, not at it or before", async () => {
    const wal = await open({ dir: tempDir() });
    await wal.append(rec(1));
    let got: number | undefined;
    const waiting = wal.waitForDurable(3).then((lsn) => (got = lsn));
    await wal.append(rec(2));
    await wal.append(rec(3)); // durable 3: still not past it
    await new Promise((r) => setImmediate(r));
    expect(got).toBeUndefined();
    await wal.append(rec(4));
    await waiting;
    expect(got).toBe(4);
  });

  it("tails from any LSN, waits for new records, and ends when its signal aborts", async () => {
    const wal = await open({ dir: tempDir() });
    await appendAll(wal, 5);
    const ac = new AbortController();
    const seen: number[] = [];
    const done = (async () => {
      for await (const c of wal.tail(3, { recordsMax: 2, bytesMax: 1 << 20 }, ac.signal)) {
        seen.push(...decode(c).map((r) => r.lsn));
        if (seen.at(-1) === 7) ac.abort();
      }
    })();
    await appendAll(wal, 2, 0, 6);
    await done;
    expect(seen).toEqual([3, 4, 5, 6, 7]);
  });
});

describe("a tail", () => {
  it("whose WAL closes under it fails with WalClosedError (only its own signal ends it quietly)", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ region, dir });
    await appendAll(wal, 3);
    const seen: number[] = [];
    const ac = new AbortController();
    const done = (async () => {
      for await (const c of wal.tail(1, { recordsMax: 10, bytesMax: 1 << 20 }, ac.signal))
        seen.push(...decode(c).map((r) => r.lsn));
    })().then(
      () => "ended quietly",
      (err: unknown) => err,
    );
    await waitFor(() => seen.length === 3, "the tail read what was written");
    await wal.close();
    expect(await done).toBeInstanceOf(WalClosedError);
    expect(seen).toEqual([1, 2, 3]);
  });
});

describe("appends the WAL refuses", () => {
  it("beyond the queue bound, on a closed WAL, and batches past their limits: nothing appended", async () => {
    const ops = faultyFs();
    // A record of ~20 KB may take three times that before it is encoded (the bound counted).
    const wal = await open({ dir: tempDir(), fileOps: ops, queueBytesMax: 70_000 });
    let release!: () => void;
    ops.syncGate = new Promise((r) => (release = r));
    const first = wal.append(rec(1, 20_000)); // held in its fdatasync
    const busy = (() => {
      try {
        void wal.append(rec(2, 20_000));
        return undefined;
      } catch (err) {
        return err;
      }
    })();
    expect(busy).toBeInstanceOf(WalBusyError);
    expect((busy as Error).message).toMatch(/queue full \(\d+ bytes queued\)/);
    ops.syncGate = undefined;
    release();
    expect((await first).lsn).toBe(1);
    expect((await wal.append(rec(3))).lsn).toBe(2); // the refused append took no LSN
    const tooMany = (() => {
      try {
        void wal.appendBatch(Array.from({ length: 10_001 }, (_, i) => rec(i)));
      } catch (err) {
        return err;
      }
    })();
    expect(tooMany).toBeInstanceOf(RecordInvalidError);
    expect(tooMany).toMatchObject({ field: "records" });
    expect((tooMany as Error).message).toMatch(/10001 records exceeds the batch limit of 10000/);
    const tooLarge = (() => {
      try {
        void wal.appendBatch(Array.from({ length: 100 }, (_, i) => rec(i, 60_000)));
      } catch (err) {
        return err;
      }
    })();
    expect(tooLarge).toBeInstanceOf(RecordInvalidError);
    expect(tooLarge).toMatchObject({ field: "records" });
    expect((tooLarge as Error).message).toMatch(/above the \d+-byte write limit/);
    expect(await wal.appendBatch([])).toEqual([]);
    expect(wal.durableLsn).toBe(2);
    await wal.close();
    opened.splice(0);
    expect(wal.writable).toBe(false);
    expect(() => wal.append(rec(4))).toThrow(WalClosedError);
    await wal.close(); // twice is fine
  });

  it("a batch of exactly the limit's records is taken whole", async () => {
    const wal = await open({ dir: tempDir() });
    const acks = await wal.appendBatch(Array.from({ length: 10_000 }, (_, i) => rec(i)));
    expect(acks.map((a) => a.lsn)).toEqual(Array.from({ length: 10_000 }, (_, i) => i + 1));
  });

  it("the queue empties as groups are written, restored records included: a bound is never reached by what was written", async () => {
    const src = await open({ dir: tempDir() });
    await appendAll(src, 3, 20_000);
    const restored = decode((await src.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!);
    const wal = await open({ dir: tempDir(), queueBytesMax: 70_000 });
    for (const r of restored) await wal.appendRestored([r]); // (each may take 60 KB before encoding)
    for (let i = 4; i <= 15; i++) expect((await wal.append(rec(i, 20_000))).lsn).toBe(i);
  });

  it("a segment size below the minimum is refused before anything is opened", async () => {
    const dir = tempDir();
    await expect(Wal.open({ dir, region, segmentBytesMax: 4095 })).rejects.toThrow(
      "segmentBytesMax 4095 is below the minimum 4096",
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("a batch's records but the last carry the flag that says more follow (recovery drops an unfinished batch whole)", async () => {
    const wal = await open({ dir: tempDir() });
    await wal.append(rec(1));
    await wal.appendBatch([rec(2), rec(3), rec(4)]);
    const flags = decode((await wal.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!).map((r) => r.flags);
    expect(flags).toEqual([0, FLAG_BATCH_CONTINUES, FLAG_BATCH_CONTINUES, 0]);
  });

  it("restored records must continue the log exactly; they keep their own LSN and HLC", async () => {
    const dir = tempDir();
    const src = await open({ dir: tempDir() });
    await appendAll(src, 4);
    const records = decode((await src.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!);
    const wal = await open({ dir });
    expect(() => wal.appendRestored(records.slice(1))).toThrow(/restored LSN 2 must continue the WAL at 1/);
    await wal.appendRestored([]);
    await wal.appendRestored(records);
    expect(wal.durableLsn).toBe(4);
    const back = decode((await wal.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!);
    expect(back.map((r) => [r.lsn, r.hlc, r.key])).toEqual(records.map((r) => [r.lsn, r.hlc, r.key]));
    const next = await wal.append(rec(5));
    expect(next.lsn).toBe(5);
    expect(next.hlc.wallMs > records[3]!.hlc.wallMs || next.hlc.logical > records[3]!.hlc.logical).toBe(true);
  });
});

describe("restored records", () => {
  it("a gap inside a restored lot names the LSN it should have been", async () => {
    const src = await open({ dir: tempDir() });
    await appendAll(src, 4);
    const records = decode((await src.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!);
    const wal = await open({ dir: tempDir() });
    expect(() => wal.appendRestored([records[0]!, records[1]!, records[3]!])).toThrow(
      "restored LSN 4 must continue the WAL at 3",
    );
    expect(wal.durableLsn).toBe(0);
  });

  it("a lot larger than a fresh group is taken whole, and one past the queue bound is refused", async () => {
    const src = await open({ dir: tempDir() });
    await appendAll(src, 6, 60_000, 1, 6);
    const records = decode((await src.read(1, { recordsMax: 10, bytesMax: 16 << 20 }))!);
    expect(records).toHaveLength(6);
    const wal = await open({ dir: tempDir() });
    await wal.appendRestored(records); // ~360 KB in one group
    const back = decode((await wal.read(1, { recordsMax: 10, bytesMax: 16 << 20 }))!);
    expect(back.map((r) => r.bodyJson)).toEqual(records.map((r) => r.bodyJson));
    const small = await open({ dir: tempDir(), queueBytesMax: 200_000 });
    expect(() => small.appendRestored(records)).toThrow(WalBusyError);
    expect(small.durableLsn).toBe(0);
  });

  it("what restored records queued leaves the queue when written: the bound counts appends as on a WAL that restored nothing", async () => {
    const src = await open({ dir: tempDir() });
    await appendAll(src, 3, 20_000);
    const restored = decode((await src.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!);
    /** How many 20 KB appends the WAL takes while its first fdatasync is held. */
    const takenWhileHeld = async (restore: boolean): Promise<number> => {
      const ops = faultyFs();
      const wal = await open({ dir: tempDir(), fileOps: ops, queueBytesMax: 200_000 });
      if (restore) await wal.appendRestored(restored); // one lot: three frames in one group
      let release!: () => void;
      ops.syncGate = new Promise((r) => (release = r));
      const taken: Array<Promise<AppendAck>> = [];
      for (;;) {
        try {
          taken.push(wal.append(rec(taken.length, 20_000)));
        } catch (err) {
          expect(err).toBeInstanceOf(WalBusyError);
          break;
        }
      }
      ops.syncGate = undefined;
      release();
      await Promise.all(taken);
      return taken.length;
    };
    const fresh = await takenWhileHeld(false);
    expect(fresh).toBeGreaterThan(1);
    expect(await takenWhileHeld(true)).toBe(fresh);
  });

  it("an empty lot, restored or appended, writes nothing and syncs nothing", async () => {
    const wal = await open({ dir: tempDir() });
    await wal.append(rec(1));
    const fsyncs = wal.stats().fsyncs;
    await wal.appendRestored([]);
    expect(await wal.appendBatch([])).toEqual([]);
    await wal.append(rec(2));
    expect(wal.stats().fsyncs).toBe(fsyncs + 1);
    expect(wal.durableLsn).toBe(2);
  });
});

describe("a failed write", () => {
  it("whose truncate fails too leaves the WAL damaged until the next write cuts the stray bytes first", async () => {
    const dir = tempDir();
    const ops = faultyFs();
    let truncates = 0;
    let failTruncate = true;
    ops.ftruncate = async (fd, len) => {
      truncates++;
      if (failTruncate) throw Object.assign(new Error("EIO: i/o error, ftruncate"), { code: "EIO" });
      return nodeFileOps.ftruncate(fd, len);
    };
    const wal = await open({ dir, fileOps: ops });
    await appendAll(wal, 3);
    const size = wal.stats().activeBytes;
    ops.spaceBytes = 30; // a short write, then ENOSPC
    await expect(wal.append(rec(4, 200))).rejects.toBeInstanceOf(WalWriteError);
    expect(wal.writable).toBe(false);
    expect(fs.statSync(path.join(dir, wal.activeDurable().file)).size).toBeGreaterThan(size); // the stray bytes
    ops.spaceBytes = Infinity;
    failTruncate = false;
    const ack = await wal.append(rec(5));
    expect(ack.lsn).toBe(4);
    expect(wal.writable).toBe(true);
    expect(truncates).toBeGreaterThanOrEqual(2);
    await wal.close();
    opened.splice(0);
    const again = await open({ dir });
    expect(again.recovery.truncatedBytes).toBe(0);
    expect(decode((await again.read(1, { recordsMax: 10, bytesMax: 1 << 20 }))!).map((r) => r.key)).toEqual([
      "k-1",
      "k-2",
      "k-3",
      "k-5",
    ]);
  });

  it("of an fdatasync fails the group and names the call", async () => {
    const ops = faultyFs();
    let fail = false;
    ops.fdatasync = async (fd) => {
      if (fail) throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      return nodeFileOps.fdatasync(fd);
    };
    const wal = await open({ dir: tempDir(), fileOps: ops });
    await wal.append(rec(1));
    fail = true;
    const err = await wal.append(rec(2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WalWriteError);
    expect((err as Error).message).toMatch(/fdatasync/);
    expect(wal.durableLsn).toBe(1);
    fail = false;
    expect((await wal.append(rec(3))).lsn).toBe(2);
  });
});

describe("what the WAL tells the archive and the operator", () => {
  it("sealed segments with their LSNs and age, the active one's durable prefix, and stats", async () => {
    const dir = tempDir();
    let now = 50_000;
    const fsyncs: number[] = [];
    const wal = await open({
      dir,
      segmentBytesMax: 4096,
      // A monotonic clock far from 0: a duration is a difference of two readings, never a sum.
      runtime: { ...realRuntime, nowMs: () => now, monoMs: () => 1_000_000 + realRuntime.monoMs() },
      onFsync: (s) => void fsyncs.push(s),
    });
    expect(wal.activeDurable()).toMatchObject({ firstLsn: 1, lastLsn: 0, bytes: 128 });
    expect(wal.sealedSegments()).toEqual([]);
    now = 60_000;
    await appendAll(wal, 150, 20, 1, 10);
    const sealed = wal.sealedSegments();
    expect(sealed.length).toBeGreaterThan(1);
    expect(sealed[0]).toMatchObject({ firstLsn: 1, createdAtMs: 50_000, file: "00000000000000000001.wal" });
    for (let i = 1; i < sealed.length; i++) {
      expect(sealed[i]!.firstLsn).toBe(sealed[i - 1]!.lastLsn + 1);
      expect(sealed[i]!.createdAtMs).toBe(60_000);
    }
    const active = wal.activeDurable();
    expect(active.firstLsn).toBe(sealed.at(-1)!.lastLsn + 1);
    expect(active.lastLsn).toBe(150);
    expect(active.bytes).toBe(fs.statSync(active.path).size);
    const stats = wal.stats();
    const onDisk = fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
    expect(stats).toMatchObject({
      region,
      incarnation: wal.incarnation,
      segments: sealed.length + 1,
      bytes: onDisk,
      activeBytes: active.bytes,
      firstLsn: 1,
      durableLsn: 150,
      appends: 150,
      fsyncs: fsyncs.length,
    });
    expect(fsyncs.every((s) => s >= 0 && s < 60)).toBe(true);
    expect(await wal.removeBelow(sealed[1]!.firstLsn)).toBe(1);
    expect(wal.stats()).toMatchObject({ segments: sealed.length, firstLsn: sealed[1]!.firstLsn });
    expect(await wal.removeBelow(sealed[1]!.firstLsn)).toBe(0);
    await expect(wal.read(1, { recordsMax: 1, bytesMax: 1 << 20 })).rejects.toBeInstanceOf(
      WalLsnUnavailableError,
    );
  });

  it("a segment is never rotated while it holds no record, however large the group", async () => {
    const dir = tempDir();
    const wal = await open({ dir, segmentBytesMax: 4096 });
    await wal.append(rec(1, 10_000));
    await wal.append(rec(2, 10_000));
    expect(wal.stats().segments).toBe(2);
    expect(wal.sealedSegments()[0]).toMatchObject({ firstLsn: 1, lastLsn: 1 });
  });
});

describe("a segment that changes on disk after it was checked", () => {
  /** A WAL of sealed segments, reopened (so reads go to disk), its first segment read once (checked whole). */
  async function checkedOnDisk(dir: string) {
    const first = await open({ dir, segmentBytesMax: 4096 });
    await appendAll(first, 120, 100);
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    const wal = await open({ dir, segmentBytesMax: 4096 });
    await wal.read(1, { bytesMax: 1 << 20, recordsMax: 1 });
    const sealed = wal.sealedSegments()[0]!;
    return { wal, file: path.join(dir, sealed.file), lastLsn: sealed.lastLsn };
  }

  it("a frame whose checksum no longer holds is corrupt at its own offset; the LSNs before it still read", async () => {
    const dir = tempDir();
    const { wal, file } = await checkedOnDisk(dir);
    const at = frameOf(file, 4);
    const bytes = fs.readFileSync(file);
    bytes[at.end - 1]! ^= 0x10;
    fs.writeFileSync(file, bytes);
    const err = await wal.read(2, { bytesMax: 1 << 20, recordsMax: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect(err).toMatchObject({ offset: at.offset, reason: "checksum mismatch" });
    // LSNs before it still read (one record a time stops short of it).
    expect((await wal.read(2, { bytesMax: 1 << 20, recordsMax: 2 }))!.lastLsn).toBe(3);
  });

  it("two frames swapped (each intact) are corrupt where the order breaks, naming the LSN expected", async () => {
    const dir = tempDir();
    const { wal, file } = await checkedOnDisk(dir);
    const [a, b] = [frameOf(file, 5), frameOf(file, 6)];
    expect(a.end - a.offset).toBe(b.end - b.offset); // records of one size
    const bytes = fs.readFileSync(file);
    const fa = Buffer.from(bytes.subarray(a.offset, a.end));
    bytes.copy(bytes, a.offset, b.offset, b.end);
    fa.copy(bytes, b.offset);
    fs.writeFileSync(file, bytes);
    const err = await wal.read(3, { bytesMax: 1 << 20, recordsMax: 10 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ offset: a.offset, reason: "LSN 6 where 5 was expected" });
  });

  it("a file cut shorter than what was checked is corrupt where its bytes end", async () => {
    const dir = tempDir();
    const { wal, file, lastLsn } = await checkedOnDisk(dir);
    const at = frameOf(file, lastLsn);
    fs.truncateSync(file, at.offset + 5);
    const err = await wal.read(lastLsn, { bytesMax: 1 << 20, recordsMax: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect(err).toMatchObject({ offset: at.offset + 5, reason: "file shorter than its durable size" });
  });

  it("a read error that is not damage (EIO once) is not remembered: the next read of the segment works", async () => {
    const dir = tempDir();
    const first = await open({ dir, segmentBytesMax: 4096 });
    await appendAll(first, 120, 100);
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    let failReads = 0;
    const ops: FileOps = {
      ...nodeFileOps,
      read: async (...args: Parameters<FileOps["read"]>) => {
        if (failReads-- > 0) throw Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
        return nodeFileOps.read(...args);
      },
    };
    const wal = await open({ dir, segmentBytesMax: 4096, fileOps: ops });
    failReads = 1; // recovery has read the newest segment; now the first sealed one fails once
    await expect(wal.read(1, { bytesMax: 1 << 20, recordsMax: 5 })).rejects.toMatchObject({ code: "EIO" });
    expect((await wal.read(1, { bytesMax: 1 << 20, recordsMax: 5 }))!.lastLsn).toBe(5);
  });
});

describe("closing", () => {
  it("waits for the group being written: its appends are answered and on disk", async () => {
    const ops = faultyFs();
    const dir = tempDir();
    const wal = await open({ dir, fileOps: ops });
    let release!: () => void;
    ops.syncGate = new Promise((r) => (release = r));
    const pending = wal.append(rec(1));
    await new Promise((r) => setImmediate(r));
    let closed = false;
    const closing = wal.close().then(() => (closed = true));
    // A wait begun while close drains the group still gets that group's durability.
    const lastGroup = wal.waitForDurable(0);
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    ops.syncGate = undefined;
    release();
    expect((await pending).lsn).toBe(1);
    expect(await lastGroup).toBe(1);
    await closing;
    opened.splice(0);
    const again = await open({ dir });
    expect(again.durableLsn).toBe(1);
  });
});
