/**
 * Backfill: records a peer should hold below its watermark, sent from this region's store
 * as backfill batches (applied by the merge rule; the peer's watermark does not move):
 * - older incarnations of ours (the WAL is gone, a disk was lost): a new or re-added peer
 *   never got them;
 * - tenants a widened selective policy now sends to the peer: records below its watermark
 *   were filtered out when they were shipped.
 * LSNs the store does not hold are reported (they were lost with the disk that held them).
 */
import type { Logger } from "../log.js";
import type { WatermarksView } from "../link/index.js";
import { BATCH_FLAG_BACKFILL } from "../protocol/index.js";
import type { WalChunk, WalRecord } from "../wal/index.js";
import { chunkOf, type OwnRecords, type ReadLimits, type ShipperWal } from "./stream-reader.js";

export interface BackfillContext {
  region: string;
  wal: ShipperWal;
  own: OwnRecords;
  view: WatermarksView;
  batchBytesMax: number;
  batchRecordsMax: number;
  log: Logger;
  /** Send one batch and wait for the peer's answer. */
  send(chunk: WalChunk, flags: number): Promise<number>;
  aborted(): boolean;
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
 * Send the store's versions of `incarnation` in [fromLsn, toLsn] that `keep` accepts, as
 * backfill batches. Returns the LSN ranges the store lacks.
 */
export async function backfillRange(
  c: BackfillContext,
  incarnation: string,
  fromLsn: number,
  toLsn: number,
  keep: (r: WalRecord) => boolean = () => true,
): Promise<Array<[number, number]>> {
  const limits = { bytesMax: c.batchBytesMax, recordsMax: c.batchRecordsMax };
  const missing: Array<[number, number]> = [];
  let next = fromLsn;
  while (next <= toLsn && !c.aborted()) {
    const found = within(await c.own.range(incarnation, next, toLsn, limits.recordsMax), limits);
    if (found.length === 0) {
      missing.push([next, toLsn]);
      break;
    }
    for (const r of found) {
      if (r.lsn > next) missing.push([next, r.lsn - 1]);
      next = r.lsn + 1;
    }
    const kept = found.filter(keep);
    if (kept.length > 0) await c.send(chunkOf(c.region, incarnation, kept), BATCH_FLAG_BACKFILL);
  }
  return missing;
}

function reportMissing(c: BackfillContext, incarnation: string, missing: Array<[number, number]>): void {
  if (missing.length === 0) return;
  c.log.error(
    { incarnation, missing: missing.slice(0, 20), ranges: missing.length },
    "own records of an older incarnation are held by nobody here (lost with its disk); the peer cannot get them",
  );
}

/** Backfill older incarnations of ours past what was sent before (`older`); returns the new marks. */
export async function backfillOlderStreams(
  c: BackfillContext,
  older: Readonly<Record<string, number>>,
): Promise<Record<string, number>> {
  const marks = { ...older };
  for (const s of await c.own.streams()) {
    if (s.incarnation === c.wal.incarnation || c.aborted()) continue;
    const peerLsn =
      c.view.streams.find((w) => w.origin === c.region && w.incarnation === s.incarnation)?.lsn ?? 0;
    const from = Math.max(peerLsn, marks[s.incarnation] ?? 0) + 1;
    if (from > s.lsn) continue;
    reportMissing(c, s.incarnation, await backfillRange(c, s.incarnation, from, s.lsn));
    if (!c.aborted()) marks[s.incarnation] = s.lsn;
  }
  return marks;
}

/** Backfill records of `tenants` (every own stream, below what the peer already covers). */
export async function backfillTenants(c: BackfillContext, tenants: ReadonlySet<string>): Promise<void> {
  const keep = (r: WalRecord) => tenants.has(r.tenant);
  for (const s of await c.own.streams()) {
    const covered =
      s.incarnation === c.wal.incarnation
        ? (c.view.streams.find((w) => w.origin === c.region && w.incarnation === s.incarnation)?.lsn ?? 0)
        : s.lsn;
    if (covered > 0) await backfillRange(c, s.incarnation, 1, Math.min(covered, s.lsn), keep);
  }
}
