/**
 * Applies this region's own records to the store once the WAL acknowledged them, many per
 * transaction: every record acknowledged in one turn of the event loop shares one store
 * transaction (the store's counterpart of group commit). Records arrive in LSN order (the
 * WAL resolves appends in order); if a previous apply failed and left a hole, the hole is
 * filled from the WAL first, so the store never skips an LSN of its own region.
 *
 * The store's answer is checked: an "already applied" answer for a fresh LSN means the LSN
 * was issued before (the WAL lost records the store had seen), so the append fails rather
 * than acknowledge a record the region cannot serve, and the region stops taking appends.
 */
import { CrrError } from "../errors.js";
import { nextTurn, realRuntime, type Runtime } from "../runtime/index.js";
import type { ApplyBatchInput, ApplyResult, ApplyStore, StoredRecord } from "../store/index.js";
import { decodeFrames, type WalRecord } from "../wal/index.js";

/** What the applier needs of the store. */
export type LocalStore = Pick<ApplyStore, "applyLocal" | "watermark">;

/** What the applier needs of the WAL. */
export interface LocalWal {
  readonly incarnation: string;
  read(
    fromLsn: number,
    limits: { bytesMax: number; recordsMax: number },
  ): Promise<{ lastLsn: number; frames: Buffer; segment: string; offset: number } | undefined>;
}

/** The store refused a fresh LSN of this region as already applied: an LSN was issued twice. */
export class LsnReuseError extends CrrError {
  constructor(
    readonly lsn: number,
    readonly storeWatermark: number,
  ) {
    super(
      "lsn_reuse",
      `the store already holds LSN ${storeWatermark} of this incarnation, so LSN ${lsn} was issued twice (the WAL lost records the store had seen); not acknowledging it`,
    );
  }
}

/** Apply `batch` and insist it was applied as asked (its watermark moved to its last LSN). */
export async function applyChecked(store: LocalStore, batch: ApplyBatchInput): Promise<ApplyResult> {
  const result = await store.applyLocal(batch);
  if (result.status === "gap")
    throw new Error(
      `the store lacks LSNs ${result.watermark + 1}..${batch.firstLsn - 1} of its own stream (a hole not filled)`,
    );
  if (result.status !== "applied" || result.watermark !== batch.lastLsn)
    throw new LsnReuseError(batch.firstLsn, result.watermark);
  return result;
}

/**
 * Apply the WAL's records of this region in [fromLsn, toLsn] to the store, a chunk per
 * transaction: what open replays past the store's watermark, and what fills a hole.
 */
export async function applyWalRange(
  wal: LocalWal,
  store: LocalStore,
  origin: string,
  fromLsn: number,
  toLsn: number,
  onApplied: (result: ApplyResult) => void = () => undefined,
): Promise<void> {
  let next = fromLsn;
  while (next <= toLsn) {
    const chunk = await wal.read(next, {
      bytesMax: 4 * 1024 * 1024,
      recordsMax: Math.min(10_000, toLsn - next + 1),
    });
    if (!chunk) throw new Error(`WAL has no LSN ${next} to apply (wanted ${fromLsn}..${toLsn})`);
    const records = decodeFrames(chunk.frames, {
      source: chunk.segment,
      baseOffset: chunk.offset,
      firstLsn: next,
    });
    const last = Math.min(chunk.lastLsn, toLsn);
    onApplied(
      await applyChecked(store, {
        origin,
        incarnation: wal.incarnation,
        firstLsn: next,
        lastLsn: last,
        records: records.filter((r) => r.lsn <= last),
      }),
    );
    next = last + 1;
  }
}

/** The winners that beat this region's own records in `result`, by the beaten record's LSN. */
function beatenOwn(result: ApplyResult, region: string, incarnation: string): Map<number, StoredRecord> {
  const beaten = new Map<number, StoredRecord>();
  if (result.status !== "applied") return beaten;
  for (const c of result.conflicts)
    if (c.loser.origin === region && c.loser.incarnation === incarnation) beaten.set(c.loser.lsn, c.winner);
  return beaten;
}

interface Pending {
  rec: WalRecord;
  /** With the version that beat the record when it was applied (undefined: it is the stored winner). */
  resolve: (beatenBy: StoredRecord | undefined) => void;
  reject: (err: Error) => void;
}

export class LocalApplier {
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;
  /** Highest LSN of the current stream the store is known to hold (-1: not known yet). */
  private appliedLsn = -1;
  private readonly appliedWaiters = new Set<() => void>();

  constructor(
    private readonly store: LocalStore,
    private readonly wal: LocalWal,
    private readonly region: string,
    private readonly onApplied: (result: ApplyResult) => void,
    /** The store refused an LSN as already applied: the region must stop taking appends. */
    private readonly onReuse: (err: LsnReuseError) => void,
    private readonly runtime: Runtime = realRuntime,
  ) {}

  /**
   * Apply `rec` (with the records queued beside it, in one transaction). Resolves with the
   * version that beat it under the merge rule if the key was decided meanwhile (a peer's
   * record applied since the dedup check), undefined when `rec` is now the stored winner:
   * the append is answered from this, as of its own transaction, without reading it back.
   */
  apply(rec: WalRecord): Promise<StoredRecord | undefined> {
    return new Promise((resolve, reject) => {
      this.queue.push({ rec, resolve, reject });
      this.running ??= nextTurn(this.runtime).then(() => this.drain());
    });
  }

  /** Highest LSN of the current stream the store is known to hold (-1: not known yet). */
  get applied(): number {
    return this.appliedLsn;
  }

  /** The store holds the current stream up to `lsn` (after the open's replay, or an apply). */
  noteApplied(lsn: number): void {
    if (lsn <= this.appliedLsn) return;
    this.appliedLsn = lsn;
    for (const wake of [...this.appliedWaiters]) wake();
  }

  /** Resolves once the store holds an LSN beyond `after`, or when `signal` aborts. */
  waitApplied(after: number, signal?: AbortSignal): Promise<void> {
    if (this.appliedLsn > after || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (this.appliedLsn <= after && !signal?.aborted) return;
        this.appliedWaiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.appliedWaiters.add(done);
      signal?.addEventListener("abort", done);
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
        const first = batch[0]!.rec.lsn;
        const watermark = await this.store.watermark(this.region, this.wal.incarnation);
        // A fresh LSN the store already holds was issued twice: never acknowledge it.
        if (watermark >= first) throw new LsnReuseError(first, watermark);
        if (watermark + 1 < first)
          await applyWalRange(this.wal, this.store, this.region, watermark + 1, first - 1);
        const records = batch.map((p) => p.rec);
        const result = await applyChecked(this.store, {
          origin: this.region,
          incarnation: this.wal.incarnation,
          firstLsn: first,
          lastLsn: records[records.length - 1]!.lsn,
          records,
        });
        this.onApplied(result);
        if (result.status !== "gap") this.noteApplied(result.watermark);
        const beaten = beatenOwn(result, this.region, this.wal.incarnation);
        for (const p of batch) p.resolve(beaten.get(p.rec.lsn));
      } catch (err) {
        if (err instanceof LsnReuseError) this.onReuse(err);
        // Typed errors (a full disk, a damaged store) keep their type: the answer depends on it.
        const e =
          err instanceof CrrError
            ? err
            : new Error(
                `record is durable in the WAL but was not applied to the store: ${(err as Error).message}`,
                {
                  cause: err,
                },
              );
        for (const p of batch) p.reject(e);
      }
    }
    this.running = undefined;
  }
}
