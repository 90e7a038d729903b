/**
 * WAL retention: remove whole segments below the lowest LSN anyone still needs: the local
 * store (its watermark for this incarnation), every peer (its durable acknowledgement) and,
 * when configured, the S3 archive (the highest LSN whose archived copy was read back and
 * verified: a segment is never removed before it is proven restorable).
 * A peer missing from the config is not waited for; if it comes back, its shipper backfills
 * from the store. A WAL over its size limit is reported, never trimmed.
 */
import type { Region } from "./region.js";

/** The lowest LSN some consumer still needs (everything below it may go). */
export function lowestNeededLsn(storeWatermark: number, peerAcks: Iterable<number>): number {
  let needed = storeWatermark + 1;
  for (const acked of peerAcks) needed = Math.min(needed, acked + 1);
  return needed;
}

export async function retain(r: Region): Promise<number> {
  let removed = 0;
  let needed = 0;
  try {
    const storeWatermark = await r.store.watermark(r.name, r.wal.incarnation);
    // The store commits this region's own records without a sync (the WAL holds them): make
    // what it holds durable before the WAL lets go of it, or a power loss could lose both.
    await r.store.syncNow();
    // A peer reached `via: s3` reads what the archive holds: the archive's verified copy is
    // enough for it (its HTTP acknowledgements may not come at all while that link is down).
    const archived = r.archiver?.verifiedLsn;
    needed = lowestNeededLsn(storeWatermark, [
      ...[...r.shippers.values()].map((s) =>
        r.config.regions[s.peer]?.via === "s3" && archived !== undefined
          ? Math.max(s.acked, archived)
          : s.acked,
      ),
      ...(archived !== undefined ? [archived] : []),
    ]);
    removed = await r.wal.removeBelow(needed);
  } catch (err) {
    r.metrics.retentionErrors.inc();
    r.log.error({ err: (err as Error).message }, "WAL retention failed; nothing was removed");
  }
  r.metrics.retentionRuns.inc();
  const bytes = r.wal.stats().bytes;
  const over = bytes > r.config.wal.bytesMax;
  r.metrics.walOverLimit.set(over ? 1 : 0);
  if (over) {
    r.log.error(
      { walBytes: bytes, walBytesMax: r.config.wal.bytesMax, lowestNeededLsn: needed },
      "WAL is over its size limit because a peer has not acknowledged; nothing is deleted",
    );
  }
  return removed;
}
