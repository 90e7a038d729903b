/**
 * The dedup store contract: key -> winning record, per-origin watermarks, conflicts, and
 * per-bucket digests for the divergence detector. SQLite is the embedded default, PostgreSQL
 * the shared one (several nodes of a region on one store); hence every method is async. One
 * interface per consumer; `DedupStore` is all of them. test/store-contract.test.ts runs the
 * same contract against both.
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
import type { DigestTree } from "./digest-tree.js";
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
  /**
   * The loser was the stored winner and had been changed outside the engine: its copy is not
   * kept as a loser (it would spread a hand edit as an acknowledged decision); `crr verify`
   * puts an intact one back from the origin's WAL or a peer.
   */
  loserDamaged?: true;
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

/** A version read back with whether it is still what was applied (its hash matches and the scrubber never flagged it). */
export type CheckedRecord = StoredRecord & { intact: boolean };

/** One (bucket, key) position in key order: where an export page resumes. */
export interface KeyCursor {
  bucket: number;
  key: string;
}

/** A stream whose records at or below `lsn` the caller already holds (an export leaves them out). */
export interface CoveredStream {
  origin: string;
  incarnation: string;
  lsn: number;
}

/** What `deleteSince` removed of one stream, and where its watermark went back to (fromLsn - 1). */
export interface RemovedStream {
  origin: string;
  incarnation: string;
  fromLsn: number;
  removed: number;
}

/**
 * Applying streams: the reader (peers' batches), the local applier (this region's own
 * records) and recovery (watermarks).
 *
 * - `applyBatch` is one transaction: the records, the losers kept as conflicts, the bucket
 *   digests and the origin's watermark, all or nothing; durable when it resolves (a peer
 *   moves its retention on the answer).
 * - It is idempotent: a batch applied any number of times, in any interleaving with other
 *   batches, leaves the state it leaves applied once.
 * - `applyLocal` is the same transaction for this region's own records, which the inbox WAL
 *   already holds durably: it may resolve before the commit is synced (open replays the WAL
 *   past the watermark). Calls are made one at a time, in LSN order.
 * - Watermarks only move forward, except through `resetWatermark` (rebuild, bootstrap and
 *   WAL recovery set one where the origin must re-ship from).
 */
export interface ApplyStore {
  readonly rule: MergeRule;
  applyBatch(batch: ApplyBatchInput): Promise<ApplyResult>;
  applyLocal(batch: ApplyBatchInput): Promise<ApplyResult>;
  /** Applied LSN for one origin stream; 0 when none was applied. */
  watermark(origin: string, incarnation: string): Promise<number>;
  /** Every (origin, incarnation) watermark this store holds. */
  watermarks(): Promise<Watermark[]>;
  /** Set a stream's watermark, also backwards (the origin will re-ship from there). */
  resetWatermark(origin: string, incarnation: string, lsn: number): Promise<void>;
}

/**
 * An audit entry the store wrote in the transaction of the change it describes, kept until
 * the audit pump has appended it (`forgetAuditNotes`): a crash between the commit and the
 * audit write loses no entry. Two kinds: `tampered-displaced` (a winner changed outside the
 * engine that a newer decision displaced: not kept as a loser) and `repair` (a version a
 * repair wrote, when the caller asked for it to be audited). Shapes: docs/FORMAT.md.
 */
export interface AuditNote {
  id: number;
  entry: { kind: string; [field: string]: unknown };
}

/** Audit entries written with the changes they describe, for the audit pump. */
export interface AuditNoteStore {
  /** Notes no audit log holds yet, oldest first, at most `limit`, with ids above `afterId` (default 0). */
  auditNotes(limit: number, afterId?: number): Promise<AuditNote[]>;
  /** The audit log holds these now. */
  forgetAuditNotes(ids: readonly number[]): Promise<void>;
}

/** Reads for clients, the admin API and the audit pump. */
export interface ReadStore {
  get(key: string): Promise<StoredRecord | undefined>;
  /** Conflicts with an id above `afterId`, in id order; each with the key's current winner. */
  conflicts(options?: { afterId?: number; limit?: number }): Promise<ConflictRow[]>;
  stats(): Promise<StoreStats>;
}

/**
 * The divergence detector's side: bucket digests (the XOR of the winners' version hashes,
 * see digest.ts), the tree over them, and the scrubber that recomputes them from content.
 * Two stores holding the same winners have equal digests, whatever the engine.
 */
export interface DigestStore {
  /** The tree over every bucket digest as committed (cached until the next change). */
  digestTree(): Promise<DigestTree>;
  /** SHA-256 over every bucket digest: equal in two stores iff (with overwhelming probability) they hold the same winners. */
  rootDigest(): Promise<string>;
  /** Every winning version in the given buckets, each with whether it is intact. */
  bucketVersions(buckets: readonly number[]): Promise<CheckedRecord[]>;
  /**
   * Recompute `count` buckets' digests from the records' content (from `fromBucket`,
   * wrapping). A record changed outside the engine is flagged (no longer intact, so never
   * evidence) and the digest follows what the row holds. Returns the buckets that were wrong.
   */
  scrub(fromBucket: number, count: number): Promise<number[]>;
}

/** Streams and repairs: serving a peer's restore, recovery's evidence, reconcile, rebuild, bootstrap. */
export interface StreamStore {
  /**
   * Versions of one stream with LSNs in [fromLsn, toLsn], in LSN order, at most `limit`: the
   * winners and the losers kept as conflicts, one per LSN, an intact copy preferred.
   */
  streamVersions(
    origin: string,
    incarnation: string,
    fromLsn: number,
    toLsn: number,
    limit: number,
  ): Promise<CheckedRecord[]>;
  /**
   * One page of winners in (bucket, key) order after `after`, optionally of one origin,
   * leaving out versions of `covered` streams at or below their LSN, and every copy that is
   * not intact (changed outside the engine: a bootstrap or rebuild copying from this store
   * must never take a hand edit for a decision; found by the simulator). `next` follows every
   * row scanned; undefined on the last page.
   */
  exportPage(o: {
    origin?: string;
    after?: KeyCursor;
    limit: number;
    covered?: readonly CoveredStream[];
  }): Promise<{ versions: StoredRecord[]; next: KeyCursor | undefined }>;
  /**
   * Write versions established as true outside any stream (watermarks untouched): the same
   * identity replaces a damaged copy, otherwise the rule decides and the loser is kept.
   * Returns the keys whose winner changed. With `audit`, each version written as a winner is
   * noted for the audit pump in the same transaction (an `AuditNote` of kind `repair`).
   */
  repair(versions: readonly StoredRecord[], audit?: { requestedBy: string }): Promise<string[]>;
  /** Remove every winner written at or after `wallMs` and move each stream's watermark back before it. */
  deleteSince(wallMs: number): Promise<RemovedStream[]>;
}

/** What the store keeps about itself: decisions recovery relies on. */
export interface MetaStore {
  /** A value set by `setMeta`; undefined when unset. */
  getMeta(name: string): Promise<string | undefined>;
  /** Set a value durably (synced before it resolves). */
  setMeta(name: string, value: string): Promise<void>;
  /** No record, no conflict, no watermark: a region without state. */
  isEmpty(): Promise<boolean>;
  /** Make every commit so far durable. */
  syncNow(): Promise<void>;
  /** Number every conflict recorded from now on above `mark` (the audit log's conflictMark). */
  reserveConflictIds(mark: number): Promise<void>;
}

/** A node of a region that shares its store: one WAL incarnation of one data directory. */
export interface RegionNode {
  incarnation: string;
  /** The data directory's id (`<dataDir>/node-id`): its incarnations over time share it. */
  nodeId: string;
  boot: string;
  seenAtMs: number;
  /** How long ago its last heartbeat was, by the store's clock. */
  seenAgoMs: number;
  /** Set once the node left the region for good (its stream is then shipped from the store). */
  leftAtMs: number | undefined;
  /** When its WAL was replayed into this store at its current boot, by the store's clock (`markReplayed`). */
  replayedAtMs: number | undefined;
}

/**
 * What a store several nodes of one region share offers them (PostgreSQL): who the nodes
 * are, and the claim that keeps two of them from deciding one key twice.
 *
 * - `claim` is atomic: of any number of nodes claiming one key, exactly one gets it (a node
 *   claiming a key it holds gets it again).
 * - A claim lasts until the claimant's record of the key is applied (`applyLocal` deletes
 *   it in the same transaction) or `releaseClaims` runs for its incarnation: at the node's
 *   start once its WAL is in the store, or when it leaves.
 */
export type ClaimAnswer = { taken: true; fresh: boolean } | { taken: false; holder: string };

export interface SharedRegionStore {
  /** Register (or refresh) this node; idempotent. */
  joinRegion(node: Omit<RegionNode, "seenAtMs" | "seenAgoMs" | "leftAtMs" | "replayedAtMs">): Promise<void>;
  /** This node's WAL is in the store (replayed at this boot): fellows that wait for it after a lost store go on. */
  markReplayed(incarnation: string, boot: string): Promise<void>;
  regionNodes(): Promise<RegionNode[]>;
  /**
   * Take `key` for `incarnation`; the holder's incarnation when another node holds it.
   * `fresh`: this call created the claim (false: the incarnation held it already, from an
   * earlier append whose record may be in its WAL, unapplied: only a fresh claim may be
   * given back on a failure). Throws NodeLeftError when `incarnation` was marked left.
   * `attempt` names this append attempt: it is kept with a claim the call creates (and only
   * then), so `releaseLostClaim` can end it if the answer never arrives.
   */
  claim(key: string, incarnation: string, attempt?: string): Promise<ClaimAnswer>;
  /** Drop one claim of `incarnation` (it found the key decided after it claimed it). */
  releaseClaim(key: string, incarnation: string): Promise<void>;
  /**
   * Drop the claim of `key` that `attempt` created, if it did and no later attempt took it
   * since: its `claim` failed without an answer (the insert may have committed), and nothing
   * was written for it. A claim the node held from an earlier attempt stays (that append's
   * record may be in its WAL), and so does one a later attempt re-took (this delete may come
   * late). Whether one was dropped.
   */
  releaseLostClaim(key: string, incarnation: string, attempt: string): Promise<boolean>;
  /** Drop every claim of these incarnations (nothing they claimed is left to append); how many. */
  releaseClaims(incarnations: readonly string[]): Promise<number>;
  /** Mark a data directory's nodes as gone for good, and drop their claims; how many claims. */
  leaveRegion(nodeId: string): Promise<number>;
  /**
   * `leaveRegion` for a node whose data directory is lost, in one transaction and only if
   * none of its incarnations beat within `quietMs` (by the store's clock); what it did. A
   * node the store does not know at all (it was lost or restored from a backup) is recorded
   * as left (a row of incarnation `left-<nodeId>`): fellows that remember it stop waiting for
   * its WAL, and it is refused if it comes back.
   */
  leaveLost(
    nodeId: string,
    quietMs: number,
  ): Promise<{ left: true; incarnations: string[]; dropped: number } | { left: false; seenAgoMs: number }>;
  /**
   * This node is alive (its `seenAtMs` is now), every `health.probeIntervalMs`; whether it
   * was marked left meanwhile (`crr leave --node-id` from another node), so it stops, or the
   * store no longer knows it (`forgotten`: lost or restored from a backup under it).
   */
  heartbeat(incarnation: string): Promise<{ left: boolean; forgotten: boolean }>;
}

/** Every side of the dedup store: what a region opens. SQLite and PostgreSQL implement it. */
export interface DedupStore
  extends ApplyStore, ReadStore, DigestStore, StreamStore, MetaStore, AuditNoteStore {
  /** Set when several nodes of the region may share this store (PostgreSQL). */
  readonly shared: SharedRegionStore | undefined;
  /**
   * Batches are applied in the order `applyBatch` is called, whatever their awaits (SQLite
   * applies on the calling turn, then waits for a shared sync). False (PostgreSQL: pooled
   * connections): a caller that needs an order must wait for each call before the next.
   */
  readonly appliesInCallOrder: boolean;
  /** What the store is (a file, a database without its credentials), for status and errors. */
  readonly description: string;
  /** False once closed or lost (a readiness check). */
  readonly isOpen: boolean;
  close(): Promise<void>;
}
