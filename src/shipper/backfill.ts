/**
 * What a peer should hold of our streams that plain shipping of the current incarnation does
 * not bring it:
 * - older incarnations of ours (a disk was lost; the WAL holding them is gone): shipped from
 *   this region's store as ordinary batches over [the peer's watermark + 1, our watermark],
 *   so the peer's watermark records the progress. LSNs the store lacks were lost with that
 *   disk: the batch marks them skipped (the peer audits it) and this region audits them as lost.
 * - tenants a widened policy now sends the peer: records below its watermark were filtered
 *   out when they were shipped. Sent as backfill batches (merged, the watermark unmoved),
 *   from the WAL where it holds them, else the store; a record neither holds stops the
 *   backfill (StreamGapError) unless an operator allowed skipping it.
 */
import type { Logger } from "../log.js";
import type { WatermarksView } from "../link/index.js";
import { BATCH_FLAG_BACKFILL, BATCH_FLAG_SKIP_GAP } from "../protocol/index.js";
import type { WalChunk, WalRecord } from "../wal/index.js";
import {
  StreamGapError,
  chunkOf,
  filterChunk,
  readOwnStream,
  skipChunk,
  within,
  type OwnRecords,
  type ShipperWal,
} from "./stream-reader.js";

export interface BackfillContext {
  region: string;
  wal: ShipperWal;
  own: OwnRecords;
  /** What the peer held when this session started. */
  view: WatermarksView;
  batchBytesMax: number;
  batchRecordsMax: number;
  log: Logger;
  /** Send one batch and wait for the peer's answer. */
  send(chunk: WalChunk, flags: number): Promise<void>;
  aborted(): boolean;
  /** The operator allowed skipping LSNs of the current incarnation up to this one (0: none). */
  skipThrough: number;
  /** Audit, durably, that own records of an older incarnation are held by nobody here. */
  reportLost(incarnation: string, ranges: Array<[number, number]>): Promise<void>;
}

/** The peer's watermark for one of our streams when the session started. */
export function peerLsn(c: Pick<BackfillContext, "view" | "region">, incarnation: string): number {
  return c.view.streams.find((w) => w.origin === c.region && w.incarnation === incarnation)?.lsn ?? 0;
}

/** LSNs in [from, to] that `records` (sorted) lacks, as ranges. */
function holes(records: readonly WalRecord[], from: number, to: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let next = from;
  for (const r of records) {
    if (r.lsn > next) out.push([next, r.lsn - 1]);
    next = r.lsn + 1;
  }
  if (next <= to) out.push([next, to]);
  return out;
}

/** Ship each older incarnation of ours past the peer's watermark for it. */
export async function shipOlderStreams(c: BackfillContext): Promise<void> {
  const limits = { bytesMax: c.batchBytesMax, recordsMax: c.batchRecordsMax };
  for (const s of await c.own.streams()) {
    if (s.incarnation === c.wal.incarnation) continue;
    let next = peerLsn(c, s.incarnation) + 1;
    while (next <= s.lsn && !c.aborted()) {
      const page = await c.own.range(s.incarnation, next, s.lsn, limits.recordsMax);
      const sent = within(page, limits);
      // The piece ends with its last record, or (nothing more held) at the stream's end.
      const last = sent.length < page.length || page.length === limits.recordsMax ? sent.at(-1)!.lsn : s.lsn;
      await shipPiece(c, s.incarnation, sent, next, last);
      next = last + 1;
    }
    await shipHeldBeyond(c, s.incarnation, next);
  }
}

/**
 * Records of an older incarnation this store holds past its own watermark for it, from `next`
 * and without a hole: copied back from a peer after that watermark was set (a bootstrap took
 * it from the peers' answers while a batch of the lost node was still on its way to one of
 * them; found by the simulator, seed 709: a targeted region never got two acknowledged
 * records, the shippers all `caught-up`). Shipped too; the first hole ends it, since only
 * LSNs up to the watermark may be declared lost.
 */
async function shipHeldBeyond(c: BackfillContext, incarnation: string, next: number): Promise<void> {
  const limits = { bytesMax: c.batchBytesMax, recordsMax: c.batchRecordsMax };
  while (!c.aborted()) {
    const page = await c.own.range(incarnation, next, next + limits.recordsMax - 1, limits.recordsMax);
    const run = page.filter((r, i) => r.lsn === next + i);
    if (run.length === 0) return;
    const sent = within(run, limits);
    await shipPiece(c, incarnation, sent, next, sent.at(-1)!.lsn);
    next = sent.at(-1)!.lsn + 1;
  }
}

/**
 * Records of an older incarnation covering [from, to] as the peer applies them: runs of
 * held records as ordinary batches, each hole as a skip batch, audited here as lost first.
 */
async function shipPiece(
  c: BackfillContext,
  incarnation: string,
  records: readonly WalRecord[],
  from: number,
  to: number,
): Promise<void> {
  const lost = holes(records, from, to);
  if (lost.length > 0) await c.reportLost(incarnation, lost);
  let at = from;
  for (const [holeFrom, holeTo] of [...lost, [to + 1, to] as [number, number]]) {
    const run = records.filter((r) => r.lsn >= at && r.lsn < holeFrom);
    if (run.length > 0) await c.send(chunkOf(c.region, incarnation, run, at, holeFrom - 1), 0);
    if (holeFrom <= holeTo)
      await c.send(skipChunk(c.region, incarnation, holeFrom, holeTo), BATCH_FLAG_SKIP_GAP);
    at = holeTo + 1;
  }
}

/**
 * Backfill the records of every stream of ours that `keep` accepts, below what the peer held
 * when the session started: the current incarnation from the WAL (else the store), older ones
 * from the store.
 */
export async function backfillTenants(c: BackfillContext, keep: (tenant: string) => boolean): Promise<void> {
  for (const s of await c.own.streams()) {
    const covered = Math.min(peerLsn(c, s.incarnation), s.lsn);
    if (covered === 0) continue;
    if (s.incarnation === c.wal.incarnation) await backfillCurrent(c, covered, keep);
    else await backfillOlder(c, s.incarnation, covered, keep);
  }
}

async function backfillCurrent(
  c: BackfillContext,
  toLsn: number,
  keep: (tenant: string) => boolean,
): Promise<void> {
  for (let next = 1; next <= toLsn && !c.aborted();) {
    const limits = { bytesMax: c.batchBytesMax, recordsMax: Math.min(c.batchRecordsMax, toLsn - next + 1) };
    let chunk: WalChunk | undefined;
    try {
      chunk = await readOwnStream(c.wal, c.own, c.region, next, limits, () => undefined);
    } catch (err) {
      if (!(err instanceof StreamGapError) || err.toLsn > c.skipThrough) throw err;
      c.log.error(
        { from: err.fromLsn, to: err.toLsn },
        "backfill skips LSNs nobody holds, as the operator allowed",
      );
      next = err.toLsn + 1;
      continue;
    }
    if (!chunk) return;
    const kept = filterChunk(chunk, keep);
    if (kept.count! > 0) await c.send(kept, BATCH_FLAG_BACKFILL);
    next = chunk.lastLsn + 1;
  }
}

async function backfillOlder(
  c: BackfillContext,
  incarnation: string,
  toLsn: number,
  keep: (tenant: string) => boolean,
): Promise<void> {
  const limits = { bytesMax: c.batchBytesMax, recordsMax: c.batchRecordsMax };
  for (let next = 1; next <= toLsn && !c.aborted();) {
    const page = within(await c.own.range(incarnation, next, toLsn, limits.recordsMax), limits);
    if (page.length === 0) return; // what remains was lost with that disk (reported when shipped)
    const kept = page.filter((r) => keep(r.tenant));
    if (kept.length > 0) await c.send(chunkOf(c.region, incarnation, kept), BATCH_FLAG_BACKFILL);
    next = page.at(-1)!.lsn + 1;
  }
}
