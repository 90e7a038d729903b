/**
 * Applies this region's own records to the store once the WAL acknowledged them, many per
 * transaction: every record acknowledged in one turn of the event loop shares one store
 * transaction (the store's counterpart of group commit). Records arrive in LSN order (the
 * WAL resolves appends in order); if a previous apply failed and left a hole, the hole is
 * filled from the WAL first, so the store never skips an LSN of its own region.
 */
import type { ApplyResult, SqliteStore } from "../store/index.js";
import { decodeFrames, type Wal, type WalRecord } from "../wal/index.js";

interface Pending {
  rec: WalRecord;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class LocalApplier {
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: SqliteStore,
    private readonly wal: Wal,
    private readonly region: string,
    private readonly onApplied: (result: ApplyResult) => void,
  ) {}

  apply(rec: WalRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ rec, resolve, reject });
      this.running ??= new Promise<void>((r) => setImmediate(r)).then(() => this.drain());
    });
  }

  /** Resolves when nothing is queued or being applied. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.fillHole(batch[0]!.rec.lsn);
        const records = batch.map((p) => p.rec);
        this.onApplied(
          this.store.applySync({
            origin: this.region,
            incarnation: this.wal.incarnation,
            firstLsn: records[0]!.lsn,
            lastLsn: records[records.length - 1]!.lsn,
            records,
          }),
        );
        for (const p of batch) p.resolve();
      } catch (err) {
        const e = new Error(
          `record is durable in the WAL but was not applied to the store: ${(err as Error).message}`,
          { cause: err },
        );
        for (const p of batch) p.reject(e);
      }
    }
    this.running = undefined;
  }

  private async fillHole(beforeLsn: number): Promise<void> {
    let next = (await this.store.watermark(this.region, this.wal.incarnation)) + 1;
    while (next < beforeLsn) {
      const chunk = await this.wal.read(next, {
        bytesMax: 4 * 1024 * 1024,
        recordsMax: Math.min(10_000, beforeLsn - next),
      });
      if (!chunk) throw new Error(`WAL has no LSN ${next} to fill the store's gap`);
      const records = decodeFrames(chunk.frames, {
        source: chunk.segment,
        baseOffset: chunk.offset,
        firstLsn: next,
      });
      this.store.applySync({
        origin: this.region,
        incarnation: this.wal.incarnation,
        firstLsn: next,
        lastLsn: chunk.lastLsn,
        records,
      });
      next = chunk.lastLsn + 1;
    }
  }
}
