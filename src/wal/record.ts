/**
 * Record frames: the unit of the WAL, of a replication batch and of a rebuild.
 * Pure: no file or socket access. Byte layout in docs/FORMAT.md ("Record frame"); the
 * golden test in record.test.ts pins it.
 *
 *   frame   = crc32 u32 | payloadBytes u32 | payload
 *   payload = lsn u64 | hlcWallMs u48 | hlcLogical u16 | flags u16 | keyBytes u16 |
 *             tenantBytes u16 | outcomeBytes u16 | bodyBytes u32 | key | tenant | outcome | body
 *
 * The CRC covers the length field and the payload, so a flipped length bit is caught too.
 */
import type { Hlc } from "../clock/index.js";
import { crc32Range } from "./crc32.js";
import { RecordInvalidError, SegmentCorruptError } from "../errors.js";
import {
  bodyBytesMax,
  frameHeaderBytes,
  keyBytesMax,
  outcomeBytesMax,
  recordFixedBytes,
  recordPayloadBytesMax,
  tenantBytesMax,
} from "../limits.js";

/** What a service hands to append(). */
export interface RecordInput {
  key: string;
  tenant: string;
  outcome: string;
  body?: unknown;
}

/** A record as stored: the input plus what the origin assigned. `origin` comes from the segment or batch. */
export interface WalRecord {
  key: string;
  tenant: string;
  outcome: string;
  /** The body as JSON text, exactly as appended; undefined when the record has none. */
  bodyJson: string | undefined;
  lsn: number;
  hlc: Hlc;
  /** FLAG_BATCH_CONTINUES when the next frame belongs to the same appendBatch. */
  flags: number;
}

/** Set on every frame of an appendBatch but its last: recovery drops a batch whose last frame is missing. */
export const FLAG_BATCH_CONTINUES = 1;

const u32Range = 4294967296;

// Offsets inside the frame (from the frame start).
const OFF_CRC = 0;
const OFF_LEN = 4;
const OFF_LSN = 8;
const OFF_HLC_WALL = 16;
const OFF_HLC_LOGICAL = 22;
const OFF_FLAGS = 24;
const OFF_KEY_LEN = 26;
const OFF_TENANT_LEN = 28;
const OFF_OUTCOME_LEN = 30;
const OFF_BODY_LEN = 32;
const OFF_VAR = frameHeaderBytes + recordFixedBytes;

/** A validated record ready to encode. */
export interface PreparedRecord {
  key: string;
  tenant: string;
  outcome: string;
  bodyJson: string | undefined;
}

/** In a `u` regex a surrogate pair is one code point, so this matches only a lone surrogate. */
const loneSurrogate = /\p{Cs}/u;

function checkText(field: string, value: unknown, bytesMax: number, allowEmpty: boolean): string {
  if (typeof value !== "string")
    throw new RecordInvalidError(field, `expected a string, got ${typeof value}`);
  if (!allowEmpty && value.length === 0) throw new RecordInvalidError(field, "must not be empty");
  // A lone surrogate has no UTF-8 form: encoding would replace it, and two different keys
  // would become one in one region and stay two in another.
  if (loneSurrogate.test(value))
    throw new RecordInvalidError(field, "is not well-formed Unicode (it holds a lone UTF-16 surrogate)");
  // A run of NULs is how recovery tells sectors never written from written ones (a tear
  // from a bit flip in synced data): no frame may hold one.
  if (value.includes("\u0000")) throw new RecordInvalidError(field, "holds a NUL character (U+0000)");
  // Cheap bound first: a UTF-16 unit is at most 3 UTF-8 bytes.
  if (value.length * 3 > bytesMax) {
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > bytesMax)
      throw new RecordInvalidError(field, `${bytes} bytes exceeds the limit of ${bytesMax}`);
  }
  return value;
}

/** Check a record from a caller and serialise its body once. Throws RecordInvalidError naming the field. */
export function prepareRecord(input: RecordInput): PreparedRecord {
  if (input === null || typeof input !== "object")
    throw new RecordInvalidError("record", "expected an object");
  const key = checkText("key", input.key, keyBytesMax, false);
  const tenant = checkText("tenant", input.tenant, tenantBytesMax, false);
  const outcome = checkText("outcome", input.outcome, outcomeBytesMax, false);
  let bodyJson: string | undefined;
  if (input.body !== undefined) {
    try {
      bodyJson = JSON.stringify(input.body);
    } catch (err) {
      throw new RecordInvalidError("body", `not serialisable as JSON: ${(err as Error).message}`);
    }
    if (bodyJson === undefined) throw new RecordInvalidError("body", "not serialisable as JSON");
    checkText("body", bodyJson, bodyBytesMax, false);
  }
  return { key, tenant, outcome, bodyJson };
}

/** Worst-case encoded size, for reserving buffer space before encoding. */
export function frameBytesUpperBound(r: PreparedRecord): number {
  return (
    OFF_VAR + 3 * (r.key.length + r.tenant.length + r.outcome.length + (r.bodyJson ? r.bodyJson.length : 0))
  );
}

/**
 * Encode one frame at `offset`; the caller guarantees frameBytesUpperBound(r) bytes of room.
 * Returns the offset just past the frame.
 */
export function encodeFrame(
  buf: Buffer,
  offset: number,
  r: PreparedRecord,
  lsn: number,
  hlc: Hlc,
  flags: number,
  dv?: DataView,
): number {
  const start = offset + OFF_VAR;
  const body = r.bodyJson ?? "";
  // One native write for all four strings: when every byte is ASCII (the common case) the
  // field byte lengths are the string lengths; otherwise write them one by one.
  const total = r.key.length + r.tenant.length + r.outcome.length + body.length;
  let p = start + buf.write(r.key + r.tenant + r.outcome + body, start, "utf8");
  let keyBytes = r.key.length;
  let tenantBytes = r.tenant.length;
  let outcomeBytes = r.outcome.length;
  let bodyBytes = body.length;
  if (p - start !== total) {
    p = start;
    p += keyBytes = buf.write(r.key, p, "utf8");
    p += tenantBytes = buf.write(r.tenant, p, "utf8");
    p += outcomeBytes = buf.write(r.outcome, p, "utf8");
    p += bodyBytes = buf.write(body, p, "utf8");
  }
  // DataView stores are an order of magnitude cheaper than Buffer#writeUInt*LE on this path.
  const v = dv ?? viewOf(buf);
  v.setUint32(offset + OFF_LEN, p - offset - frameHeaderBytes, true);
  v.setUint32(offset + OFF_LSN, lsn >>> 0, true);
  v.setUint32(offset + OFF_LSN + 4, Math.floor(lsn / u32Range), true);
  v.setUint32(offset + OFF_HLC_WALL, hlc.wallMs >>> 0, true);
  v.setUint16(offset + OFF_HLC_WALL + 4, Math.floor(hlc.wallMs / u32Range), true);
  v.setUint16(offset + OFF_HLC_LOGICAL, hlc.logical, true);
  v.setUint16(offset + OFF_FLAGS, flags, true);
  v.setUint16(offset + OFF_KEY_LEN, keyBytes, true);
  v.setUint16(offset + OFF_TENANT_LEN, tenantBytes, true);
  v.setUint16(offset + OFF_OUTCOME_LEN, outcomeBytes, true);
  v.setUint32(offset + OFF_BODY_LEN, bodyBytes, true);
  v.setUint32(offset + OFF_CRC, crc32Range(buf, offset + OFF_LEN, p), true);
  return p;
}

/** A DataView over exactly `buf` (pass it to encodeFrame when encoding many frames into one buffer). */
export function viewOf(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Encode records into a fresh buffer holding exactly their frames (tests, tools, rebuilds). */
export function encodeFrames(records: readonly WalRecord[]): Buffer {
  let cap = 0;
  for (const r of records) cap += frameBytesUpperBound(r);
  const buf = Buffer.allocUnsafe(cap);
  const dv = viewOf(buf);
  let p = 0;
  for (const r of records) p = encodeFrame(buf, p, r, r.lsn, r.hlc, r.flags, dv);
  return buf.subarray(0, p);
}

export type FrameRead =
  | { kind: "ok"; end: number; lsn: number }
  /** Not enough bytes for the frame the header announces: a torn tail, or the end of a range. */
  | { kind: "short"; need: number }
  | { kind: "bad"; reason: string };

/**
 * Check the frame at `offset` without decoding its strings: bounds, length, checksum and
 * field lengths. Fast enough to run on every frame of a batch or a recovery scan.
 */
export function checkFrame(buf: Buffer, offset: number): FrameRead {
  const avail = buf.length - offset;
  if (avail < frameHeaderBytes) return { kind: "short", need: frameHeaderBytes };
  const payloadBytes = buf.readUInt32LE(offset + OFF_LEN);
  if (payloadBytes < recordFixedBytes || payloadBytes > recordPayloadBytesMax) {
    return {
      kind: "bad",
      reason: `frame length ${payloadBytes} outside [${recordFixedBytes}, ${recordPayloadBytesMax}]`,
    };
  }
  const end = offset + frameHeaderBytes + payloadBytes;
  if (end > buf.length) return { kind: "short", need: frameHeaderBytes + payloadBytes };
  const stored = buf.readUInt32LE(offset + OFF_CRC);
  if (crc32Range(buf, offset + OFF_LEN, end) !== stored) return { kind: "bad", reason: "checksum mismatch" };
  const varBytes =
    buf.readUInt16LE(offset + OFF_KEY_LEN) +
    buf.readUInt16LE(offset + OFF_TENANT_LEN) +
    buf.readUInt16LE(offset + OFF_OUTCOME_LEN) +
    buf.readUInt32LE(offset + OFF_BODY_LEN);
  if (recordFixedBytes + varBytes !== payloadBytes) {
    return { kind: "bad", reason: `field lengths (${varBytes}) disagree with frame length ${payloadBytes}` };
  }
  return { kind: "ok", end, lsn: readLsn(buf, offset) };
}

/** The LSN of the frame at `offset` (no checks). */
export function readLsn(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset + OFF_LSN) + buf.readUInt32LE(offset + OFF_LSN + 4) * u32Range;
}

/** The flags of the frame at `offset` (no checks). */
export function readFlags(buf: Buffer, offset: number): number {
  return buf.readUInt16LE(offset + OFF_FLAGS);
}

/** The HLC of the frame at `offset` (no checks). */
export function readHlc(buf: Buffer, offset: number): Hlc {
  return {
    wallMs: buf.readUIntLE(offset + OFF_HLC_WALL, 6),
    logical: buf.readUInt16LE(offset + OFF_HLC_LOGICAL),
  };
}

/** Decode a frame already accepted by checkFrame. */
export function decodeFrame(buf: Buffer, offset: number): WalRecord {
  const keyBytes = buf.readUInt16LE(offset + OFF_KEY_LEN);
  const tenantBytes = buf.readUInt16LE(offset + OFF_TENANT_LEN);
  const outcomeBytes = buf.readUInt16LE(offset + OFF_OUTCOME_LEN);
  const bodyBytes = buf.readUInt32LE(offset + OFF_BODY_LEN);
  let p = offset + OFF_VAR;
  const key = buf.toString("utf8", p, (p += keyBytes));
  const tenant = buf.toString("utf8", p, (p += tenantBytes));
  const outcome = buf.toString("utf8", p, (p += outcomeBytes));
  const bodyJson = bodyBytes === 0 ? undefined : buf.toString("utf8", p, p + bodyBytes);
  return {
    key,
    tenant,
    outcome,
    bodyJson,
    lsn: readLsn(buf, offset),
    hlc: readHlc(buf, offset),
    flags: readFlags(buf, offset),
  };
}

/** The tenant of the frame at `offset`, without decoding the rest (selective shipping filters on it). */
export function readTenant(buf: Buffer, offset: number): string {
  const keyBytes = buf.readUInt16LE(offset + OFF_KEY_LEN);
  const tenantBytes = buf.readUInt16LE(offset + OFF_TENANT_LEN);
  const start = offset + OFF_VAR + keyBytes;
  return buf.toString("utf8", start, start + tenantBytes);
}

export interface FramesDecodeOptions {
  /** Where the bytes came from, for error messages (file name or "batch from us-east-1"). */
  source: string;
  /** Offset of buf[0] in the source, so errors name the true position. */
  baseOffset?: number;
  /** Every frame must carry exactly this LSN, the next one the previous + 1 (undefined: the first sets it). */
  firstLsn?: number;
}

/**
 * Decode a byte range that must hold only whole, valid, consecutive frames (a batch or a
 * sealed range of a segment). Any problem is a SegmentCorruptError naming source and offset.
 */
export function decodeFrames(buf: Buffer, options: FramesDecodeOptions): WalRecord[] {
  const out: WalRecord[] = [];
  const base = options.baseOffset ?? 0;
  let expected = options.firstLsn;
  let p = 0;
  while (p < buf.length) {
    const f = checkFrame(buf, p);
    if (f.kind !== "ok") {
      const reason = f.kind === "bad" ? f.reason : `incomplete frame (${buf.length - p} of ${f.need} bytes)`;
      throw new SegmentCorruptError(options.source, base + p, reason);
    }
    if (expected !== undefined && f.lsn !== expected) {
      throw new SegmentCorruptError(options.source, base + p, `LSN ${f.lsn} where ${expected} was expected`);
    }
    out.push(decodeFrame(buf, p));
    expected = f.lsn + 1;
    p = f.end;
  }
  return out;
}
