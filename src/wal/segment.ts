/**
 * Segment files: a fixed header followed by record frames. Pure: works on bytes handed in,
 * so recovery, `crr wal inspect` and the property tests share one scanner.
 * Byte layout in docs/FORMAT.md ("Segment header"); pinned by the golden test.
 */
import { crc32 } from "node:zlib";
import type { Hlc } from "../clock/index.js";
import { SegmentCorruptError } from "../errors.js";
import { regionBytesMax, walUnsyncedBytesMax } from "../limits.js";
import { FLAG_BATCH_CONTINUES, checkFrame, readFlags, readHlc } from "./record.js";

export const segmentMagic = "CRRW";
export const segmentFormatVersion = 1;
export const segmentHeaderBytes = 128;
export const incarnationBytes = 16;

const OFF_MAGIC = 0;
const OFF_VERSION = 4;
const OFF_HEADER_BYTES = 6;
const OFF_FIRST_LSN = 8;
const OFF_CREATED_MS = 16;
const OFF_INCARNATION = 24;
const OFF_REGION_LEN = 40;
const OFF_REGION = 41;
const OFF_HEADER_CRC = 124;
const u32Range = 4294967296;

export interface SegmentHeader {
  region: string;
  /** LSN of the first frame in this segment (the next LSN when it was created). */
  firstLsn: number;
  createdAtMs: number;
  /** 32 hex chars, random per WAL lifetime: a region that lost its disk gets a new one. */
  incarnation: string;
}

export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const buf = Buffer.alloc(segmentHeaderBytes);
  buf.write(segmentMagic, OFF_MAGIC, "latin1");
  buf.writeUInt16LE(segmentFormatVersion, OFF_VERSION);
  buf.writeUInt16LE(segmentHeaderBytes, OFF_HEADER_BYTES);
  buf.writeUInt32LE(h.firstLsn >>> 0, OFF_FIRST_LSN);
  buf.writeUInt32LE(Math.floor(h.firstLsn / u32Range), OFF_FIRST_LSN + 4);
  buf.writeUInt32LE(h.createdAtMs >>> 0, OFF_CREATED_MS);
  buf.writeUInt32LE(Math.floor(h.createdAtMs / u32Range), OFF_CREATED_MS + 4);
  if (!/^[0-9a-f]{32}$/.test(h.incarnation))
    throw new Error(`incarnation must be 32 hex chars: ${h.incarnation}`);
  buf.write(h.incarnation, OFF_INCARNATION, "hex");
  const regionLen = Buffer.byteLength(h.region, "utf8");
  if (regionLen === 0 || regionLen > regionBytesMax) {
    throw new Error(`region name must be 1..${regionBytesMax} bytes: ${JSON.stringify(h.region)}`);
  }
  buf.writeUInt8(regionLen, OFF_REGION_LEN);
  buf.write(h.region, OFF_REGION, "utf8");
  buf.writeUInt32LE(crc32(buf.subarray(0, OFF_HEADER_CRC)), OFF_HEADER_CRC);
  return buf;
}

export function decodeSegmentHeader(buf: Buffer, file: string): SegmentHeader {
  if (buf.length < segmentHeaderBytes) {
    throw new SegmentCorruptError(file, 0, `header is ${buf.length} bytes, expected ${segmentHeaderBytes}`);
  }
  if (buf.toString("latin1", OFF_MAGIC, OFF_MAGIC + 4) !== segmentMagic) {
    throw new SegmentCorruptError(file, OFF_MAGIC, "bad magic (not a crr WAL segment)");
  }
  if (crc32(buf.subarray(0, OFF_HEADER_CRC)) !== buf.readUInt32LE(OFF_HEADER_CRC)) {
    throw new SegmentCorruptError(file, OFF_HEADER_CRC, "header checksum mismatch");
  }
  const version = buf.readUInt16LE(OFF_VERSION);
  if (version !== segmentFormatVersion) {
    throw new SegmentCorruptError(
      file,
      OFF_VERSION,
      `format version ${version}, this build reads ${segmentFormatVersion}`,
    );
  }
  const headerBytes = buf.readUInt16LE(OFF_HEADER_BYTES);
  if (headerBytes !== segmentHeaderBytes) {
    throw new SegmentCorruptError(
      file,
      OFF_HEADER_BYTES,
      `header length ${headerBytes}, expected ${segmentHeaderBytes}`,
    );
  }
  const regionLen = buf.readUInt8(OFF_REGION_LEN);
  if (regionLen === 0 || regionLen > regionBytesMax) {
    throw new SegmentCorruptError(file, OFF_REGION_LEN, `region length ${regionLen} out of range`);
  }
  return {
    firstLsn: buf.readUInt32LE(OFF_FIRST_LSN) + buf.readUInt32LE(OFF_FIRST_LSN + 4) * u32Range,
    createdAtMs: buf.readUInt32LE(OFF_CREATED_MS) + buf.readUInt32LE(OFF_CREATED_MS + 4) * u32Range,
    incarnation: buf.toString("hex", OFF_INCARNATION, OFF_INCARNATION + incarnationBytes),
    region: buf.toString("utf8", OFF_REGION, OFF_REGION + regionLen),
  };
}

/** Segment file name: the first LSN, zero-padded so names sort like LSNs. */
export function segmentFileName(firstLsn: number): string {
  return `${String(firstLsn).padStart(20, "0")}.wal`;
}

export function parseSegmentFileName(name: string): number | undefined {
  const m = /^(\d{20})\.wal$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export interface SegmentScan {
  header: SegmentHeader;
  recordCount: number;
  /** firstLsn - 1 when the segment holds no record. */
  lastLsn: number;
  lastHlc: Hlc | undefined;
  /** Bytes from the start of the file up to the end of the last valid, complete frame. */
  validBytes: number;
  /** Why bytes after validBytes were not accepted (only ever set for the last segment). */
  tornReason: string | undefined;
  /** Offsets of every `indexEvery`-th frame, for seeking by LSN: [lsn, offset] pairs. */
  index: number[];
  /** Where the valid frames stopped, the LSN expected there, and why (set whenever bytes follow validBytes). */
  problem: { offset: number; lsn: number; reason: string } | undefined;
}

export interface ScanOptions {
  file: string;
  /**
   * Whether this is the newest segment. Only its tail can be torn by a crash; in any other
   * segment every byte was synced before the next segment was created.
   */
  last: boolean;
  /** The torn-tail window (see limits.walUnsyncedBytesMax). */
  unsyncedBytesMax?: number;
  indexEvery?: number;
  /**
   * Report a frame problem anywhere instead of throwing (recovery weighs it against the
   * evidence of what was acknowledged). The header must still be valid.
   */
  lenient?: boolean;
}

/**
 * Validate a whole segment image. A problem in the last `unsyncedBytesMax` bytes of the last
 * segment is a torn tail: the scan stops there and reports it. Anywhere else it is
 * corruption of acknowledged data: SegmentCorruptError with file and offset.
 * An appendBatch whose last frame is missing is dropped whole (it was never acknowledged).
 */
export function scanSegment(buf: Buffer, options: ScanOptions): SegmentScan {
  const { file, last } = options;
  const window = options.unsyncedBytesMax ?? walUnsyncedBytesMax;
  const indexEvery = options.indexEvery ?? 1024;
  const header = decodeSegmentHeader(buf, file);
  let p = segmentHeaderBytes;
  let expected = header.firstLsn;
  let count = 0;
  let lastHlc: Hlc | undefined;
  let batchStart: { offset: number; count: number; hlc: Hlc | undefined } | undefined;
  let tornReason: string | undefined;
  const index: number[] = [];
  const lenient = options.lenient ?? false;
  let problemAt: { offset: number; lsn: number; reason: string } | undefined;
  const fail = (offset: number, reason: string): void => {
    if (!lenient) throw new SegmentCorruptError(file, offset, reason);
  };
  while (p < buf.length) {
    const f = checkFrame(buf, p);
    let problem: string | undefined;
    if (f.kind === "bad") problem = f.reason;
    else if (f.kind === "short") problem = `incomplete frame (${buf.length - p} of ${f.need} bytes)`;
    else if (f.lsn !== expected) problem = `LSN ${f.lsn} where ${expected} was expected`;
    if (problem !== undefined || f.kind !== "ok") {
      if (!last || p < buf.length - window) fail(p, problem ?? "unreadable frame");
      problemAt = { offset: p, lsn: expected, reason: problem ?? "unreadable frame" };
      tornReason = `${problem} at offset ${p}`;
      break;
    }
    const flags = readFlags(buf, p);
    if (flags & FLAG_BATCH_CONTINUES) {
      if (batchStart === undefined) batchStart = { offset: p, count, hlc: lastHlc };
    } else {
      batchStart = undefined;
    }
    if (count % indexEvery === 0) index.push(f.lsn, p);
    lastHlc = readHlc(buf, p);
    count++;
    expected++;
    p = f.end;
  }
  if (batchStart !== undefined) {
    if (!last || batchStart.offset < buf.length - window) {
      fail(batchStart.offset, "appendBatch without its final frame");
    }
    problemAt ??= { offset: p, lsn: expected, reason: "appendBatch without its final frame" };
    tornReason ??= `incomplete appendBatch at offset ${batchStart.offset}`;
    p = batchStart.offset;
    count = batchStart.count;
    lastHlc = batchStart.hlc;
    while (index.length > 0 && (index[index.length - 1] ?? 0) >= p) index.length -= 2;
  }
  return {
    header,
    recordCount: count,
    lastLsn: header.firstLsn + count - 1,
    lastHlc,
    validBytes: p,
    tornReason,
    index,
    problem: problemAt,
  };
}

/** Valid, consecutive frames found after a damaged stretch: where they start and end. */
export interface Resync {
  offset: number;
  firstLsn: number;
  lastLsn: number;
  /** Just past the last frame of the run. */
  end: number;
}

/**
 * After a problem at `from`, look for the next run of valid frames that continues the log
 * (an LSN at or after `expectedLsn`, each next frame one LSN more). Byte by byte: a frame
 * only counts when its length, checksum and field lengths all hold. Undefined when the rest
 * of the segment holds no such frame (a torn tail, not damage inside written data).
 */
export function findResync(buf: Buffer, from: number, expectedLsn: number): Resync | undefined {
  for (let q = from + 1; q + 36 <= buf.length; q++) {
    const len = buf.readUInt32LE(q + 4);
    if (len < 28 || len > buf.length - q - 8) continue; // cheap rejection before any checksum
    const f = checkFrame(buf, q);
    // The damaged bytes cannot have held more frames than fit in them (a frame is at least 36 bytes).
    if (f.kind !== "ok" || f.lsn < expectedLsn || f.lsn > expectedLsn + Math.ceil((q - from) / 36)) continue;
    let end = f.end;
    let lastLsn = f.lsn;
    for (;;) {
      const g = end < buf.length ? checkFrame(buf, end) : undefined;
      if (!g || g.kind !== "ok" || g.lsn !== lastLsn + 1) break;
      lastLsn = g.lsn;
      end = g.end;
    }
    return { offset: q, firstLsn: f.lsn, lastLsn, end };
  }
  return undefined;
}
