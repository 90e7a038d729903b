/**
 * Replication batch: what the shipper POSTs to a peer's /v1/replicate. A 128-byte header
 * (origin, incarnation, the LSN range it covers, record count) followed by record frames
 * exactly as they are in the origin's WAL. Pure: no I/O. Layout in docs/FORMAT.md ("Batch").
 *
 * The range [firstLsn, lastLsn] is what the peer's watermark advances over. Under a
 * selective policy the frames are the subset of that range the peer may receive, so the
 * frames' LSNs are strictly increasing inside the range but may skip.
 */
import { crc32 } from "node:zlib";
import { regionBytesMax } from "../limits.js";
import { checkFrame, decodeFrame, type WalRecord } from "../wal/pure.js";

export const batchMagic = "CRRB";
export const batchFormatVersion = 1;
/**
 * What peers compare on first contact, with the conflict rule: the batch, frame and
 * version-hash formats together. Peers that differ refuse to replicate (loudly).
 */
export const formatVersion = 1;
export const batchHeaderBytes = 128;

/**
 * The batch holds no records: its range is LSNs nobody holds, which the peer's watermark
 * moves past (an operator's `crr skip-gap`, or records lost with an older incarnation's
 * disk); audited on both sides.
 */
export const BATCH_FLAG_SKIP_GAP = 1;
/**
 * Records the peer should hold below its watermark (an older incarnation, a tenant a widened
 * policy now sends): applied by the merge rule; the watermark does not move.
 */
export const BATCH_FLAG_BACKFILL = 2;

const OFF_VERSION = 4;
const OFF_HEADER_BYTES = 6;
const OFF_FIRST_LSN = 8;
const OFF_LAST_LSN = 16;
const OFF_COUNT = 24;
const OFF_FLAGS = 28;
const OFF_INCARNATION = 32;
const OFF_ORIGIN_LEN = 48;
const OFF_ORIGIN = 49;
const OFF_HEADER_CRC = 124;
const u32Range = 4294967296;

export interface BatchHeader {
  origin: string;
  incarnation: string;
  firstLsn: number;
  lastLsn: number;
  recordCount: number;
  flags: number;
}

export interface DecodedBatch extends BatchHeader {
  records: WalRecord[];
}

/** Problems with a batch body: the reader answers 400 with this message and applies nothing. */
export class BatchInvalidError extends Error {
  readonly code = "batch_invalid";
}

function writeU64(buf: Buffer, v: number, off: number): void {
  buf.writeUInt32LE(v >>> 0, off);
  buf.writeUInt32LE(Math.floor(v / u32Range), off + 4);
}

function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * u32Range;
}

export function encodeBatch(h: BatchHeader, frames: Buffer | Buffer[]): Buffer {
  const header = Buffer.alloc(batchHeaderBytes);
  header.write(batchMagic, 0, "latin1");
  header.writeUInt16LE(batchFormatVersion, OFF_VERSION);
  header.writeUInt16LE(batchHeaderBytes, OFF_HEADER_BYTES);
  writeU64(header, h.firstLsn, OFF_FIRST_LSN);
  writeU64(header, h.lastLsn, OFF_LAST_LSN);
  header.writeUInt32LE(h.recordCount, OFF_COUNT);
  header.writeUInt32LE(h.flags, OFF_FLAGS);
  header.write(h.incarnation, OFF_INCARNATION, "hex");
  const originLen = header.write(h.origin, OFF_ORIGIN, regionBytesMax, "utf8");
  header.writeUInt8(originLen, OFF_ORIGIN_LEN);
  header.writeUInt32LE(crc32(header.subarray(0, OFF_HEADER_CRC)), OFF_HEADER_CRC);
  return Buffer.concat([header, ...(Array.isArray(frames) ? frames : [frames])]);
}

export function decodeBatchHeader(body: Buffer): BatchHeader {
  if (body.length < batchHeaderBytes)
    throw new BatchInvalidError(`batch of ${body.length} bytes is shorter than its header`);
  if (body.toString("latin1", 0, 4) !== batchMagic)
    throw new BatchInvalidError("not a crr batch (bad magic)");
  if (crc32(body.subarray(0, OFF_HEADER_CRC)) !== body.readUInt32LE(OFF_HEADER_CRC)) {
    throw new BatchInvalidError("batch header checksum mismatch");
  }
  const version = body.readUInt16LE(OFF_VERSION);
  if (version !== batchFormatVersion)
    throw new BatchInvalidError(`batch format version ${version}, expected ${batchFormatVersion}`);
  const originLen = body.readUInt8(OFF_ORIGIN_LEN);
  const h: BatchHeader = {
    firstLsn: readU64(body, OFF_FIRST_LSN),
    lastLsn: readU64(body, OFF_LAST_LSN),
    recordCount: body.readUInt32LE(OFF_COUNT),
    flags: body.readUInt32LE(OFF_FLAGS),
    incarnation: body.toString("hex", OFF_INCARNATION, OFF_INCARNATION + 16),
    origin: body.toString("utf8", OFF_ORIGIN, OFF_ORIGIN + originLen),
  };
  if (originLen === 0 || originLen > regionBytesMax)
    throw new BatchInvalidError(`origin length ${originLen} out of range`);
  if (h.firstLsn < 1 || h.lastLsn < h.firstLsn)
    throw new BatchInvalidError(`LSN range ${h.firstLsn}..${h.lastLsn} is empty or invalid`);
  if ((h.flags & ~(BATCH_FLAG_SKIP_GAP | BATCH_FLAG_BACKFILL)) !== 0)
    throw new BatchInvalidError(`unknown batch flags 0x${h.flags.toString(16)}`);
  if ((h.flags & BATCH_FLAG_SKIP_GAP) !== 0 && (h.flags & BATCH_FLAG_BACKFILL) !== 0)
    throw new BatchInvalidError("a backfill batch cannot skip a gap");
  if ((h.flags & BATCH_FLAG_SKIP_GAP) !== 0 && h.recordCount !== 0)
    throw new BatchInvalidError(`a skip batch holds no records (it announces ${h.recordCount})`);
  if (h.recordCount > h.lastLsn - h.firstLsn + 1) {
    throw new BatchInvalidError(`${h.recordCount} records cannot fit LSN range ${h.firstLsn}..${h.lastLsn}`);
  }
  return h;
}

/**
 * Decode and verify a whole batch: header, every frame's CRC, LSNs strictly increasing inside
 * the range, the announced count. Throws BatchInvalidError naming the offset of the first problem.
 */
export function decodeBatch(body: Buffer): DecodedBatch {
  const h = decodeBatchHeader(body);
  const records: WalRecord[] = [];
  let p = batchHeaderBytes;
  let prev = h.firstLsn - 1;
  while (p < body.length) {
    const f = checkFrame(body, p);
    if (f.kind !== "ok") {
      const reason = f.kind === "bad" ? f.reason : "incomplete frame";
      throw new BatchInvalidError(`record at batch offset ${p}: ${reason}`);
    }
    if (f.lsn <= prev || f.lsn > h.lastLsn) {
      throw new BatchInvalidError(
        `record at batch offset ${p}: LSN ${f.lsn} outside ${prev + 1}..${h.lastLsn}`,
      );
    }
    records.push(decodeFrame(body, p));
    prev = f.lsn;
    p = f.end;
  }
  if (records.length !== h.recordCount) {
    throw new BatchInvalidError(`batch announces ${h.recordCount} records but holds ${records.length}`);
  }
  return { ...h, records };
}
