/**
 * The dedup store contract: key -> winning record, per-origin watermarks, conflicts, and
 * per-bucket digests for the divergence detector. SQLite is the embedded default; a
 * PostgreSQL store will implement the same interface (hence every method is async).
 *
 * Contract for implementations:
 * - applyBatch is one transaction: the records and the origin's watermark, all or nothing.
 * - It is idempotent: applying a batch any number of times, in any interleaving with other
 *   batches, leaves the same state as applying it once (watermark check + identity check +
 *   a unique loser index).
 * - Watermarks only move forward.
 */
import type { Hlc } from "../clock/index.js";
import type { WalRecord } from "../wal/index.js";
import type { MergeRule } from "./merge.js";

export interface StoredRecord {
  key: string;
  tenant: string;
  outcome: string;
  bodyJson: string | undefined;
  origin: string;
  incarnation: string;
  lsn: number;
  hlc: Hlc;
}

export interface ApplyBatchInput {
  origin: string;
  incarnation: string;
  /** The LSN range the batch covers; the watermark moves to lastLsn. */
  firstLsn: number;
  lastLsn: number;
  /** Frames in the range, LSNs increasing (a subset under a selective policy). */
  records: readonly WalRecord[];
  /** Records below the watermark the region should hold: merged by the rule, the watermark untouched. */
  backfill?: boolean;
}

export interface Conflict {
  key: string;
  winner: StoredRecord;
  loser: StoredRecord;
  rule: string;
}

export type ApplyResult =
  | {
      status: "applied";
      watermark: number;
      /** Records newly stored, as winner or as a kept loser. */
      applied: number;
      /** Records already known (the same version was applied before). */
      duplicates: number;
      /** New conflicts found by this batch (already stored). */
      conflicts: Conflict[];
    }
  /** Nothing new: lastLsn <= watermark. */
  | { status: "already"; watermark: number }
  /** The batch starts beyond watermark + 1: the sender must rewind to watermark + 1. */
  | { status: "gap"; watermark: number };

export interface Watermark {
  origin: string;
  incarnation: string;
  lsn: number;
  updatedAtMs: number;
}

export interface ConflictRow extends Conflict {
  id: number;
  detectedAtMs: number;
}

export interface StoreStats {
  records: number;
  conflicts: number;
}

export interface DedupStore {
  readonly rule: MergeRule;
  applyBatch(batch: ApplyBatchInput): Promise<ApplyResult>;
  get(key: string): Promise<StoredRecord | undefined>;
  /** Every (origin, incarnation) watermark this store holds. */
  watermarks(): Promise<Watermark[]>;
  /** Applied LSN for one origin stream; 0 when none was applied. */
  watermark(origin: string, incarnation: string): Promise<number>;
  conflicts(options?: { afterId?: number; limit?: number }): Promise<ConflictRow[]>;
  stats(): Promise<StoreStats>;
  /** SHA-256 over every bucket digest: equal in two stores iff (with overwhelming probability) they hold the same winners. */
  rootDigest(): Promise<string>;
  close(): Promise<void>;
}
