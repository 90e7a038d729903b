/**
 * The inbox WAL: segmented, append-only, group-committed.
 *
 * append() validates and encodes the record at once into the group being filled, with its
 * LSN and HLC; a single writer loop writes one group at a time at the end of the active
 * segment, fdatasyncs, then resolves every append of the group in LSN order. Appends that
 * arrive while an fsync is in flight fill the next group, so N concurrent appends cost
 * about N / group size fsyncs. Readers only ever see bytes below the durable mark.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { HybridClock, type Hlc } from "../clock/index.js";
import {
  RecordInvalidError,
  WalBusyError,
  WalClosedError,
  WalLsnUnavailableError,
  WalWriteError,
  SegmentCorruptError,
} from "../errors.js";
import {
  appendBatchRecordsMax,
  segmentAgeMsMaxDefault,
  segmentBytesMaxDefault,
  segmentBytesMin,
  walQueueBytesMaxDefault,
  walUnsyncedBytesMax,
} from "../limits.js";
import { fsyncDir, writeAll } from "../util/durable-file.js";
import { realRuntime, type Runtime } from "../runtime/index.js";
import { type FileOps, nodeFileOps } from "../util/file-ops.js";
import {
  FLAG_BATCH_CONTINUES,
  checkFrame,
  encodeFrame,
  frameBytesUpperBound,
  prepareRecord,
  type PreparedRecord,
  type RecordInput,
  type WalRecord,
  viewOf,
} from "./record.js";
import {
  createSegment,
  recoverWal,
  scanSealed,
  type RecoveryEvidence,
  type RecoveryReport,
  type SegmentInfo,
} from "./recovery.js";
import { segmentHeaderBytes } from "./segment.js";

export interface WalOptions {
  dir: string;
  region: string;
  segmentBytesMax?: number;
  segmentAgeMsMax?: number;
  queueBytesMax?: number;
  /** Shared with the rest of the node so local and remote events order on one clock. */
  clock?: HybridClock;
  fileOps?: FileOps;
  /** Time, timers and randomness (the simulator passes its own). */
  runtime?: Runtime;
  /** Cut the newest segment at its first corrupt frame instead of refusing to open. Loses data. */
  repair?: boolean;
  /** Called with the duration of every fdatasync (seconds), for the fsync histogram. */
  onFsync?: (seconds: number) => void;
  /**
   * What the rest of the node knows was acknowledged: with it, recovery restores damaged or
   * missing acknowledged records instead of cutting them, and refuses when it cannot.
   */
  evidence?: RecoveryEvidence;
}

export interface AppendAck {
  lsn: number;
  hlc: Hlc;
}

/** A durable byte range of one segment: whole frames, LSNs firstLsn..lastLsn. */
export interface WalChunk {
  origin: string;
  incarnation: string;
  firstLsn: number;
  lastLsn: number;
  frames: Buffer;
  segment: string;
  offset: number;
  /**
   * Records in `frames` when they are not exactly firstLsn..lastLsn (a chunk built from the
   * store with LSNs nobody holds, or filtered by tenant). Undefined for a chunk of the WAL.
   */
  count?: number;
}

export interface ReadLimits {
  bytesMax: number;
  recordsMax: number;
}

export interface WalStats {
  region: string;
  incarnation: string;
  segments: number;
  /** Bytes of sealed segments are counted once known (after a read or scan); the active one always. */
  bytes: number;
  /** Bytes of the active (newest) segment: what recovery has to scan. */
  activeBytes: number;
  firstLsn: number;
  durableLsn: number;
  fsyncs: number;
  appends: number;
}

const indexEvery = 1024;
const groupBytesInitial = 16 * 1024;

interface Group {
  buf: Buffer;
  dv: DataView;
  used: number;
  firstLsn: number;
  lastLsn: number;
  lastHlc: Hlc | undefined;
  /** [lsn, offset-in-group] of frames that land on an index point. */
  indexPoints: number[];
  done: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function newGroup(firstLsn: number, bytes: number): Group {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Every append chains on `done`; this guard only stops an unobserved rejection from crashing.
  done.catch(() => undefined);
  const buf = Buffer.allocUnsafe(bytes);
  return {
    buf,
    dv: viewOf(buf),
    used: 0,
    firstLsn,
    lastLsn: firstLsn - 1,
    lastHlc: undefined,
    indexPoints: [],
    done,
    resolve,
    reject,
  };
}

export class Wal {
  readonly dir: string;
  readonly region: string;
  readonly clock: HybridClock;
  readonly recovery: RecoveryReport;
  private readonly ops: FileOps;
  private readonly rt: Runtime;
  private readonly segmentBytesMax: number;
  private readonly segmentAgeMsMax: number;
  private readonly queueBytesMax: number;
  private readonly onFsync: ((seconds: number) => void) | undefined;
  /** Soft size of one write: a quarter segment keeps segments near their size; one batch may exceed it. */
  private readonly groupBytesMax: number;
  private readonly segments: SegmentInfo[];
  private activeFd: number;
  private readonly groups: Group[] = [];
  private queuedBytes = 0;
  private nextLsn: number;
  private durable: number;
  private writing = false;
  private closed = false;
  /** The "close" event was emitted: nothing more becomes durable. */
  private closeEmitted = false;
  /** A failed write left bytes past the durable mark that could not be cut yet. */
  private damaged = false;
  private fsyncCount = 0;
  private appendCount = 0;
  private readonly events = new EventEmitter();

  private constructor(
    o: WalOptions,
    rec: { segments: SegmentInfo[]; activeFd: number; report: RecoveryReport },
  ) {
    this.dir = o.dir;
    this.region = o.region;
    this.ops = o.fileOps ?? nodeFileOps;
    this.rt = o.runtime ?? realRuntime;
    this.segmentBytesMax = o.segmentBytesMax ?? segmentBytesMaxDefault;
    this.segmentAgeMsMax = o.segmentAgeMsMax ?? segmentAgeMsMaxDefault;
    this.queueBytesMax = o.queueBytesMax ?? walQueueBytesMaxDefault;
    this.groupBytesMax = Math.min(
      walUnsyncedBytesMax,
      Math.max(64 * 1024, Math.floor(this.segmentBytesMax / 4)),
    );
    this.onFsync = o.onFsync;
    this.clock = o.clock ?? new HybridClock({ wallClock: () => this.rt.nowMs() });
    if (rec.report.lastHlc) this.clock.observe(rec.report.lastHlc);
    this.segments = rec.segments;
    this.activeFd = rec.activeFd;
    this.recovery = rec.report;
    this.durable = rec.report.lastLsn;
    this.nextLsn = this.durable + 1;
    this.events.setMaxListeners(0);
  }

  /** Open (recovering) or create the WAL in `dir`. Throws SegmentCorruptError rather than serve a hole. */
  static async open(o: WalOptions): Promise<Wal> {
    if (o.segmentBytesMax !== undefined && o.segmentBytesMax < segmentBytesMin) {
      throw new RangeError(`segmentBytesMax ${o.segmentBytesMax} is below the minimum ${segmentBytesMin}`);
    }
    const rec = await recoverWal({
      dir: o.dir,
      region: o.region,
      ops: o.fileOps ?? nodeFileOps,
      runtime: o.runtime ?? realRuntime,
      repair: o.repair ?? false,
      indexEvery,
      evidence: o.evidence,
    });
    return new Wal(o, rec);
  }

  get incarnation(): string {
    return this.segments[0]!.header.incarnation;
  }

  /** Open, and not left damaged by a write error it could not undo. */
  get writable(): boolean {
    return !this.closed && !this.damaged;
  }

  /** Highest LSN that is fdatasync'ed; readers never see beyond it. */
  get durableLsn(): number {
    return this.durable;
  }

  /** Oldest LSN still retained. */
  get firstLsn(): number {
    return this.segments[0]!.header.firstLsn;
  }

  append(input: RecordInput): Promise<AppendAck> {
    return this.appendPrepared(prepareRecord(input));
  }

  /** Append a record already checked by prepareRecord (callers that need its fields first). */
  appendPrepared(rec: PreparedRecord): Promise<AppendAck> {
    const group = this.reserve(frameBytesUpperBound(rec));
    const ack = this.encodeInto(group, rec, 0);
    return group.done.then(() => ack);
  }

  /**
   * Append records that already carry their LSN and HLC: acknowledged records recovery
   * restores from the store or the peers. They must continue the log exactly (the next LSN,
   * no gap), and nothing else may be appending (the node admits no appends while recovering).
   */
  appendRestored(records: readonly WalRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    records.forEach((r, i) =>
      assert.equal(
        r.lsn,
        this.nextLsn + i,
        `restored LSN ${r.lsn} must continue the WAL at ${this.nextLsn + i}`,
      ),
    );
    let bound = 0;
    for (const r of records) bound += frameBytesUpperBound(r);
    const group = this.reserve(bound);
    for (const r of records) {
      const start = group.used;
      group.used = encodeFrame(group.buf, start, r, r.lsn, r.hlc, 0, group.dv);
      this.queuedBytes += group.used - start;
      group.lastLsn = r.lsn;
      group.lastHlc = r.hlc;
      this.nextLsn++;
      this.clock.observe(r.hlc);
    }
    return group.done;
  }

  /** Append records as one unit: one write, one fsync; all are acknowledged or none. */
  appendBatch(inputs: readonly RecordInput[]): Promise<AppendAck[]> {
    if (inputs.length === 0) return Promise.resolve([]);
    if (inputs.length > appendBatchRecordsMax) {
      throw new RecordInvalidError(
        "records",
        `${inputs.length} records exceeds the batch limit of ${appendBatchRecordsMax}`,
      );
    }
    const recs = inputs.map(prepareRecord);
    let bound = 0;
    for (const r of recs) bound += frameBytesUpperBound(r);
    if (bound > walUnsyncedBytesMax) {
      throw new RecordInvalidError(
        "records",
        `batch may take ${bound} bytes, above the ${walUnsyncedBytesMax}-byte write limit`,
      );
    }
    const group = this.reserve(bound);
    const acks = new Array<AppendAck>(recs.length);
    for (let i = 0; i < recs.length; i++) {
      acks[i] = this.encodeInto(group, recs[i]!, i < recs.length - 1 ? FLAG_BATCH_CONTINUES : 0);
    }
    return group.done.then(() => acks);
  }

  /** The group that will hold the next `bytes` bytes, started anew if the filling one is full. */
  private reserve(bytes: number): Group {
    if (this.closed) throw new WalClosedError(this.dir);
    if (this.queuedBytes + bytes > this.queueBytesMax) throw new WalBusyError(this.queuedBytes);
    let g = this.groups[this.groups.length - 1];
    // The group in the writer's hands is frozen; only one not yet taken keeps filling.
    if (!g || g === this.inFlight || (g.used > 0 && g.used + bytes > this.groupBytesMax)) {
      // Size the new group like the last one, so steady load does not regrow (and copy) each time.
      g = newGroup(
        this.nextLsn,
        Math.min(this.groupBytesMax, Math.max(groupBytesInitial, bytes, this.lastGroupBytes)),
      );
      this.groups.push(g);
      this.scheduleFlush();
    } else if (g.used + bytes > g.buf.length) {
      const bigger = Buffer.allocUnsafe(
        Math.min(walUnsyncedBytesMax, Math.max(g.buf.length * 2, g.used + bytes)),
      );
      g.buf.copy(bigger, 0, 0, g.used);
      g.buf = bigger;
      g.dv = viewOf(bigger);
    }
    return g;
  }

  private inFlight: Group | undefined;
  private lastGroupBytes = 0;

  private encodeInto(g: Group, rec: PreparedRecord, flags: number): AppendAck {
    const lsn = this.nextLsn++;
    const hlc = this.clock.now();
    const start = g.used;
    const end = encodeFrame(g.buf, start, rec, lsn, hlc, flags, g.dv);
    this.queuedBytes += end - start;
    g.used = end;
    g.lastLsn = lsn;
    g.lastHlc = hlc;
    this.appendCount++;
    return { lsn, hlc };
  }

  private scheduleFlush(): void {
    if (this.writing) return;
    this.writing = true;
    // The next turn, not a microtask: lets every append of this turn join the group.
    this.rt.soon(() => void this.flushLoop());
  }

  private async flushLoop(): Promise<void> {
    while (this.groups.length > 0) {
      const g = this.groups[0]!;
      this.inFlight = g;
      try {
        if (this.damaged) await this.cutToDurable();
        await this.maybeRotate(g);
        await this.writeGroup(g);
        this.groups.shift();
        this.queuedBytes -= g.used;
        this.lastGroupBytes = g.used + (g.used >> 3);
        this.inFlight = undefined;
        g.resolve();
        this.events.emit("durable", this.durable);
      } catch (err) {
        this.inFlight = undefined;
        await this.failQueued(err);
      }
    }
    this.writing = false;
    this.events.emit("idle");
  }

  private async writeGroup(g: Group): Promise<void> {
    const seg = this.active;
    const bytes = g.buf.subarray(0, g.used);
    try {
      await writeAll(this.ops, this.activeFd, bytes, seg.bytes);
    } catch (err) {
      throw new WalWriteError(seg.file, "write", err);
    }
    const t0 = this.rt.monoMs();
    try {
      await this.ops.fdatasync(this.activeFd);
    } catch (err) {
      throw new WalWriteError(seg.file, "fdatasync", err);
    }
    this.fsyncCount++;
    this.onFsync?.((this.rt.monoMs() - t0) / 1000);
    this.indexGroup(seg, g);
    seg.bytes += g.used;
    seg.lastLsn = g.lastLsn;
    this.durable = g.lastLsn;
    this.recent.push({
      firstLsn: g.firstLsn,
      lastLsn: g.lastLsn,
      buf: bytes,
      capacity: g.buf.length,
      offset: seg.bytes - g.used,
      seg,
    });
    // Count capacity, not use: a cached view keeps its whole buffer alive.
    this.recentBytes += g.buf.length;
    while (this.recentBytes > recentBytesMax && this.recent.length > 1)
      this.recentBytes -= this.recent.shift()!.capacity;
  }

  private indexGroup(seg: SegmentInfo, g: Group): void {
    // Walk frame lengths once to place index points; cheap next to the fsync just done.
    const index = seg.index!;
    let p = 0;
    for (let lsn = g.firstLsn; lsn <= g.lastLsn; lsn++) {
      if ((lsn - seg.header.firstLsn) % indexEvery === 0) index.push(lsn, seg.bytes + p);
      p += 8 + g.buf.readUInt32LE(p + 4);
    }
  }

  /** Fail every queued append after a write error; roll LSNs back so there is no gap. */
  private async failQueued(err: unknown): Promise<void> {
    const error = err instanceof Error ? err : new Error(String(err));
    const failed = this.groups.splice(0);
    this.queuedBytes = 0;
    this.nextLsn = this.durable + 1;
    this.damaged = true;
    try {
      await this.cutToDurable();
    } catch {
      // Stays damaged; the next flush tries again before writing.
    }
    for (const g of failed) g.reject(error);
  }

  /** Remove anything past the durable mark a failed write may have left. */
  private async cutToDurable(): Promise<void> {
    const seg = this.active;
    try {
      await this.ops.ftruncate(this.activeFd, seg.bytes);
      await this.ops.fdatasync(this.activeFd);
    } catch (err) {
      throw new WalWriteError(seg.file, "truncate after failed write", err);
    }
    this.damaged = false;
  }

  private get active(): SegmentInfo {
    return this.segments[this.segments.length - 1]!;
  }

  private async maybeRotate(g: Group): Promise<void> {
    const seg = this.active;
    if (seg.bytes === segmentHeaderBytes) return;
    const full = seg.bytes + g.used > this.segmentBytesMax;
    const old = this.rt.nowMs() - seg.header.createdAtMs >= this.segmentAgeMsMax;
    if (!full && !old) return;
    const header = { ...seg.header, firstLsn: g.firstLsn, createdAtMs: this.rt.nowMs() };
    let created;
    try {
      created = await createSegment(this.ops, this.dir, header);
    } catch (err) {
      throw new WalWriteError(header.region, "create segment", err);
    }
    await this.ops.close(this.activeFd).catch(() => undefined);
    this.activeFd = created.fd;
    this.segments.push(created.info);
  }

  // ---- reading -------------------------------------------------------------------------

  private readonly recent: Array<{
    firstLsn: number;
    lastLsn: number;
    buf: Buffer;
    capacity: number;
    offset: number;
    seg: SegmentInfo;
  }> = [];
  private recentBytes = 0;

  /** Resolve once durableLsn > afterLsn (at once if it already is), or reject when the signal aborts or the WAL closes. */
  waitForDurable(afterLsn: number, signal?: AbortSignal): Promise<number> {
    if (this.durable > afterLsn) return Promise.resolve(this.durable);
    // A closed WAL has nothing more to wait for: its "close" event was emitted already. (While
    // close() waits for the group being written, that group's durable event still comes.)
    if (this.closeEmitted) return Promise.reject(new WalClosedError(this.dir));
    return new Promise((resolve, reject) => {
      const onDurable = (lsn: number) => {
        if (lsn <= afterLsn) return;
        cleanup();
        resolve(lsn);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason ?? new Error("aborted"));
      };
      const onClose = () => {
        cleanup();
        reject(new WalClosedError(this.dir));
      };
      const cleanup = () => {
        this.events.off("durable", onDurable);
        this.events.off("close", onClose);
        signal?.removeEventListener("abort", onAbort);
      };
      if (signal?.aborted) return onAbort();
      this.events.on("durable", onDurable);
      this.events.on("close", onClose);
      signal?.addEventListener("abort", onAbort);
    });
  }

  /**
   * Durable frames from `fromLsn`, within one segment, at most `limits` (but always at least one
   * frame). Undefined when nothing durable is at or after fromLsn yet. Every frame is
   * checked again after reading (both sides of the disk).
   */
  async read(fromLsn: number, limits: ReadLimits): Promise<WalChunk | undefined> {
    if (fromLsn > this.durable) return undefined;
    if (fromLsn < this.firstLsn) throw new WalLsnUnavailableError(fromLsn, this.firstLsn);
    const hot = this.readRecent(fromLsn, limits);
    if (hot) return hot;
    const segIdx = this.findSegment(fromLsn);
    const seg = this.segments[segIdx]!;
    // Taken before awaiting: retention may remove segments meanwhile and shift the list.
    const next = this.segments[segIdx + 1];
    if (seg.damaged) throw seg.damaged;
    if (seg.lastLsn === undefined) {
      await scanSealed(this.ops, seg, indexEvery).catch((err: unknown) => {
        // Remember it: every later read of this segment fails at once, without reading it again.
        if (err instanceof SegmentCorruptError) seg.damaged = err;
        throw err;
      });
      if (next && seg.lastLsn !== next.header.firstLsn - 1) {
        // Remembered too: a later read of the LSNs it lacks would otherwise find "nothing
        // durable yet" below the durable mark, and a tail would spin on it.
        seg.damaged = new SegmentCorruptError(
          seg.file,
          seg.bytes,
          `ends at LSN ${seg.lastLsn} but ${next.file} starts at ${next.header.firstLsn}`,
        );
        throw seg.damaged;
      }
    }
    if (fromLsn > seg.lastLsn!) return undefined;
    return this.readFromSegment(seg, fromLsn, limits);
  }

  /** The LSNs of the segment holding `lsn` (from the segment names: valid even when the segment is damaged). */
  segmentRange(lsn: number): { firstLsn: number; lastLsn: number } {
    const i = this.findSegment(lsn);
    const next = this.segments[i + 1];
    return {
      firstLsn: this.segments[i]!.header.firstLsn,
      lastLsn: next ? next.header.firstLsn - 1 : this.durable,
    };
  }

  private findSegment(lsn: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.header.firstLsn <= lsn) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private readRecent(fromLsn: number, limits: ReadLimits): WalChunk | undefined {
    const i = this.recent.findIndex((r) => r.firstLsn <= fromLsn && fromLsn <= r.lastLsn);
    if (i < 0) return undefined;
    const parts: Buffer[] = [];
    const first = this.recent[i]!;
    let lsn = first.firstLsn;
    let p = 0;
    while (lsn < fromLsn) {
      p += 8 + first.buf.readUInt32LE(p + 4);
      lsn++;
    }
    const offset = first.offset + p;
    let bytes = 0;
    let count = 0;
    for (let j = i; j < this.recent.length; j++) {
      const r = this.recent[j]!;
      if (r.seg !== first.seg) break;
      let q = j === i ? p : 0;
      const startQ = q;
      while (q < r.buf.length && count < limits.recordsMax) {
        const len = 8 + r.buf.readUInt32LE(q + 4);
        if (count > 0 && bytes + len > limits.bytesMax) break;
        q += len;
        bytes += len;
        count++;
      }
      parts.push(r.buf.subarray(startQ, q));
      if (q < r.buf.length) break;
    }
    const frames = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    return this.chunk(first.seg, offset, fromLsn, fromLsn + count - 1, frames);
  }

  private async readFromSegment(seg: SegmentInfo, fromLsn: number, limits: ReadLimits): Promise<WalChunk> {
    let lsn = seg.header.firstLsn;
    let offset = segmentHeaderBytes;
    const index = seg.index!;
    for (let k = 0; k < index.length && index[k]! <= fromLsn; k += 2) {
      lsn = index[k]!;
      offset = index[k + 1]!;
    }
    // Its own descriptor, even of the active segment: a rotation during the read closes the
    // writer's (a read or close of a closed fd may hit another file that reused its number).
    const fd = await this.ops.open(seg.path, "r");
    try {
      let buf = Buffer.allocUnsafe(Math.max(limits.bytesMax, 1024 * 1024));
      let have = await this.readAt(fd, buf, offset, seg);
      // Skip from the index point to fromLsn by frame lengths (checked below, once found).
      while (lsn < fromLsn) {
        let p = 0;
        while (lsn < fromLsn && p + 8 <= have && p + 8 + buf.readUInt32LE(p + 4) <= have) {
          p += 8 + buf.readUInt32LE(p + 4);
          lsn++;
        }
        if (p === 0)
          throw new SegmentCorruptError(seg.file, offset, "frame length runs past the durable end");
        offset += p;
        have = await this.readAt(fd, buf, offset, seg);
      }
      let q = 0;
      let count = 0;
      while (count < limits.recordsMax && fromLsn + count <= seg.lastLsn!) {
        const f = checkFrame(buf.subarray(0, have), q);
        if (f.kind === "short") {
          if (count > 0) break;
          buf = Buffer.allocUnsafe(f.need); // one frame larger than the window
          have = await this.readAt(fd, buf, offset, seg);
          continue;
        }
        if (f.kind === "bad") throw new SegmentCorruptError(seg.file, offset + q, f.reason);
        if (f.lsn !== fromLsn + count) {
          throw new SegmentCorruptError(
            seg.file,
            offset + q,
            `LSN ${f.lsn} where ${fromLsn + count} was expected`,
          );
        }
        if (count > 0 && f.end > limits.bytesMax) break;
        q = f.end;
        count++;
      }
      return this.chunk(seg, offset, fromLsn, fromLsn + count - 1, Buffer.from(buf.subarray(0, q)));
    } finally {
      // A read-only descriptor: its close failing must not hide the read's own error.
      await this.ops.close(fd).catch(() => undefined);
    }
  }

  private async readAt(fd: number, buf: Buffer, position: number, seg: SegmentInfo): Promise<number> {
    const want = Math.min(buf.length, seg.bytes - position);
    let done = 0;
    while (done < want) {
      const n = await this.ops.read(fd, buf, done, want - done, position + done);
      if (n === 0)
        throw new SegmentCorruptError(seg.file, position + done, "file shorter than its durable size");
      done += n;
    }
    return done;
  }

  private chunk(
    seg: SegmentInfo,
    offset: number,
    firstLsn: number,
    lastLsn: number,
    frames: Buffer,
  ): WalChunk {
    return {
      origin: this.region,
      incarnation: seg.header.incarnation,
      firstLsn,
      lastLsn,
      frames,
      segment: seg.file,
      offset,
    };
  }

  /** Async iterator over durable chunks from `fromLsn`, waiting for new ones; ends when `signal` aborts. */
  async *tail(fromLsn: number, limits: ReadLimits, signal?: AbortSignal): AsyncGenerator<WalChunk> {
    let next = fromLsn;
    while (!signal?.aborted) {
      const c = await this.read(next, limits);
      if (c) {
        next = c.lastLsn + 1;
        yield c;
        continue;
      }
      try {
        await this.waitForDurable(next - 1, signal);
      } catch (err) {
        if (signal?.aborted) return;
        throw err;
      }
    }
  }

  // ---- retention and lifecycle -----------------------------------------------------------

  /**
   * Remove whole sealed segments that hold only LSNs below `lsn` (the lowest LSN any peer
   * still needs). The active segment is never removed. Returns the number removed.
   */
  async removeBelow(lsn: number): Promise<number> {
    let removed = 0;
    while (this.segments.length > 1) {
      const next = this.segments[1]!;
      if (next.header.firstLsn - 1 >= lsn) break;
      const seg = this.segments.shift()!;
      await this.ops.unlink(seg.path);
      removed++;
    }
    if (removed > 0) {
      const keep = this.segments[0]!;
      while (this.recent.length > 0 && this.recent[0]!.lastLsn < keep.header.firstLsn)
        this.recentBytes -= this.recent.shift()!.capacity;
      await fsyncDir(this.dir, this.ops);
    }
    return removed;
  }

  /**
   * The sealed segments, oldest first: every byte of them is synced and never changes again
   * (what an archive may copy). The active segment is not among them.
   */
  sealedSegments(): SealedSegment[] {
    return this.segments.slice(0, -1).map((s, i) => ({
      path: s.path,
      file: s.file,
      firstLsn: s.header.firstLsn,
      lastLsn: this.segments[i + 1]!.header.firstLsn - 1,
      createdAtMs: s.header.createdAtMs,
    }));
  }

  /**
   * The active segment's durable prefix: its first `bytes` bytes are synced and never change
   * (the segment is only appended to), and hold LSNs firstLsn..lastLsn.
   */
  activeDurable(): SealedSegment & { bytes: number } {
    const s = this.active;
    return {
      path: s.path,
      file: s.file,
      firstLsn: s.header.firstLsn,
      lastLsn: Math.max(s.header.firstLsn - 1, this.durable),
      createdAtMs: s.header.createdAtMs,
      bytes: s.bytes,
    };
  }

  stats(): WalStats {
    let bytes = 0;
    for (const s of this.segments) bytes += s.bytes;
    return {
      region: this.region,
      incarnation: this.incarnation,
      segments: this.segments.length,
      bytes,
      activeBytes: this.active.bytes,
      firstLsn: this.firstLsn,
      durableLsn: this.durable,
      fsyncs: this.fsyncCount,
      appends: this.appendCount,
    };
  }

  /** Stop accepting appends, let queued ones finish (or fail), close the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.writing) await new Promise((resolve) => this.events.once("idle", resolve));
    this.closeEmitted = true;
    this.events.emit("close");
    await this.ops.close(this.activeFd);
  }
}

/** A sealed segment, as `sealedSegments()` lists it. */
export interface SealedSegment {
  path: string;
  file: string;
  firstLsn: number;
  /** firstLsn - 1 when it holds no record. */
  lastLsn: number;
  createdAtMs: number;
}

/** Bytes of just-written groups kept in memory so a shipper tailing the WAL reads without syscalls. */
const recentBytesMax = 16 * 1024 * 1024;
