/**
 * Reads this region's own stream for a shipper: from the WAL while it holds the LSNs, and
 * from this region's store when it does not (retention removed them, or a sealed segment
 * fails its checksum). The store holds every record of its own streams, as winner or as
 * conflict loser, so a peer added late, re-added after retention, or behind a damaged
 * segment still gets every record. A range neither holds is a `StreamGapError`, never a
 * silent skip.
 */
import { SegmentCorruptError, WalLsnUnavailableError } from "../errors.js";
import { encodeFrames, type WalChunk, type WalRecord } from "../wal/index.js";

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

/** A chunk built from the store: frames re-encoded from the stored versions (same bytes a WAL frame would have, flags 0). */
export function chunkOf(origin: string, incarnation: string, records: readonly WalRecord[]): WalChunk {
  return {
    origin,
    incarnation,
    firstLsn: records[0]!.lsn,
    lastLsn: records[records.length - 1]!.lsn,
    frames: encodeFrames(records.map((r) => ({ ...r, flags: 0 }))),
    segment: "store",
    offset: 0,
  };
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
  let bytes = 0;
  for (const r of found) {
    if (r.lsn !== fromLsn + run.length) break;
    bytes += 64 + r.key.length + r.tenant.length + r.outcome.length + (r.bodyJson?.length ?? 0);
    if (run.length > 0 && bytes > limits.bytesMax) break;
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
