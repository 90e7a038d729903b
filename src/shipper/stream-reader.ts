/**
 * Reads this region's own stream for a shipper: from the WAL while it holds the LSNs, and
 * from this region's store when it does not (retention removed them, or a sealed segment
 * fails its checksum). The store holds every record of its own streams, as winner or as
 * conflict loser, so a peer added late, re-added after retention, or behind a damaged
 * segment still gets every record. A range neither holds is a `StreamGapError`, never a
 * silent skip.
 */
import { SegmentCorruptError, WalLsnUnavailableError } from "../errors.js";
import { checkFrame, encodeFrames, readTenant, type WalChunk, type WalRecord } from "../wal/index.js";

/** The WAL as a shipper sees it. */
export interface ShipperWal {
  readonly incarnation: string;
  readonly firstLsn: number;
  readonly durableLsn: number;
  read(fromLsn: number, limits: { bytesMax: number; recordsMax: number }): Promise<WalChunk | undefined>;
  waitForDurable(afterLsn: number, signal?: AbortSignal): Promise<number>;
  /** The LSNs of the segment holding `lsn` (to step over a damaged one). */
  segmentRange(lsn: number): { firstLsn: number; lastLsn: number };
}

/** This region's own records as its store holds them. */
export interface OwnRecords {
  /** Intact versions of own stream `incarnation` with LSNs in [fromLsn, toLsn], LSN order, at most `limit`. */
  range(incarnation: string, fromLsn: number, toLsn: number, limit: number): Promise<WalRecord[]>;
  /** Every own stream (incarnation) the store holds and how far it reaches. */
  streams(): Promise<Array<{ incarnation: string; lsn: number }>>;
}

/** LSNs of an own stream that neither the WAL nor the store holds: only an operator may skip them. */
export class StreamGapError extends Error {
  constructor(
    readonly incarnation: string,
    readonly fromLsn: number,
    readonly toLsn: number,
  ) {
    super(
      `LSNs ${fromLsn}..${toLsn} of incarnation ${incarnation} are neither in the WAL nor in this region's store`,
    );
    this.name = "StreamGapError";
  }
}

export interface ReadLimits {
  bytesMax: number;
  recordsMax: number;
}

/** The longest prefix of `records` within the limits (at least one record). */
export function within(records: readonly WalRecord[], limits: ReadLimits): WalRecord[] {
  const out: WalRecord[] = [];
  let bytes = 0;
  for (const r of records) {
    bytes += 64 + r.key.length + r.tenant.length + r.outcome.length + (r.bodyJson?.length ?? 0);
    if (out.length >= limits.recordsMax || (out.length > 0 && bytes > limits.bytesMax)) break;
    out.push(r);
  }
  return out;
}

/**
 * A chunk built from the store: frames re-encoded from the stored versions (the bytes a WAL
 * frame had, flags 0) covering [firstLsn, lastLsn]; the records may skip LSNs.
 */
export function chunkOf(
  origin: string,
  incarnation: string,
  records: readonly WalRecord[],
  firstLsn = records[0]!.lsn,
  lastLsn = records[records.length - 1]!.lsn,
): WalChunk {
  return {
    origin,
    incarnation,
    firstLsn,
    lastLsn,
    frames: encodeFrames(records.map((r) => ({ ...r, flags: 0 }))),
    segment: "store",
    offset: 0,
    count: records.length,
  };
}

/** A skip batch's chunk: no records, exactly the LSNs nobody holds. */
export function skipChunk(origin: string, incarnation: string, fromLsn: number, toLsn: number): WalChunk {
  return { ...chunkOf(origin, incarnation, [], fromLsn, toLsn), segment: "skip" };
}

/** The frames of `chunk` whose tenant `keep` accepts, as a chunk over the same range. */
export function filterChunk(chunk: WalChunk, keep: (tenant: string) => boolean): WalChunk {
  const parts: Buffer[] = [];
  let p = 0;
  while (p < chunk.frames.length) {
    const f = checkFrame(chunk.frames, p);
    if (f.kind !== "ok")
      throw new Error(`chunk from ${chunk.segment} failed its own check at ${chunk.offset + p}`);
    if (keep(readTenant(chunk.frames, p))) parts.push(chunk.frames.subarray(p, f.end));
    p = f.end;
  }
  return { ...chunk, frames: Buffer.concat(parts), count: parts.length };
}

/**
 * Up to `limits` of the store's versions of `incarnation` from `fromLsn` to `toLsn`, stopping
 * at the first LSN it lacks. Throws StreamGapError when `fromLsn` itself is missing (with the
 * extent of the hole, up to the next LSN the store holds or `toLsn`).
 */
export async function readFromStore(
  own: OwnRecords,
  origin: string,
  incarnation: string,
  fromLsn: number,
  toLsn: number,
  limits: ReadLimits,
): Promise<WalChunk> {
  const found = await own.range(incarnation, fromLsn, toLsn, limits.recordsMax);
  const run: WalRecord[] = [];
  for (const r of within(found, limits)) {
    if (r.lsn !== fromLsn + run.length) break;
    run.push(r);
  }
  if (run.length === 0) {
    const next = found[0]?.lsn;
    throw new StreamGapError(incarnation, fromLsn, next !== undefined ? next - 1 : toLsn);
  }
  return chunkOf(origin, incarnation, run);
}

/**
 * The next chunk of the current incarnation from `fromLsn`: the WAL, or the store where the
 * WAL cannot serve it. `onFallback` is told why (once per chunk) so the region can report a
 * damaged segment.
 */
export async function readOwnStream(
  wal: ShipperWal,
  own: OwnRecords,
  origin: string,
  fromLsn: number,
  limits: ReadLimits,
  onFallback: (err: Error) => void,
): Promise<WalChunk | undefined> {
  try {
    return await wal.read(fromLsn, limits);
  } catch (err) {
    let toLsn: number;
    if (err instanceof WalLsnUnavailableError) toLsn = Math.min(err.firstAvailableLsn - 1, wal.durableLsn);
    else if (err instanceof SegmentCorruptError)
      toLsn = Math.min(wal.segmentRange(fromLsn).lastLsn, wal.durableLsn);
    else throw err;
    onFallback(err);
    return readFromStore(own, origin, wal.incarnation, fromLsn, toLsn, limits);
  }
}
