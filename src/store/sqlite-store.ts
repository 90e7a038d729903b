/**
 * The embedded dedup store: SQLite through better-sqlite3, in WAL journal mode.
 *
 * synchronous=NORMAL is safe here. In WAL mode it never corrupts the database; a power loss
 * can only lose the last transactions. That loss is always repaired: a transaction carries
 * its records and its origin's watermark together, so the watermark falls back with them;
 * remote origins re-ship from the watermark the peer reports, and this region's own records
 * are replayed from the inbox WAL (fdatasync'ed before any ack) on open. Paying an fsync per
 * apply would buy nothing the inbox WAL does not already give.
 */
import Database from "better-sqlite3";
import { StoreCorruptError, StoreError, StoreFullError } from "../errors.js";
import { realRuntime } from "../runtime/index.js";
import { nodeFileOps, type FileOps } from "../util/file-ops.js";
import { ruleName, compareVersions, contest, sameVersion, type MergeRule } from "./merge.js";
import { startCheckpointer, type Checkpointer } from "./checkpointer.js";
import { BucketDigests, bucketOf, bucketRuns, versionHash, versionHashBytes } from "./digest.js";
import { DigestTreeCache, type DigestTree } from "./digest-tree.js";
import { WalSync } from "./wal-sync.js";
import {
  conflictFromRow,
  auditNoteFromRow,
  fromRow,
  loserIntact,
  type ConflictDbRow,
  displacedEntry,
  repairEntry,
  type AuditNoteDbRow,
  type LoserRow,
  type RecordRow,
} from "./rows.js";
import type {
  ApplyBatchInput,
  ApplyResult,
  CheckedRecord,
  Conflict,
  ConflictRow,
  CoveredStream,
  DedupStore,
  AuditNote,
  KeyCursor,
  RemovedStream,
  StoreStats,
  StoredRecord,
  Watermark,
} from "./types.js";
import type { WalRecord } from "../wal/index.js";

const schemaVersion = 3;

const schema = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- Keyed by (bucket, key): a bucket's keys are one range scan for the divergence detector,
-- and a lookup by key computes its bucket first. vh = the winning version's 128-bit hash.
CREATE TABLE IF NOT EXISTS records (
  bucket INTEGER NOT NULL, key TEXT NOT NULL, tenant TEXT NOT NULL, outcome TEXT NOT NULL, body TEXT,
  origin TEXT NOT NULL, incarnation TEXT NOT NULL, lsn INTEGER NOT NULL,
  hlc_wall INTEGER NOT NULL, hlc_logical INTEGER NOT NULL, vh BLOB NOT NULL,
  PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
  origin TEXT NOT NULL, incarnation TEXT NOT NULL, lsn INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (origin, incarnation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL, tenant TEXT NOT NULL, outcome TEXT NOT NULL, body TEXT,
  origin TEXT NOT NULL, incarnation TEXT NOT NULL, lsn INTEGER NOT NULL,
  hlc_wall INTEGER NOT NULL, hlc_logical INTEGER NOT NULL,
  winner_origin TEXT NOT NULL, winner_incarnation TEXT NOT NULL, winner_lsn INTEGER NOT NULL,
  winner_outcome TEXT NOT NULL, winner_hlc_wall INTEGER NOT NULL, winner_hlc_logical INTEGER NOT NULL,
  rule TEXT NOT NULL, detected_at_ms INTEGER NOT NULL,
  vh BLOB,
  UNIQUE (key, origin, incarnation, lsn)
);
-- Bucket digests live in memory and are saved here on a clean close; "clean" is cleared while
-- the store is open, so after a crash they are rebuilt from records.vh instead of trusted.
-- A stream's records by LSN (winners here, losers in conflicts): backfill, WAL restoration, rebuild.
CREATE INDEX IF NOT EXISTS records_by_stream ON records (origin, incarnation, lsn);
CREATE INDEX IF NOT EXISTS conflicts_by_stream ON conflicts (origin, incarnation, lsn);
-- Records the scrubber found changed outside the engine: the version hash written when the
-- record was applied, and the hash of what the row holds now. Such a copy is not evidence.
CREATE TABLE IF NOT EXISTS tampered (
  bucket INTEGER NOT NULL, key TEXT NOT NULL, applied_vh BLOB NOT NULL, found_vh BLOB NOT NULL,
  found_at_ms INTEGER NOT NULL, PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
-- Audit entries written with the change they describe (a displaced damaged winner, an audited
-- repair), as JSON, until the audit pump has appended them.
CREATE TABLE IF NOT EXISTS audit_notes (id INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS digest_snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), clean INTEGER NOT NULL, digests BLOB NOT NULL, counts BLOB NOT NULL);
`;

/** An error from SQLite as an operating error that names the file: full disk and damage get their own types. */
export function storeError(file: string, op: string, err: unknown): Error {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: string } | undefined)?.code ?? "";
  if (code === "SQLITE_FULL") return new StoreFullError(file, op, err);
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB")
    return new StoreCorruptError(file, op, err);
  if (typeof code === "string" && code.startsWith("SQLITE_")) return new StoreError(file, op, err);
  return err instanceof Error ? err : new Error(String(err));
}

export interface SqliteStoreOptions {
  /** Database file; ":memory:" for tests of pure behaviour. */
  path: string;
  rule: MergeRule;
  nowMs?: () => number;
  /** Keep incremental bucket digests (the divergence detector needs them). Default true. */
  digests?: boolean;
  checkpointIntervalMs?: number;
  /** Checkpoint on a worker thread (default true; the simulator runs without threads). */
  checkpointer?: boolean;
  /**
   * Called after every synced commit (the simulator snapshots what a power loss cannot undo).
   * Given, a peer's batch is committed with a synced COMMIT on the calling thread, as the
   * simulator's crash model expects; otherwise by group commit (wal-sync.ts).
   */
  onSyncedCommit?: () => void;
  /** How the -wal file is synced (group commit); default node:fs. */
  fileOps?: FileOps;
  onCheckpointError?: (message: string) => void;
}

/** Buckets one scrub query reads (about 1/256 of the records at most). */
const scrubQueryBuckets = 256;

export class SqliteStore implements DedupStore {
  readonly rule: MergeRule;
  /** The database file (named in every error). */
  readonly file: string;
  private readonly db: Database.Database;
  private readonly nowMs: () => number;
  private readonly digests: BucketDigests | undefined;
  private readonly ruleText: string;
  private readonly stmt: ReturnType<SqliteStore["prepareAll"]>;
  private readonly applyTx: (b: ApplyBatchInput) => ApplyResult;
  private readonly checkpointer: Checkpointer | undefined;
  private readonly onSyncedCommit: (() => void) | undefined;
  /** Group commit of peer batches; undefined: synced COMMITs (in memory, or the simulator). */
  private readonly walSync: WalSync | undefined;
  /** The store holds, or has held since it opened, a scrubber's note (insertVersion). */
  private noted = false;

  constructor(o: SqliteStoreOptions) {
    this.rule = o.rule;
    this.ruleText = ruleName(o.rule);
    this.nowMs = o.nowMs ?? realRuntime.nowMs;
    this.file = o.path;
    this.onSyncedCommit = o.onSyncedCommit;
    this.walSync =
      o.path === ":memory:" || o.onSyncedCommit
        ? undefined
        : new WalSync(`${o.path}-wal`, o.path, o.fileOps ?? nodeFileOps);
    try {
      this.db = new Database(o.path);
    } catch (err) {
      // better-sqlite3 refuses a missing directory with a TypeError that names no file.
      const e = storeError(o.path, "open", err);
      throw e instanceof StoreError ? e : new StoreError(o.path, "open", err);
    }
    try {
      ({ stmt: this.stmt, digests: this.digests, checkpointer: this.checkpointer } = this.init(o));
    } catch (err) {
      this.db.close();
      throw storeError(o.path, "open", err);
    }
    this.applyTx = this.db.transaction((b: ApplyBatchInput) => this.applyInTransaction(b));
  }

  /** Pragmas, schema (created or migrated), statements, digests: everything open does that can fail. */
  private init(o: SqliteStoreOptions) {
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("journal_size_limit = 67108864");
    this.db.pragma("cache_size = -65536"); // 64 MiB of page cache: random keys touch pages all over the B-tree
    if (o.path !== ":memory:") this.db.pragma("wal_autocheckpoint = 0");
    this.migrate();
    const stmt = this.prepareAll();
    this.noted = this.db.prepare("SELECT EXISTS (SELECT 1 FROM tampered)").pluck().get() === 1;
    const digests = (o.digests ?? true) ? this.loadDigests(stmt) : undefined;
    // Checkpoints run on a worker thread (see checkpointer.ts), never inside our COMMITs.
    const checkpointer =
      o.path === ":memory:" || o.checkpointer === false
        ? undefined
        : startCheckpointer(o.path, o.checkpointIntervalMs ?? 500, (message) =>
            (o.onCheckpointError ?? (() => undefined))(message),
          );
    return { stmt, digests, checkpointer };
  }

  private prepareAll() {
    return {
      insertIfAbsent: this.db.prepare(
        `INSERT INTO records (bucket, key, tenant, outcome, body, origin, incarnation, lsn, hlc_wall, hlc_logical, vh)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      replace: this.db.prepare(
        `UPDATE records SET tenant = ?, outcome = ?, body = ?, origin = ?, incarnation = ?, lsn = ?, hlc_wall = ?, hlc_logical = ?, vh = ?
         WHERE bucket = ? AND key = ?`,
      ),
      get: this.db.prepare("SELECT * FROM records WHERE bucket = ? AND key = ?"),
      watermark: this.db.prepare("SELECT lsn FROM watermarks WHERE origin = ? AND incarnation = ?").pluck(),
      setWatermark: this.db.prepare(
        `INSERT INTO watermarks (origin, incarnation, lsn, updated_at_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (origin, incarnation) DO UPDATE SET lsn = excluded.lsn, updated_at_ms = excluded.updated_at_ms
         WHERE excluded.lsn > watermarks.lsn`,
      ),
      watermarks: this.db.prepare("SELECT * FROM watermarks ORDER BY origin, updated_at_ms"),
      insertLoser: this.db.prepare(
        `INSERT INTO conflicts (key, tenant, outcome, body, origin, incarnation, lsn, hlc_wall, hlc_logical,
           winner_origin, winner_incarnation, winner_lsn, winner_outcome, winner_hlc_wall, winner_hlc_logical, rule, detected_at_ms, vh)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      conflicts: this.db.prepare("SELECT * FROM conflicts WHERE id > ? ORDER BY id LIMIT ?"),
      countRecords: this.db.prepare("SELECT count(*) FROM records").pluck(),
      countConflicts: this.db.prepare("SELECT count(*) FROM conflicts").pluck(),
      snapshot: this.db.prepare("SELECT clean, digests, counts FROM digest_snapshot WHERE id = 1"),
      saveSnapshot: this.db.prepare(
        "INSERT INTO digest_snapshot (id, clean, digests, counts) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET clean = excluded.clean, digests = excluded.digests, counts = excluded.counts",
      ),
      markDirty: this.db.prepare("UPDATE digest_snapshot SET clean = 0 WHERE id = 1"),
      allVersionHashes: this.db.prepare("SELECT bucket, vh FROM records"),
      bucketRows: this.db.prepare("SELECT * FROM records WHERE bucket = ?"),
      bucketRangeRows: this.db.prepare(
        "SELECT * FROM records WHERE bucket >= ? AND bucket < ? ORDER BY bucket",
      ),
      sinceStreams: this.db.prepare(
        "SELECT origin, incarnation, min(lsn) AS fromLsn, count(*) AS removed FROM records WHERE hlc_wall >= ? GROUP BY origin, incarnation",
      ),
      deleteSince: this.db.prepare("DELETE FROM records WHERE hlc_wall >= ?"),
      lowerWatermark: this.db.prepare(
        "UPDATE watermarks SET lsn = ?, updated_at_ms = ? WHERE origin = ? AND incarnation = ? AND lsn > ?",
      ),
      setVersionHash: this.db.prepare("UPDATE records SET vh = ? WHERE bucket = ? AND key = ?"),
      exportPage: this.db.prepare(
        "SELECT * FROM records WHERE (bucket > ? OR (bucket = ? AND key > ?)) ORDER BY bucket, key LIMIT ?",
      ),
      exportPageOrigin: this.db.prepare(
        "SELECT * FROM records WHERE (bucket > ? OR (bucket = ? AND key > ?)) AND origin = ? ORDER BY bucket, key LIMIT ?",
      ),
      resetWatermark: this.db.prepare(
        `INSERT INTO watermarks (origin, incarnation, lsn, updated_at_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (origin, incarnation) DO UPDATE SET lsn = excluded.lsn, updated_at_ms = excluded.updated_at_ms`,
      ),
      streamWinners: this.db.prepare(
        "SELECT * FROM records WHERE origin = ? AND incarnation = ? AND lsn BETWEEN ? AND ? ORDER BY lsn LIMIT ?",
      ),
      streamLosers: this.db.prepare(
        "SELECT * FROM conflicts WHERE origin = ? AND incarnation = ? AND lsn BETWEEN ? AND ? ORDER BY lsn LIMIT ?",
      ),
      tamperedIn: this.db.prepare("SELECT key FROM tampered WHERE bucket = ?").pluck(),
      tamperedOne: this.db.prepare("SELECT 1 FROM tampered WHERE bucket = ? AND key = ?").pluck(),
      // A row edited again keeps the hash it was applied with and when it was first found.
      noteTampered: this.db.prepare(
        `INSERT INTO tampered (bucket, key, applied_vh, found_vh, found_at_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (bucket, key) DO UPDATE SET found_vh = excluded.found_vh`,
      ),
      clearTampered: this.db.prepare("DELETE FROM tampered WHERE bucket = ? AND key = ?"),
      noteAudit: this.db.prepare("INSERT INTO audit_notes (entry) VALUES (?)"),
      auditNotes: this.db.prepare("SELECT * FROM audit_notes WHERE id > ? ORDER BY id LIMIT ?"),
      forgetAuditNote: this.db.prepare("DELETE FROM audit_notes WHERE id = ?"),
      healLoser: this.db.prepare(
        `UPDATE conflicts SET tenant = @tenant, outcome = @outcome, body = @body, hlc_wall = @wall, hlc_logical = @logical, vh = @vh
         WHERE key = @key AND origin = @origin AND incarnation = @incarnation AND lsn = @lsn
           AND (tenant, outcome, body, hlc_wall, hlc_logical, vh) IS NOT (@tenant, @outcome, @body, @wall, @logical, @vh)`,
      ),
    };
  }

  /** Create the schema, or bring an older one up to this build's version (each step in one transaction). */
  private migrate(): void {
    const read = () =>
      this.db.prepare("SELECT value FROM meta WHERE name = 'schema_version'").pluck().get() as
        string | undefined;
    this.db.exec(
      "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    );
    const version = read();
    if (version !== undefined && Number(version) > schemaVersion)
      throw new StoreError(
        this.file,
        "open",
        `schema version ${version} is newer than this build's ${schemaVersion} (written by a newer crr)`,
      );
    this.db.transaction(() => {
      // Version 1 lacked the stream indexes and the tampered table; the schema text only adds.
      this.db.exec(schema);
      // Version 2 kept no version hash of a conflict loser: its rows are hashed as they are now
      // (trusted, as they were); from here on a row without a hash is not intact.
      const columns = this.db.prepare("SELECT name FROM pragma_table_info('conflicts')").pluck().all();
      if (!columns.includes("vh")) this.hashLosers();
      this.db
        .prepare(
          "INSERT INTO meta (name, value) VALUES ('schema_version', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .run(String(schemaVersion));
    })();
  }

  private hashLosers(): void {
    this.db.exec("ALTER TABLE conflicts ADD COLUMN vh BLOB");
    const set = this.db.prepare("UPDATE conflicts SET vh = ? WHERE id = ?");
    const rows = this.db.prepare("SELECT * FROM conflicts").iterate() as Iterable<LoserRow & { id: number }>;
    for (const row of [...rows]) set.run(versionHash(fromRow(row)), row.id);
  }

  /** The saved snapshot after a clean close, else a rebuild from every record's version hash. */
  private loadDigests(stmt: SqliteStore["stmt"]): BucketDigests {
    const d = new BucketDigests();
    const snap = stmt.snapshot.get() as { clean: number; digests: Buffer; counts: Buffer } | undefined;
    if (snap?.clean === 1) {
      d.restore(snap.digests, snap.counts);
    } else {
      for (const row of stmt.allVersionHashes.iterate() as Iterable<{ bucket: number; vh: Buffer }>)
        d.xor(row.bucket, row.vh, 1);
    }
    // From here on the snapshot lags the records: mark it so a crash rebuilds.
    stmt.saveSnapshot.run(0, d.digests, d.countsBytes());
    return d;
  }

  /**
   * Apply a peer's batch and make it durable before answering: the origin moves its
   * retention, `?wait=N` and drain on our answer, so a power loss after this returns must not
   * undo it. The commit is synced by group commit (one fdatasync of the -wal on the thread
   * pool for every batch committed meanwhile), or as a synced COMMIT in memory and in the
   * simulator. A batch already applied is answered only after a sync too: its first answer
   * may have been lost to a sync that failed.
   */
  async applyBatch(batch: ApplyBatchInput): Promise<ApplyResult> {
    if (!this.walSync) return this.applySynced(batch);
    const result = this.guard("apply a batch", () => this.withDigests(() => this.applyTx(batch)));
    await this.walSync.sync();
    return result;
  }

  private applySynced(batch: ApplyBatchInput): ApplyResult {
    return this.guard("apply a batch", () => {
      this.syncCommits(true);
      try {
        const result = this.withDigests(() => this.applyTx(batch));
        this.onSyncedCommit?.();
        return result;
      } finally {
        this.syncCommits(false);
      }
    });
  }

  /**
   * Apply without syncing the commit: for this region's own records, which the inbox WAL
   * already holds durably (a power loss undoes at most the last commits, and open replays
   * them from the WAL).
   */
  async applyLocal(batch: ApplyBatchInput): Promise<ApplyResult> {
    return this.applySync(batch);
  }

  /** applyLocal on the calling thread (the restore CLI and the simulator). */
  applySync(batch: ApplyBatchInput): ApplyResult {
    return this.guard("apply", () => this.withDigests(() => this.applyTx(batch)));
  }

  /** Run a store operation, turning SQLite's errors into ones that name the file. */
  private guard<T>(op: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw storeError(this.file, op, err);
    }
  }

  /**
   * Versions of one origin stream with LSNs in [fromLsn, toLsn], in LSN order, at most `limit`:
   * the winners, and the losers kept in the conflicts table, so every record the stream
   * delivered here is found (an origin's own store holds its whole stream). One version per
   * LSN; an intact copy is preferred.
   */
  async streamVersions(
    origin: string,
    incarnation: string,
    fromLsn: number,
    toLsn: number,
    limit: number,
  ): Promise<CheckedRecord[]> {
    return this.streamVersionsSync(origin, incarnation, fromLsn, toLsn, limit);
  }

  streamVersionsSync(
    origin: string,
    incarnation: string,
    fromLsn: number,
    toLsn: number,
    limit: number,
  ): CheckedRecord[] {
    return this.guard("read a stream", () => {
      const byLsn = new Map<number, CheckedRecord>();
      const take = <R extends LoserRow>(rows: R[], checked: (r: R) => boolean) => {
        for (const row of rows) {
          const v = { ...fromRow(row), intact: checked(row) };
          const seen = byLsn.get(v.lsn);
          if (!seen || (!seen.intact && v.intact)) byLsn.set(v.lsn, v);
        }
      };
      const args = [origin, incarnation, fromLsn, toLsn, limit] as const;
      take(this.stmt.streamWinners.all(...args) as RecordRow[], (r) => this.isIntact(r));
      take(this.stmt.streamLosers.all(...args) as LoserRow[], loserIntact);
      return [...byLsn.values()].sort((a, b) => a.lsn - b.lsn).slice(0, limit);
    });
  }

  /** Whether a winner row still holds what was applied (not changed outside the engine). */
  private isIntact(row: RecordRow): boolean {
    return (
      Buffer.isBuffer(row.vh) &&
      row.vh.equals(versionHash(fromRow(row))) &&
      this.stmt.tamperedOne.get(row.bucket, row.key) === undefined
    );
  }

  /** Run a transaction that notes digest changes in pending buckets; they reach memory only after COMMIT. */
  private withDigests<T>(tx: () => T): T {
    const touched = new Map<number, { digest: Buffer; keys: number }>();
    this.pendingBuckets = touched;
    try {
      const result = tx();
      if (this.digests && touched.size > 0) {
        for (const [bucket, t] of touched) this.digests.set(bucket, t.digest, t.keys);
      }
      return result;
    } finally {
      this.pendingBuckets = undefined;
    }
  }

  private treeCache: DigestTreeCache | undefined;

  /**
   * The digest tree over the bucket digests: kept between calls and rehashed only above the
   * buckets that changed. Its leaves are the live bucket digests; the inner nodes are as of
   * this call.
   */
  async digestTree(): Promise<DigestTree> {
    return this.digestTreeSync();
  }

  digestTreeSync(): DigestTree {
    if (!this.digests) throw new Error("this store was opened without digests");
    this.treeCache ??= new DigestTreeCache(this.digests);
    return this.treeCache.current();
  }

  /** Every winning version in the given buckets, each with whether it is intact (see isIntact). */
  async bucketVersions(buckets: readonly number[]): Promise<CheckedRecord[]> {
    return this.bucketVersionsSync(buckets);
  }

  bucketVersionsSync(buckets: readonly number[]): CheckedRecord[] {
    return this.guard("read buckets", () => {
      const out: CheckedRecord[] = [];
      for (const b of buckets) {
        const tampered = new Set(this.stmt.tamperedIn.all(b) as string[]);
        for (const row of this.stmt.bucketRows.iterate(b) as Iterable<RecordRow>) {
          const v = fromRow(row);
          out.push({ ...v, intact: !tampered.has(v.key) && row.vh.equals(versionHash(v)) });
        }
      }
      return out;
    });
  }

  /**
   * Recompute `count` buckets' digests from the records' content (from `fromBucket`, wrapping).
   * A record changed outside the engine (a hand edit, a restored file) no longer matches its
   * stored version hash: the hash and the bucket digest are corrected so the divergence
   * detector sees the change. Returns the buckets whose digest was wrong.
   */
  async scrub(fromBucket: number, count: number): Promise<number[]> {
    return this.scrubSync(fromBucket, count);
  }

  scrubSync(fromBucket: number, count: number): number[] {
    if (!this.digests) return [];
    const wrong: number[] = [];
    const tx = this.db.transaction(() => {
      // Range scans of at most scrubQueryBuckets buckets (a full scrub must not hold the whole
      // table in memory), not a query per bucket.
      for (const [runFrom, runTo] of bucketRuns(fromBucket, count))
        for (let from = runFrom; from < runTo; from += scrubQueryBuckets)
          this.scrubRange(from, Math.min(runTo, from + scrubQueryBuckets), wrong);
    });
    this.guard("scrub", tx);
    return wrong;
  }

  /** Scrub buckets [from, to): recompute each digest from its rows; note the wrong ones. */
  private scrubRange(from: number, to: number, wrong: number[]): void {
    const rows = this.stmt.bucketRangeRows.all(from, to) as RecordRow[];
    let r = 0;
    for (let bucket = from; bucket < to; bucket++) {
      const digest = Buffer.alloc(versionHashBytes);
      let keys = 0;
      for (; r < rows.length && rows[r]!.bucket === bucket; r++, keys++) {
        const vh = this.checkedVersionHash(rows[r]!);
        for (let k = 0; k < versionHashBytes; k++) digest[k]! ^= vh[k]!;
      }
      if (!digest.equals(this.digests!.digestOf(bucket)) || keys !== this.digests!.counts[bucket]) {
        this.digests!.set(bucket, digest, keys);
        wrong.push(bucket);
      }
    }
  }

  /**
   * A record's version hash recomputed from its content. A record changed outside the engine
   * no longer matches its stored hash: it is noted as tampered (keeping the hash it was
   * applied with: reconcile must not take this copy as evidence) and its hash corrected.
   */
  private checkedVersionHash(row: RecordRow): Buffer {
    const vh = versionHash(fromRow(row));
    // A stored hash that is not even bytes (a hand edit of the column) is a mismatch too: the
    // scrub goes on and notes it, rather than fail on it and leave every other edit unnoted.
    const stored: unknown = row.vh;
    if (!Buffer.isBuffer(stored) || !vh.equals(stored)) {
      const applied = Buffer.isBuffer(stored) ? stored : Buffer.alloc(0);
      this.stmt.noteTampered.run(row.bucket, row.key, applied, vh, this.nowMs());
      this.noted = true;
      this.stmt.setVersionHash.run(vh, row.bucket, row.key);
    }
    return vh;
  }

  /**
   * Write versions that reconcile or rebuild established as true (e.g. read from the origin's
   * WAL), outside any replication stream: watermarks are not touched. A version with the same
   * identity as the stored one replaces it (the stored copy was damaged); otherwise the merge
   * rule decides and the loser is kept as a conflict. Returns the keys whose winner changed;
   * with `audit`, each winner written is noted for the audit pump in the same transaction.
   */
  async repair(versions: readonly StoredRecord[], audit?: { requestedBy: string }): Promise<string[]> {
    return this.repairSync(versions, audit);
  }

  repairSync(versions: readonly StoredRecord[], audit?: { requestedBy: string }): string[] {
    const changed: string[] = [];
    const now = this.nowMs();
    const wrote = (v: StoredRecord) => {
      changed.push(v.key);
      if (audit) this.stmt.noteAudit.run(JSON.stringify(repairEntry(v, audit.requestedBy, this.ruleText)));
    };
    this.guard("repair", () =>
      this.withDigests(() =>
        this.db.transaction(() => {
          for (const v of versions) {
            const bucket = bucketOf(v.key);
            const vh = versionHash(v);
            const row = this.stmt.get.get(bucket, v.key) as RecordRow | undefined;
            if (!row) {
              this.insertVersion(bucket, v, vh);
              this.digestXor(bucket, vh, undefined);
              wrote(v);
              continue;
            }
            if (row.vh.equals(vh) && versionHash(fromRow(row)).equals(vh)) continue;
            const existing = fromRow(row);
            const replaces = sameVersion(existing, v) || compareVersions(this.rule, v, existing) < 0;
            if (!replaces) {
              if (this.insertLoser(v, existing, now) === 0) this.healLoser(v);
              continue;
            }
            // A winner changed outside the engine is not kept as a loser (see applyOne), and is
            // audited as displaced the same way.
            if (!sameVersion(existing, v)) {
              if (this.isIntact(row)) this.insertLoser(existing, v, now);
              else this.stmt.noteAudit.run(JSON.stringify(displacedEntry(existing, v, now)));
            }
            this.replaceVersion(bucket, v, vh);
            this.stmt.clearTampered.run(bucket, v.key);
            this.digestXor(bucket, vh, row.vh);
            wrote(v);
          }
        })(),
      ),
    );
    return changed;
  }

  /**
   * Insert a key the store does not hold; 1 if it was inserted. A note of the scrubber for the
   * key (it was edited, then deleted by hand) is not this version's: it goes with the insert,
   * at the cost of a statement only once the store holds or has held a note.
   */
  private insertVersion(bucket: number, v: StoredRecord, vh: Buffer): number {
    const inserted = this.insertRow(bucket, v, vh);
    if (inserted === 1 && this.noted) this.stmt.clearTampered.run(bucket, v.key);
    return inserted;
  }

  private insertRow(bucket: number, v: StoredRecord, vh: Buffer): number {
    return this.stmt.insertIfAbsent.run(
      bucket,
      v.key,
      v.tenant,
      v.outcome,
      v.bodyJson ?? null,
      v.origin,
      v.incarnation,
      v.lsn,
      v.hlc.wallMs,
      v.hlc.logical,
      vh,
    ).changes;
  }

  private replaceVersion(bucket: number, v: StoredRecord, vh: Buffer): void {
    this.stmt.replace.run(
      v.tenant,
      v.outcome,
      v.bodyJson ?? null,
      v.origin,
      v.incarnation,
      v.lsn,
      v.hlc.wallMs,
      v.hlc.logical,
      vh,
      bucket,
      v.key,
    );
  }

  /**
   * Put a version established as true over its loser row when that row was changed outside the
   * engine (its content or hash differs): the row keeps its id and the winner it lost to.
   */
  private healLoser(v: StoredRecord): void {
    this.stmt.healLoser.run({
      key: v.key,
      tenant: v.tenant,
      outcome: v.outcome,
      body: v.bodyJson ?? null,
      origin: v.origin,
      incarnation: v.incarnation,
      lsn: v.lsn,
      wall: v.hlc.wallMs,
      logical: v.hlc.logical,
      vh: versionHash(v),
    });
  }

  private insertLoser(loser: StoredRecord, winner: StoredRecord, now: number): number {
    return this.stmt.insertLoser.run(
      loser.key,
      loser.tenant,
      loser.outcome,
      loser.bodyJson ?? null,
      loser.origin,
      loser.incarnation,
      loser.lsn,
      loser.hlc.wallMs,
      loser.hlc.logical,
      winner.origin,
      winner.incarnation,
      winner.lsn,
      winner.outcome,
      winner.hlc.wallMs,
      winner.hlc.logical,
      this.ruleText,
      now,
      versionHash(loser),
    ).changes;
  }

  /**
   * One page of winning versions in key order after `after` (bucket, key), optionally of one
   * origin, leaving out versions of `covered` streams at or below their LSN (the page's
   * `next` still follows every row scanned).
   */
  async exportPage(o: {
    origin?: string;
    after?: KeyCursor;
    limit: number;
    covered?: readonly CoveredStream[];
  }): Promise<{ versions: StoredRecord[]; next: KeyCursor | undefined }> {
    return this.exportPageSync(o);
  }

  exportPageSync(o: {
    origin?: string;
    after?: KeyCursor;
    limit: number;
    covered?: readonly CoveredStream[];
  }): { versions: StoredRecord[]; next: KeyCursor | undefined } {
    const after = o.after ?? { bucket: -1, key: "" };
    const rows = (
      o.origin === undefined
        ? this.stmt.exportPage.all(after.bucket, after.bucket, after.key, o.limit)
        : this.stmt.exportPageOrigin.all(after.bucket, after.bucket, after.key, o.origin, o.limit)
    ) as RecordRow[];
    const last = rows.at(-1);
    const held = new Map((o.covered ?? []).map((c) => [`${c.origin}/${c.incarnation}`, c.lsn]));
    const versions = rows
      .filter((r) => r.lsn > (held.get(`${r.origin}/${r.incarnation}`) ?? 0) && this.isIntact(r))
      .map(fromRow);
    return {
      versions,
      next: rows.length === o.limit && last ? { bucket: last.bucket, key: last.key } : undefined,
    };
  }

  /**
   * Remove every winning version written at or after `wallMs` (rebuild --since) and move each
   * stream's watermark back before the first removed LSN (never up), so origins re-ship from there. The
   * digest snapshot is marked dirty: the next open recomputes the digests from the records.
   */
  async deleteSince(wallMs: number): Promise<RemovedStream[]> {
    const streams = this.stmt.sinceStreams.all(wallMs) as RemovedStream[];
    this.db.transaction(() => {
      this.stmt.deleteSince.run(wallMs);
      // Only ever down: records written outside a stream (a bootstrap's exported winners, a
      // repair) may stand above its watermark, and raising it over LSNs never received made
      // the origin skip them (the review).
      for (const s of streams)
        this.stmt.lowerWatermark.run(s.fromLsn - 1, this.nowMs(), s.origin, s.incarnation, s.fromLsn - 1);
      this.stmt.markDirty.run();
    })();
    if (this.digests) {
      this.digests.restore(
        Buffer.alloc(this.digests.digests.length),
        Buffer.alloc(this.digests.counts.byteLength),
      );
      for (const row of this.stmt.allVersionHashes.iterate() as Iterable<{ bucket: number; vh: Buffer }>)
        this.digests.xor(row.bucket, row.vh, 1);
    }
    return streams;
  }

  /** Set a stream's watermark, also backwards (rebuild only: the origin will re-ship from there). */
  async resetWatermark(origin: string, incarnation: string, lsn: number): Promise<void> {
    this.resetWatermarkSync(origin, incarnation, lsn);
  }

  resetWatermarkSync(origin: string, incarnation: string, lsn: number): void {
    this.stmt.resetWatermark.run(origin, incarnation, lsn, this.nowMs());
  }

  private pendingBuckets: Map<number, { digest: Buffer; keys: number }> | undefined;

  private applyInTransaction(b: ApplyBatchInput): ApplyResult {
    const wm = (this.stmt.watermark.get(b.origin, b.incarnation) as number | undefined) ?? 0;
    if (b.backfill) return this.applyRecords(b, wm, 0);
    if (b.lastLsn <= wm) return { status: "already", watermark: wm };
    if (b.firstLsn > wm + 1) return { status: "gap", watermark: wm };
    const result = this.applyRecords(b, wm, wm);
    this.stmt.setWatermark.run(b.origin, b.incarnation, b.lastLsn, this.nowMs());
    return { ...result, watermark: b.lastLsn };
  }

  /** Merge the batch's records above `aboveLsn` into the store (the caller moves the watermark). */
  private applyRecords(
    b: ApplyBatchInput,
    watermark: number,
    aboveLsn: number,
  ): Extract<ApplyResult, { status: "applied" }> {
    let applied = 0;
    let duplicates = 0;
    const conflicts: Conflict[] = [];
    const now = this.nowMs();
    for (const r of b.records) {
      if (r.lsn <= aboveLsn) continue;
      const outcome = this.applyOne(b, r, now);
      if (outcome === "duplicate") duplicates++;
      else {
        applied++;
        if (outcome !== "new") conflicts.push(outcome);
      }
    }
    return { status: "applied", watermark, applied, duplicates, conflicts };
  }

  private applyOne(b: ApplyBatchInput, r: WalRecord, now: number): "new" | "duplicate" | Conflict {
    const incoming: StoredRecord = {
      key: r.key,
      tenant: r.tenant,
      outcome: r.outcome,
      bodyJson: r.bodyJson,
      origin: b.origin,
      incarnation: b.incarnation,
      lsn: r.lsn,
      hlc: r.hlc,
    };
    const bucket = bucketOf(r.key);
    const vh = versionHash(incoming);
    if (this.insertVersion(bucket, incoming, vh) === 1) {
      this.digestXor(bucket, vh, undefined);
      return "new";
    }
    const row = this.stmt.get.get(bucket, r.key) as RecordRow;
    const existing = fromRow(row);
    if (sameVersion(existing, incoming)) return "duplicate";
    const { winner, loser, incomingWins } = contest(this.rule, existing, incoming);
    if (incomingWins && !this.isIntact(row)) {
      // A winner changed outside the engine is not kept as a loser (simulator seed 1151).
      this.replaceVersion(bucket, incoming, vh);
      this.stmt.clearTampered.run(bucket, r.key);
      this.digestXor(bucket, vh, row.vh);
      this.stmt.noteAudit.run(JSON.stringify(displacedEntry(loser, winner, now)));
      return { key: r.key, winner, loser, rule: this.ruleText, loserDamaged: true };
    }
    const kept = this.insertLoser(loser, winner, now);
    if (incomingWins) {
      this.replaceVersion(bucket, incoming, vh);
      this.digestXor(bucket, vh, row.vh);
    }
    // A loser seen before (same version) is a re-delivery, not a new conflict.
    if (kept === 0) return "duplicate";
    return { key: r.key, winner, loser, rule: this.ruleText };
  }

  /** Note in the transaction's pending buckets that version `added` replaced `removed` (undefined: a new key). */
  private digestXor(bucket: number, added: Buffer, removed: Buffer | undefined): void {
    if (!this.digests || !this.pendingBuckets) return;
    let t = this.pendingBuckets.get(bucket);
    if (!t) {
      t = { digest: Buffer.from(this.digests.digestOf(bucket)), keys: this.digests.counts[bucket]! };
      this.pendingBuckets.set(bucket, t);
    }
    for (let i = 0; i < versionHashBytes; i++) t.digest[i]! ^= added[i]!;
    if (removed) for (let i = 0; i < versionHashBytes; i++) t.digest[i]! ^= removed[i]!;
    else t.keys++;
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    return this.getSync(key);
  }

  getSync(key: string): StoredRecord | undefined {
    const row = this.guard(
      "read a key",
      () => this.stmt.get.get(bucketOf(key), key) as RecordRow | undefined,
    );
    return row ? fromRow(row) : undefined;
  }

  async watermarks(): Promise<Watermark[]> {
    return this.watermarksSync();
  }

  watermarksSync(): Watermark[] {
    return (
      this.stmt.watermarks.all() as Array<{
        origin: string;
        incarnation: string;
        lsn: number;
        updated_at_ms: number;
      }>
    ).map((w) => ({
      origin: w.origin,
      incarnation: w.incarnation,
      lsn: w.lsn,
      updatedAtMs: w.updated_at_ms,
    }));
  }

  async watermark(origin: string, incarnation: string): Promise<number> {
    return this.watermarkSync(origin, incarnation);
  }

  watermarkSync(origin: string, incarnation: string): number {
    return this.guard(
      "read a watermark",
      () => (this.stmt.watermark.get(origin, incarnation) as number | undefined) ?? 0,
    );
  }

  async conflicts(options: { afterId?: number; limit?: number } = {}): Promise<ConflictRow[]> {
    const rows = this.stmt.conflicts.all(options.afterId ?? 0, options.limit ?? 1000) as ConflictDbRow[];
    return rows.map((r) => conflictFromRow(r, this.getSync(r.key)));
  }

  async auditNotes(limit: number, afterId = 0): Promise<AuditNote[]> {
    const rows = this.guard("read audit notes", () =>
      this.stmt.auditNotes.all(afterId, limit),
    ) as AuditNoteDbRow[];
    return rows.map(auditNoteFromRow);
  }

  async forgetAuditNotes(ids: readonly number[]): Promise<void> {
    this.guard("forget audit notes", () =>
      this.db.transaction(() => {
        for (const id of ids) this.stmt.forgetAuditNote.run(id);
      })(),
    );
  }

  async stats(): Promise<StoreStats> {
    return {
      records: this.stmt.countRecords.get() as number,
      conflicts: this.stmt.countConflicts.get() as number,
    };
  }

  async rootDigest(): Promise<string> {
    if (!this.digests) throw new Error("this store was opened without digests");
    return this.digests.root();
  }

  /** Make every commit so far durable (a synced commit of nothing: SQLite syncs its write-ahead log). */
  async syncNow(): Promise<void> {
    this.setMetaSync("synced_at", String(this.nowMs()));
  }

  /** A value this store keeps about itself (e.g. whether a bootstrap finished); undefined when unset. */
  async getMeta(name: string): Promise<string | undefined> {
    return this.getMetaSync(name);
  }

  getMetaSync(name: string): string | undefined {
    return this.guard(
      "read meta",
      () => this.db.prepare("SELECT value FROM meta WHERE name = ?").pluck().get(name) as string | undefined,
    );
  }

  /** Set a meta value, durably (a synced commit): it records a decision recovery relies on. */
  async setMeta(name: string, value: string): Promise<void> {
    this.setMetaSync(name, value);
  }

  setMetaSync(name: string, value: string): void {
    this.guard("write meta", () => {
      this.syncCommits(true);
      try {
        this.db
          .prepare(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
          )
          .run(name, value);
        this.onSyncedCommit?.();
      } finally {
        this.syncCommits(false);
      }
    });
  }

  /** Whether the store holds nothing at all (no record, no conflict, no watermark): a region without state. */
  async isEmpty(): Promise<boolean> {
    return this.guard(
      "check whether empty",
      () =>
        this.db
          .prepare(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM records LIMIT 1)) + (SELECT count(*) FROM (SELECT 1 FROM watermarks LIMIT 1)) + (SELECT count(*) FROM (SELECT 1 FROM conflicts LIMIT 1))",
          )
          .pluck()
          .get() === 0,
    );
  }

  /**
   * Copy every committed page into the database file and empty the -wal (the simulator's
   * image of a synced state: the file then holds exactly what a power loss cannot undo).
   * Throws when a reader kept the checkpoint from finishing.
   */
  /**
   * Whether SQLite syncs the commits that follow. Set through `db.pragma`, which prepares the
   * statement anew each time: SQLite runs this pragma when it compiles it, and a prepared
   * `PRAGMA synchronous = FULL` kept and run again did nothing on its first run, so the first
   * "synced" commit after opening the store was not synced (found by the simulator once its
   * crash model asked SQLite rather than the caller).
   */
  private syncCommits(on: boolean): void {
    this.db.pragma(on ? "synchronous = FULL" : "synchronous = NORMAL");
  }

  /**
   * Whether SQLite itself syncs a commit made now (`synchronous` FULL or above): what the
   * simulator's crash model asks SQLite, not the caller, before it counts a commit as durable.
   */
  commitsSynced(): boolean {
    return (this.db.pragma("synchronous", { simple: true }) as number) >= 2;
  }

  checkpointFully(): void {
    const [r] = this.guard("checkpoint", () => this.db.pragma("wal_checkpoint(TRUNCATE)")) as {
      busy: number;
      log: number;
      checkpointed: number;
    }[];
    if (!r || r.busy !== 0 || r.log !== r.checkpointed)
      throw new Error(`${this.file}: the checkpoint did not finish (${JSON.stringify(r)})`);
  }

  /**
   * Make every conflict recorded from now on take an id above `mark` (the audit log's
   * conflictMark): a store that was lost or rolled back by a power loss would otherwise
   * number new conflicts at or below what the log already holds, and the pump would never
   * write them. A conflict the log already holds may be written again (at least once).
   */
  async reserveConflictIds(mark: number): Promise<void> {
    this.guard("reserve conflict ids", () => {
      const seq = this.db
        .prepare("SELECT seq FROM sqlite_sequence WHERE name = 'conflicts'")
        .pluck()
        .get() as number | undefined;
      if (seq === undefined)
        this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('conflicts', ?)").run(mark);
      else if (seq < mark)
        this.db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'conflicts'").run(mark);
    });
  }

  /** Drop the handle without writing anything (what a killed process leaves: the simulator's crash). */
  abandon(): void {
    if (this.db.open) this.db.close();
  }

  /** One node per SQLite store: its data directory's lock says so. */
  readonly shared = undefined;
  readonly appliesInCallOrder = true;

  get description(): string {
    return `SQLite ${this.file}`;
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    await this.walSync?.close();
    await this.checkpointer?.stop();
    if (this.digests) this.stmt.saveSnapshot.run(1, this.digests.digests, this.digests.countsBytes());
    this.db.close();
  }
}
