import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { HybridClock } from "../../src/clock/index.js";
import { SegmentCorruptError, WalLsnUnavailableError, WalWriteError } from "../../src/errors.js";
import { realRuntime } from "../../src/runtime/index.js";
import { type FileOps, nodeFileOps } from "../../src/util/file-ops.js";
import { Wal, decodeFrames, type WalChunk, type WalRecord } from "../../src/wal/index.js";
import { faultyFs } from "../support/faulty-fs.js";
import { tempDir } from "../support/tmp.js";

const region = "us-east-1";
const rec = (i: number, extra = "") => ({
  key: `key-${i}`,
  tenant: "tenant-a",
  outcome: "accepted",
  body: { i, extra },
});

async function readAll(
  wal: Wal,
  from = 1,
  limits = { bytesMax: 64 * 1024, recordsMax: 500 },
): Promise<WalRecord[]> {
  const out: WalRecord[] = [];
  let next = from;
  for (;;) {
    const c: WalChunk | undefined = await wal.read(next, limits);
    if (!c) return out;
    const records = decodeFrames(c.frames, { source: c.segment, baseOffset: c.offset, firstLsn: next });
    expect(records.length).toBe(c.lastLsn - c.firstLsn + 1);
    expect(c.frames.length <= limits.bytesMax || records.length === 1).toBe(true);
    expect(records.length).toBeLessThanOrEqual(limits.recordsMax);
    out.push(...records);
    next = c.lastLsn + 1;
  }
}

describe("Wal", () => {
  it("acknowledges concurrent appends in LSN order, sharing fsyncs (group commit)", async () => {
    const wal = await Wal.open({ dir: tempDir(), region });
    const order: number[] = [];
    const acks = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => wal.append(rec(i)).then((a) => (order.push(a.lsn), a))),
    );
    expect(acks.map((a) => a.lsn)).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    expect(order).toEqual(acks.map((a) => a.lsn));
    expect(wal.durableLsn).toBe(2000);
    expect(wal.stats().fsyncs).toBeLessThan(50);
    const records = await readAll(wal);
    expect(records.map((r) => JSON.parse(r.bodyJson!).i)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    for (let i = 1; i < records.length; i++)
      expect(
        records[i]!.hlc > records[i - 1]!.hlc || records[i]!.hlc.wallMs >= records[i - 1]!.hlc.wallMs,
      ).toBe(true);
    await wal.close();
  });

  it("recovers every record after a clean reopen and keeps its HLC ahead even if the wall clock stepped back", async () => {
    const dir = tempDir();
    let now = 2_000_000_000_000;
    const wal = await Wal.open({
      dir,
      region,
      runtime: { ...realRuntime, nowMs: () => now },
      segmentBytesMax: 16 * 1024,
    });
    await Promise.all(Array.from({ length: 500 }, (_, i) => wal.append(rec(i))));
    const last = (await readAll(wal)).at(-1)!;
    await wal.close();
    now -= 3_600_000;
    const again = await Wal.open({
      dir,
      region,
      runtime: { ...realRuntime, nowMs: () => now },
      segmentBytesMax: 16 * 1024,
    });
    expect(again.recovery).toMatchObject({ lastLsn: 500, truncatedBytes: 0, created: false });
    expect(again.incarnation).toBe(wal.incarnation);
    const ack = await again.append(rec(500));
    expect(ack.lsn).toBe(501);
    expect(ack.hlc.wallMs).toBeGreaterThanOrEqual(last.hlc.wallMs);
    expect(ack.hlc.wallMs > last.hlc.wallMs || ack.hlc.logical > last.hlc.logical).toBe(true);
    expect((await readAll(again)).length).toBe(501);
    await again.close();
  });

  it("rotates segments by size and by age, and reads across them within the limits", async () => {
    const dir = tempDir();
    let now = 1_000;
    const wal = await Wal.open({
      dir,
      region,
      runtime: { ...realRuntime, nowMs: () => now },
      segmentBytesMax: 8192,
      segmentAgeMsMax: 60_000,
    });
    for (let i = 0; i < 300; i += 10)
      await Promise.all(Array.from({ length: 10 }, (_, j) => wal.append(rec(i + j, "x".repeat(40)))));
    const bySize = wal.stats().segments;
    expect(bySize).toBeGreaterThan(3);
    for (const f of fs.readdirSync(dir))
      expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(8192 + 4096);
    await wal.append(rec(300));
    expect(wal.stats().segments).toBe(bySize);
    now += 60_000;
    await wal.append(rec(301));
    expect(wal.stats().segments).toBe(bySize + 1);
    const records = await readAll(wal, 1, { bytesMax: 700, recordsMax: 7 });
    expect(records.map((r) => r.lsn)).toEqual(Array.from({ length: 302 }, (_, i) => i + 1));
    await wal.close();
    // Reading sealed segments from disk after a reopen, from the middle.
    const again = await Wal.open({ dir, region, segmentBytesMax: 8192 });
    expect((await readAll(again, 123, { bytesMax: 1 << 20, recordsMax: 50 })).map((r) => r.lsn)[0]).toBe(123);
    expect((await readAll(again, 1)).length).toBe(302);
    await again.close();
  });

  it("never lets a reader see a record before its fdatasync returns", async () => {
    const ops = faultyFs();
    const wal = await Wal.open({ dir: tempDir(), region, fileOps: ops });
    let release!: () => void;
    ops.syncGate = new Promise((r) => (release = r));
    let acked = false;
    const pending = wal.append(rec(1)).then(() => (acked = true));
    const durable = wal.waitForDurable(0);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(wal.durableLsn).toBe(0);
    expect(await wal.read(1, { bytesMax: 1 << 20, recordsMax: 10 })).toBeUndefined();
    expect(acked).toBe(false);
    ops.syncGate = undefined;
    release();
    expect(await durable).toBe(1);
    await pending;
    expect((await wal.read(1, { bytesMax: 1 << 20, recordsMax: 10 }))?.lastLsn).toBe(1);
    await wal.close();
  });

  it("tails new durable records as they arrive", async () => {
    const wal = await Wal.open({ dir: tempDir(), region });
    const ac = new AbortController();
    const seen: number[] = [];
    const tailing = (async () => {
      for await (const c of wal.tail(1, { bytesMax: 1 << 20, recordsMax: 100 }, ac.signal)) {
        for (let l = c.firstLsn; l <= c.lastLsn; l++) seen.push(l);
        if (c.lastLsn >= 250) ac.abort();
      }
    })();
    for (let i = 0; i < 250; i++) await wal.append(rec(i));
    await tailing;
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    await wal.close();
  });

  it("keeps a reader's file open through a rotation of the segment it reads (no read or close of a closed fd)", async () => {
    // Found by the simulator (PostgreSQL, several nodes, seed 3): a read of the active segment
    // used the writer's fd; a rotation during the read closed it, and the reader then read it
    // and closed it again. On a real disk the number may by then name another file.
    const dir = tempDir();
    const first = await Wal.open({ dir, region });
    for (let i = 0; i < 5; i++) await first.append(rec(i));
    await first.close();
    const open = new Set<number>();
    const misuse: string[] = [];
    let readGate: Promise<void> | undefined;
    const ops: FileOps = {
      ...nodeFileOps,
      async open(p, flags, mode) {
        const fd = await nodeFileOps.open(p, flags, mode);
        open.add(fd);
        return fd;
      },
      async close(fd) {
        if (!open.delete(fd)) misuse.push(`close of fd ${fd}, not open`);
        return nodeFileOps.close(fd);
      },
      async read(fd, buf, offset, length, position) {
        if (readGate) await readGate;
        if (!open.has(fd)) misuse.push(`read of fd ${fd}, not open`);
        return nodeFileOps.read(fd, buf, offset, length, position);
      },
    };
    let now = Date.now();
    // Reopened: nothing is cached in memory, so a read goes to the (active) segment's file.
    const wal = await Wal.open({
      dir,
      region,
      fileOps: ops,
      runtime: { ...realRuntime, nowMs: () => now },
      segmentAgeMsMax: 60_000,
    });
    let release!: () => void;
    readGate = new Promise((r) => (release = r));
    const reading = wal.read(1, { bytesMax: 1 << 20, recordsMax: 100 });
    await new Promise((r) => setImmediate(r));
    readGate = undefined;
    now += 60_000;
    const segments = wal.stats().segments;
    await wal.append(rec(5)); // sealed by age: the segment being read is no longer the active one
    expect(wal.stats().segments).toBe(segments + 1);
    release();
    const chunk = await reading;
    expect(chunk && [chunk.firstLsn, chunk.lastLsn]).toEqual([1, 5]);
    await wal.close();
    expect(misuse).toEqual([]);
  });

  it("appendBatch is one write and one fsync, and refuses a batch that breaks a limit", async () => {
    const ops = faultyFs();
    const wal = await Wal.open({ dir: tempDir(), region, fileOps: ops });
    const before = ops.syncs;
    const acks = await wal.appendBatch(Array.from({ length: 1000 }, (_, i) => rec(i)));
    expect(acks.map((a) => a.lsn)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(ops.syncs - before).toBe(1);
    expect(() => wal.appendBatch([rec(1), { key: "", tenant: "t", outcome: "a" }])).toThrow(
      /'key': must not be empty/,
    );
    expect(() => wal.appendBatch(Array.from({ length: 100 }, (_, i) => rec(i, "y".repeat(60_000))))).toThrow(
      /write limit/,
    );
    expect(wal.durableLsn).toBe(1000);
    expect((await wal.append(rec(9))).lsn).toBe(1001);
    await wal.close();
  });

  it("removes whole segments below the LSN a caller still needs, and says so when a read asks below", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region, segmentBytesMax: 8192 });
    for (let i = 0; i < 400; i += 20)
      await Promise.all(Array.from({ length: 20 }, (_, j) => wal.append(rec(i + j, "z".repeat(30)))));
    const segments = wal.stats().segments;
    const removed = await wal.removeBelow(200);
    expect(removed).toBeGreaterThan(0);
    expect(wal.stats().segments).toBe(segments - removed);
    expect(fs.readdirSync(dir).length).toBe(segments - removed);
    expect(wal.firstLsn).toBeLessThanOrEqual(200);
    await expect(wal.read(wal.firstLsn - 1, { bytesMax: 1 << 20, recordsMax: 10 })).rejects.toBeInstanceOf(
      WalLsnUnavailableError,
    );
    expect((await readAll(wal, 200)).length).toBe(201);
    await wal.removeBelow(1_000_000);
    expect(wal.stats().segments).toBe(1); // the active segment always stays
    await wal.close();
    const again = await Wal.open({ dir, region, segmentBytesMax: 8192 });
    expect(again.durableLsn).toBe(400);
    await again.close();
  });

  it("fails pending appends on ENOSPC, stays valid, and works again once space is back", async () => {
    const dir = tempDir();
    const ops = faultyFs();
    const wal = await Wal.open({ dir, region, fileOps: ops });
    const ok = await Promise.all(Array.from({ length: 100 }, (_, i) => wal.append(rec(i))));
    ops.spaceBytes = 3000; // the next group gets a short write, then ENOSPC
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => wal.append(rec(100 + i))));
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    const err = (results[0] as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(WalWriteError);
    expect(err.errno).toBe("ENOSPC");
    expect(err.message).toMatch(/WAL write failed on 0+1\.wal: ENOSPC/);
    expect(wal.durableLsn).toBe(100);
    ops.spaceBytes = Infinity;
    const later = await wal.append(rec(1000));
    expect(later.lsn).toBe(101); // no gap where the failed appends were
    await wal.close();
    const again = await Wal.open({ dir, region });
    expect(again.recovery.truncatedBytes).toBe(0);
    const records = await readAll(again);
    expect(records.map((r) => r.lsn)).toEqual([...ok.map((a) => a.lsn), 101]);
    expect(JSON.parse(records[100]!.bodyJson!).i).toBe(1000);
    await again.close();
  });

  it("refuses to open on corruption in acknowledged data, naming file and offset; repair cuts it loudly", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region });
    await Promise.all(Array.from({ length: 20_000 }, (_, i) => wal.append(rec(i, "p".repeat(200)))));
    await wal.close();
    const file = fs.readdirSync(dir)[0]!;
    const filePath = path.join(dir, file);
    const bytes = fs.readFileSync(filePath);
    expect(bytes.length).toBeGreaterThan(4 * 1024 * 1024 + 1000); // beyond the torn-tail window
    bytes[1000]! ^= 0x10;
    fs.writeFileSync(filePath, bytes);
    const err = await Wal.open({ dir, region }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentCorruptError);
    expect((err as SegmentCorruptError).file).toBe(file);
    expect((err as SegmentCorruptError).offset).toBeLessThanOrEqual(1000);
    expect((err as Error).message).toMatch(/corrupt WAL segment 0+1\.wal at offset \d+: checksum mismatch/);
    const repaired = await Wal.open({ dir, region, repair: true });
    expect(repaired.recovery.repairedCorruption).toMatch(/checksum mismatch/);
    expect(repaired.durableLsn).toBeLessThan(20);
    await repaired.close();
  });

  it("finds corruption in a sealed segment when it is read, and refuses a directory of another region", async () => {
    const dir = tempDir();
    const wal = await Wal.open({ dir, region, segmentBytesMax: 8192 });
    for (let i = 0; i < 200; i += 20)
      await Promise.all(Array.from({ length: 20 }, (_, j) => wal.append(rec(i + j))));
    await wal.close();
    const first = path.join(dir, fs.readdirSync(dir).sort()[0]!);
    const bytes = fs.readFileSync(first);
    bytes[bytes.length - 3]! ^= 1;
    fs.writeFileSync(first, bytes);
    const again = await Wal.open({ dir, region, segmentBytesMax: 8192 });
    await expect(readAll(again)).rejects.toThrow(/corrupt WAL segment 0+1\.wal at offset \d+/);
    await again.close();
    await expect(Wal.open({ dir, region: "eu-west-1" })).rejects.toThrow(
      /belongs to region 'us-east-1', this node is 'eu-west-1'/,
    );
  });

  it("shares its clock with the node: remote updates order local appends after them", async () => {
    const clock = new HybridClock({ wallClock: () => 1_000 });
    const wal = await Wal.open({ dir: tempDir(), region, clock });
    clock.update({ wallMs: 5_000, logical: 9 });
    const ack = await wal.append(rec(1));
    expect(ack.hlc).toEqual({ wallMs: 5_000, logical: 11 }); // update() issued .10
    await wal.close();
  });
});
