/**
 * The shared dedup store: PostgreSQL through node-postgres (`pg`). Several crr nodes of one
 * region may open the same database; every write is one transaction that PostgreSQL makes
 * durable before it returns (synchronous_commit is forced on for crr's sessions).
 *
 * How a transaction stays correct when several run at once:
 * - a stream's batches serialize on its watermark row (SELECT … FOR UPDATE), so two nodes
 *   given overlapping batches of one stream apply them once;
 * - the keys a batch touches are locked (FOR UPDATE) before the merge rule (merge.ts, the
 *   same code SQLite runs) decides between the stored and the incoming version; a key
 *   another transaction inserted meanwhile makes the insert find a conflict, and the whole
 *   transaction is run again (it then finds and locks the row);
 * - bucket digests change in the same transaction, last: it takes the next gen of
 *   `digest_clock` (a row lock held to COMMIT), so digest changes commit in gen order and a
 *   reader that saw gen G holds every change up to G (postgres-schema.ts);
 * - serialization failures and deadlocks (SQLSTATE 40001, 40P01) run the transaction again.
 */
import pg from "pg";
import {
  StoreCorruptError,
  StoreError,
  StoreFullError,
  StoreUnavailableError,
  NodeLeftError,
} from "../errors.js";
import { realRuntime } from "../runtime/index.js";
import { BucketDigests, bucketCount, bucketOf, versionHash } from "./digest.js";
import { DigestTreeCache, type DigestTree } from "./digest-tree.js";
import { contest, ruleName, sameVersion, type MergeRule } from "./merge.js";
import { migrate } from "./postgres-schema.js";
import {
  conflictFromRow,
  auditNoteFromRow,
  displacedEntry,
  repairEntry,
  fromRow,
  loserIntact,
  versionColumns,
  type ConflictDbRow,
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
  RegionNode,
  RemovedStream,
  SharedRegionStore,
  StoreStats,
  StoredRecord,
  Watermark,
} from "./types.js";

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (never logged: errors name `description`). */
  url: string;
  rule: MergeRule;
  /** Connections kept (store.poolSize). */
  poolSize?: number;
  nowMs?: () => number;
  /** An idle connection failed (the pool replaces it); logged by the caller. */
  onPoolError?: (message: string) => void;
}

/** BIGINT columns as numbers: LSNs and milliseconds stay far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** The database a URL names, without its credentials. */
export function describePostgres(url: string): string {
  try {
    const u = new URL(url);
    return `PostgreSQL ${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return "PostgreSQL (an unparsable url)";
  }
}

/** Ask the caller to run the whole transaction again (a key inserted by another one meanwhile). */
class RunAgain extends Error {}

const retryCodes = new Set(["40001", "40P01"]);

/** Socket errors of a server that does not answer (refused, reset, unreachable, timed out). */
const socketCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * Whether `err` says the server did not answer rather than refused the work: a socket error,
 * SQLSTATE class 08 (connection exception) or 57P01-57P03 (shut down, starting), or
 * node-postgres's own connection messages (it names no code for those).
 */
export function unreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (
    typeof code === "string" &&
    (socketCodes.has(code) || code.startsWith("08") || /^57P0[123]$/.test(code))
  )
    return true;
  const message = (err as Error | undefined)?.message ?? "";
  return /^Connection terminated|timeout exceeded when trying to connect|connection error and is not queryable/.test(
    message,
  );
}
const attemptsMax = 20;

type Client = pg.PoolClient;
type Mode = "apply" | "repair";
interface Held {
  v: StoredRecord;
  vh: Buffer;
  /** The row's stored hash (differs from vh when the row was changed outside the engine). */
  storedVh: Buffer;
  inDb: boolean;
  /** Whether the row still holds what was applied (its hash matches, no scrub noted it as tampered). */
  intact: boolean;
}

/** One version against the stored one: whether it takes the key, and what it counts as. */
interface Contested {
  replaced: boolean;
  duplicate?: boolean;
  conflict?: Conflict;
}

/** What merging versions into the locked rows did. */
interface Merged {
  applied: number;
  duplicates: number;
  conflicts: Conflict[];
  changed: string[];
  /** The versions written as winners, in order (a repair's audit notes). */
  written: StoredRecord[];
}

/** The database's clock in ms (heartbeats and their staleness are compared on it). */
const dbNowMs = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

export class PostgresStore implements DedupStore {
  readonly rule: MergeRule;
  readonly description: string;
  readonly appliesInCallOrder = false;
  private readonly ruleText: string;
  private readonly nowMs: () => number;
  private closed = false;
  private readonly digests = new BucketDigests();
  /** Initial rows are zeros at gen 0, as the in-memory digests start. */
  private digestGen = 0;
  private readonly treeCache = new DigestTreeCache(this.digests);

  private constructor(
    private readonly pool: pg.Pool,
    o: PostgresStoreOptions,
  ) {
    this.rule = o.rule;
    this.ruleText = ruleName(o.rule);
    this.nowMs = o.nowMs ?? realRuntime.nowMs;
    this.description = describePostgres(o.url);
  }

  /** Connect, create or migrate the schema, and load the bucket digests. */
  static async open(o: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = new pg.Pool({
      connectionString: o.url,
      max: o.poolSize ?? 8,
      connectionTimeoutMillis: 10_000,
      // A statement that hangs (a lock never granted, a server in trouble) fails after 2 min
      // instead of holding a peer's stream (applied in order) for ever; keepalives notice a
      // connection that silently died.
      options: "-c synchronous_commit=on -c statement_timeout=120000",
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      types,
    });
    pool.on("error", (err) => o.onPoolError?.(err.message));
    const store = new PostgresStore(pool, o);
    try {
      const client = await pool.connect();
      try {
        await migrate(client);
      } finally {
        client.release();
      }
      await store.refreshDigests();
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw store.error("open", err);
    }
    return store;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** A store error that names the database (never its URL), typed by SQLSTATE. */
  private error(op: string, err: unknown): Error {
    if (err instanceof StoreError || err instanceof NodeLeftError) return err;
    const code = (err as { code?: string } | undefined)?.code ?? "";
    if (code === "53100") return new StoreFullError(this.description, op, err);
    if (code === "XX001" || code === "XX002") return new StoreCorruptError(this.description, op, err);
    if (unreachable(err)) return new StoreUnavailableError(this.description, op, err);
    return new StoreError(this.description, op, err);
  }

  private async read<T>(op: string, fn: (c: pg.Pool) => Promise<T>): Promise<T> {
    try {
      return await fn(this.pool);
    } catch (err) {
      throw this.error(op, err);
    }
  }

  /**
   * Run `fn` in one transaction, again from the start on a serialization failure, a deadlock
   * or RunAgain. A connection lost meanwhile fails the transaction (never the process: the
   * client's error event is listened to while it is checked out) and is thrown away.
   */
  private async tx<T>(op: string, fn: (c: Client) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: Client | undefined;
      let broken: Error | undefined;
      const onError = (err: Error) => (broken = err);
      try {
        client = await this.pool.connect();
        client.on("error", onError);
        await client.query("BEGIN");
        const result = await fn(client);
        await client.query("COMMIT");
        return result;
      } catch (err) {
        if (!broken) await client?.query("ROLLBACK").catch((e: Error) => (broken = e));
        const again = err instanceof RunAgain || retryCodes.has((err as { code?: string }).code ?? "");
        if (!again || attempt >= attemptsMax) throw this.error(op, err);
      } finally {
        client?.off("error", onError);
        client?.release(broken);
      }
    }
  }

  async applyBatch(batch: ApplyBatchInput): Promise<ApplyResult> {
    return this.tx("apply a batch", (c) => this.applyIn(c, batch));
  }

  /**
   * The same durable transaction as applyBatch (PostgreSQL has no cheaper unsynced commit
   * worth its risk), which also ends the claims of the batch's keys: the records are decided.
   */
  async applyLocal(batch: ApplyBatchInput): Promise<ApplyResult> {
    return this.tx("apply", async (c) => {
      // A node of several marked left applies nothing more: its row, locked FOR SHARE until
      // this commits, makes `leaveRegion` wait for an apply under way (then it is decided
      // before the node's claims end) or this apply fail after it (nothing decided).
      const node = await c.query<{ left_at_ms: number | null }>(
        "SELECT left_at_ms FROM nodes WHERE incarnation = $1 FOR SHARE",
        [batch.incarnation],
      );
      if (node.rows[0] && node.rows[0].left_at_ms !== null) throw new NodeLeftError(batch.incarnation);
      const result = await this.applyIn(c, batch);
      if (result.status === "applied" && batch.records.length > 0)
        await c.query("DELETE FROM claims WHERE key = ANY($1::text[]) AND incarnation = $2", [
          batch.records.map((r) => r.key),
          batch.incarnation,
        ]);
      return result;
    });
  }

  readonly shared: SharedRegionStore = {
    // Heartbeats and the staleness `crr leave --node-id` checks use the database's clock:
    // the nodes' and the operator's clocks may disagree.
    joinRegion: (n) =>
      this.read("join the region", async (p) => {
        await p.query(
          `INSERT INTO nodes (incarnation, node_id, boot, joined_at_ms, seen_at_ms) VALUES ($1, $2, $3, ${dbNowMs}, ${dbNowMs})
           ON CONFLICT (incarnation) DO UPDATE SET boot = excluded.boot, seen_at_ms = excluded.seen_at_ms`,
          [n.incarnation, n.nodeId, n.boot],
        );
      }),
    regionNodes: async () => {
      const r = await this.read("read the region's nodes", (p) =>
        p.query<{
          incarnation: string;
          node_id: string;
          boot: string;
          seen_at_ms: number;
          seen_ago_ms: number;
          left_at_ms: number | null;
          replayed_boot: string | null;
          replayed_at_ms: number | null;
        }>(`SELECT *, ${dbNowMs} - seen_at_ms AS seen_ago_ms FROM nodes ORDER BY joined_at_ms`),
      );
      return r.rows.map((n): RegionNode => ({
        incarnation: n.incarnation,
        nodeId: n.node_id,
        boot: n.boot,
        seenAtMs: n.seen_at_ms,
        seenAgoMs: Math.max(0, n.seen_ago_ms),
        leftAtMs: n.left_at_ms ?? undefined,
        replayedAtMs: n.replayed_boot === n.boot ? (n.replayed_at_ms ?? undefined) : undefined,
      }));
    },
    markReplayed: (incarnation, boot) =>
      this.read("record that this node's WAL is in the store", async (p) => {
        await p.query(
          `UPDATE nodes SET replayed_boot = $2, replayed_at_ms = ${dbNowMs} WHERE incarnation = $1 AND boot = $2`,
          [incarnation, boot],
        );
      }),
    claim: async (key, incarnation, attempt) => {
      const r = await this.read("claim a key", (p) =>
        p.query<{ incarnation: string; fresh: boolean }>(
          // A node claiming a key it holds gets it again (DO UPDATE … WHERE returns the row;
          // xmax is 0 only for a row this statement inserted).
          // Only while the node is not marked left (its row locked FOR SHARE: a leave waits
          // for this claim, then drops it). A single node has no row: it always may.
          `INSERT INTO claims (key, incarnation, claimed_at_ms, attempt, taken_by)
           SELECT $1, $2, $3, $4, $4 WHERE EXISTS
             (SELECT 1 FROM nodes WHERE incarnation = $2 AND left_at_ms IS NULL FOR SHARE)
             OR NOT EXISTS (SELECT 1 FROM nodes WHERE incarnation = $2)
           ON CONFLICT (key) DO UPDATE SET claimed_at_ms = excluded.claimed_at_ms, taken_by = excluded.taken_by
             WHERE claims.incarnation = excluded.incarnation
           RETURNING incarnation, (xmax = 0) AS fresh`,
          [key, incarnation, this.nowMs(), attempt ?? null],
        ),
      );
      if (r.rows.length === 1) return { taken: true, fresh: r.rows[0]!.fresh };
      const holder = await this.read("read a claim", (p) =>
        p.query<{ incarnation: string; left: boolean }>(
          `SELECT c.incarnation, EXISTS (SELECT 1 FROM nodes WHERE incarnation = $2 AND left_at_ms IS NOT NULL) AS left
           FROM (SELECT 1) one LEFT JOIN claims c ON c.key = $1`,
          [key, incarnation],
        ),
      );
      if (holder.rows[0]!.left) throw new NodeLeftError(incarnation);
      // Released between the two statements: try again.
      if (holder.rows[0]!.incarnation === null) return this.shared.claim(key, incarnation, attempt);
      return { taken: false, holder: holder.rows[0]!.incarnation };
    },
    releaseClaim: async (key, incarnation) => {
      await this.read("release a claim", (p) =>
        p.query("DELETE FROM claims WHERE key = $1 AND incarnation = $2", [key, incarnation]),
      );
    },
    releaseLostClaim: async (key, incarnation, attempt) => {
      const r = await this.read("release a claim whose answer was lost", (p) =>
        p.query("DELETE FROM claims WHERE key = $1 AND incarnation = $2 AND attempt = $3 AND taken_by = $3", [
          key,
          incarnation,
          attempt,
        ]),
      );
      return (r.rowCount ?? 0) > 0;
    },
    releaseClaims: async (incarnations) => {
      const r = await this.read("release claims", (p) =>
        p.query("DELETE FROM claims WHERE incarnation = ANY($1::text[])", [[...incarnations]]),
      );
      return r.rowCount ?? 0;
    },
    leaveRegion: (nodeId) => this.tx("leave the region", (c) => this.leaveIn(c, nodeId)),
    leaveLost: (nodeId, quietMs) =>
      this.tx("leave the region for a lost node", async (c) => {
        // Its rows locked first: a heartbeat landing now waits, then finds it left.
        const rows = await c.query<{ incarnation: string; seen_ago_ms: number }>(
          `SELECT incarnation, ${dbNowMs} - seen_at_ms AS seen_ago_ms FROM nodes
           WHERE node_id = $1 AND left_at_ms IS NULL FOR UPDATE`,
          [nodeId],
        );
        const seenAgoMs = Math.min(...rows.rows.map((n) => n.seen_ago_ms));
        if (seenAgoMs < quietMs) return { left: false as const, seenAgoMs };
        if (rows.rows.length === 0) await this.recordLeftUnknown(c, nodeId);
        const dropped = await this.leaveIn(c, nodeId);
        return { left: true as const, incarnations: rows.rows.map((n) => n.incarnation), dropped };
      }),
    heartbeat: async (incarnation) => {
      const r = await this.read("record this node's heartbeat", (p) =>
        p.query<{ left_at_ms: number | null }>(
          `UPDATE nodes SET seen_at_ms = ${dbNowMs} WHERE incarnation = $1 RETURNING left_at_ms`,
          [incarnation],
        ),
      );
      // A node whose row is gone takes no appends either: the store forgot it.
      const forgotten = r.rows.length === 0;
      return { left: !forgotten && r.rows[0]!.left_at_ms !== null, forgotten };
    },
  };

  /**
   * A node with no row at all (the store lost or never had it) declared gone: a row that says
   * so, unless it already left (then nothing: `leaveIn` finds it marked).
   */
  private async recordLeftUnknown(c: Client, nodeId: string): Promise<void> {
    await c.query(
      `INSERT INTO nodes (incarnation, node_id, boot, joined_at_ms, seen_at_ms, left_at_ms)
       SELECT $1, $2, '', ${dbNowMs}, ${dbNowMs}, ${dbNowMs} WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE node_id = $2)
       ON CONFLICT (incarnation) DO NOTHING`,
      [`left-${nodeId}`, nodeId],
    );
  }

  /** Mark `nodeId` left and drop its claims, in `c`'s transaction; how many claims. */
  private async leaveIn(c: Client, nodeId: string): Promise<number> {
    await c.query(`UPDATE nodes SET left_at_ms = ${dbNowMs} WHERE node_id = $1 AND left_at_ms IS NULL`, [
      nodeId,
    ]);
    const dropped = await c.query(
      "DELETE FROM claims WHERE incarnation IN (SELECT incarnation FROM nodes WHERE node_id = $1)",
      [nodeId],
    );
    return dropped.rowCount ?? 0;
  }

  private async applyIn(c: Client, b: ApplyBatchInput): Promise<ApplyResult> {
    if (b.backfill) {
      const wm = await this.watermarkIn(c, b.origin, b.incarnation, false);
      return this.applyRecords(c, b, wm ?? 0, 0);
    }
    let wm = await this.watermarkIn(c, b.origin, b.incarnation, true);
    if (wm === undefined) {
      if (b.firstLsn > 1) return { status: "gap", watermark: 0 };
      // The stream's first batch: create its row, then lock it (a concurrent first batch waits here).
      await c.query(
        "INSERT INTO watermarks (origin, incarnation, lsn, updated_at_ms) VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING",
        [b.origin, b.incarnation, this.nowMs()],
      );
      wm = (await this.watermarkIn(c, b.origin, b.incarnation, true)) ?? 0;
    }
    if (b.lastLsn <= wm) return { status: "already", watermark: wm };
    if (b.firstLsn > wm + 1) return { status: "gap", watermark: wm };
    const result = await this.applyRecords(c, b, wm, wm);
    await c.query(
      "UPDATE watermarks SET lsn = $3, updated_at_ms = $4 WHERE origin = $1 AND incarnation = $2 AND lsn < $3",
      [b.origin, b.incarnation, b.lastLsn, this.nowMs()],
    );
    return { ...result, watermark: b.lastLsn };
  }

  private async watermarkIn(
    c: Client,
    origin: string,
    incarnation: string,
    lock: boolean,
  ): Promise<number | undefined> {
    const r = await c.query<{ lsn: number }>(
      `SELECT lsn FROM watermarks WHERE origin = $1 AND incarnation = $2${lock ? " FOR UPDATE" : ""}`,
      [origin, incarnation],
    );
    return r.rows[0]?.lsn;
  }

  private async applyRecords(
    c: Client,
    b: ApplyBatchInput,
    watermark: number,
    aboveLsn: number,
  ): Promise<Extract<ApplyResult, { status: "applied" }>> {
    const versions = b.records
      .filter((r) => r.lsn > aboveLsn)
      .map((r): StoredRecord => ({
        key: r.key,
        tenant: r.tenant,
        outcome: r.outcome,
        bodyJson: r.bodyJson,
        origin: b.origin,
        incarnation: b.incarnation,
        lsn: r.lsn,
        hlc: r.hlc,
      }));
    const m = await this.merge(c, versions, "apply");
    return {
      status: "applied",
      watermark,
      applied: m.applied,
      duplicates: m.duplicates,
      conflicts: m.conflicts,
    };
  }

  /**
   * Merge `versions` into the store, in order, on rows locked for this transaction: the
   * same decisions SqliteStore makes (applyOne for a stream's records, repair for versions
   * established outside any stream), then the inserts, and the digests last.
   */
  private async merge(c: Client, versions: readonly StoredRecord[], mode: Mode): Promise<Merged> {
    const out: Merged = { applied: 0, duplicates: 0, conflicts: [], changed: [], written: [] };
    if (versions.length === 0) return out;
    const held = await this.lockKeys(c, [...new Set(versions.map((v) => v.key))]);
    const inserts = new Map<string, Held>();
    const updates = new Map<string, Held>();
    const deltas = new Map<number, { xor: Buffer; keys: number }>();
    const losers: number[] = [];
    const note = (bucket: number, vh: Buffer, keys: number) => {
      const d = deltas.get(bucket) ?? { xor: Buffer.alloc(vh.length), keys: 0 };
      for (let i = 0; i < vh.length; i++) d.xor[i]! ^= vh[i]!;
      d.keys += keys;
      deltas.set(bucket, d);
    };
    const now = this.nowMs();
    for (const v of versions) {
      const bucket = bucketOf(v.key);
      const vh = versionHash(v);
      const cur = held.get(v.key);
      if (!cur) {
        const h = { v, vh, storedVh: vh, inDb: false, intact: true };
        held.set(v.key, h);
        inserts.set(v.key, h);
        note(bucket, vh, 1);
        out.applied++;
        out.changed.push(v.key);
        out.written.push(v);
        continue;
      }
      const r = await (mode === "apply"
        ? this.contestApply(c, cur, v, now, losers)
        : this.contestRepair(c, cur, v, now, losers));
      if (r.duplicate) out.duplicates++;
      else out.applied++;
      if (r.conflict) out.conflicts.push(r.conflict);
      if (!r.replaced) continue;
      note(bucket, cur.storedVh, 0);
      note(bucket, vh, 0);
      const h = { v, vh, storedVh: vh, inDb: cur.inDb, intact: true };
      held.set(v.key, h);
      (cur.inDb ? updates : inserts).set(v.key, h);
      if (mode === "repair" || !cur.intact) await this.clearTampered(c, bucket, v.key);
      out.changed.push(v.key);
      out.written.push(v);
    }
    await this.insertRows(c, [...inserts.values()]);
    for (const h of updates.values()) await this.updateRow(c, h);
    await this.finish(c, deltas, losers);
    return out;
  }

  /** A stream's version against the stored one (SqliteStore.applyOne). */
  private async contestApply(
    c: Client,
    cur: Held,
    v: StoredRecord,
    now: number,
    losers: number[],
  ): Promise<Contested> {
    if (sameVersion(cur.v, v)) return { duplicate: true, replaced: false };
    const { winner, loser, incomingWins } = contest(this.rule, cur.v, v);
    // A winner changed outside the engine is not kept as a loser (SqliteStore.applyOne).
    if (incomingWins && !cur.intact) {
      // Noted with the displacement: the audit pump writes it even after a crash (types.ts).
      await this.noteAudit(c, displacedEntry(loser, winner, now));
      return {
        conflict: { key: v.key, winner, loser, rule: this.ruleText, loserDamaged: true },
        replaced: true,
      };
    }
    const kept = await this.insertLoser(c, loser, winner, now, losers);
    // A loser seen before (same version) is a re-delivery, not a new conflict.
    if (!kept) return { duplicate: true, replaced: incomingWins };
    return { conflict: { key: v.key, winner, loser, rule: this.ruleText }, replaced: incomingWins };
  }

  /** A version established as true against the stored one (SqliteStore.repair). */
  private async contestRepair(
    c: Client,
    cur: Held,
    v: StoredRecord,
    now: number,
    losers: number[],
  ): Promise<Contested> {
    const vh = versionHash(v);
    if (cur.storedVh.equals(vh) && cur.vh.equals(vh)) return { replaced: false };
    const same = sameVersion(cur.v, v);
    if (!same && !contest(this.rule, cur.v, v).incomingWins) {
      if (!(await this.insertLoser(c, v, cur.v, now, losers))) await this.healLoser(c, v);
      return { replaced: false };
    }
    if (!same && cur.intact) await this.insertLoser(c, cur.v, v, now, losers);
    // A winner changed outside the engine is not kept as a loser, and is audited as displaced.
    else if (!same) await this.noteAudit(c, displacedEntry(cur.v, v, now));
    return { replaced: true };
  }

  /** Lock the stored rows of `keys` (in key order, so two transactions never wait on each other in a cycle). */
  private async lockKeys(c: Client, keys: string[]): Promise<Map<string, Held>> {
    const buckets = keys.map(bucketOf);
    const r = await c.query<RecordRow>(
      // Exact: a key's bucket is a function of the key, so no other row matches both lists.
      `SELECT * FROM records WHERE bucket = ANY($1::int[]) AND key = ANY($2::text[])
         ORDER BY bucket, key FOR UPDATE`,
      [buckets, keys],
    );
    // Read after the lock, in a statement of its own: a scrub that noted a row tampered (and
    // corrected its hash) while this waited for the lock committed both, and a join in the
    // locking statement would see the new row with the old snapshot's notes (the review).
    const t = await c.query<{ key: string }>(
      "SELECT key FROM tampered WHERE bucket = ANY($1::int[]) AND key = ANY($2::text[])",
      [buckets, keys],
    );
    const tampered = new Set(t.rows.map((x) => x.key));
    return new Map(
      r.rows.map((row) => {
        const v = fromRow(row);
        const vh = versionHash(v);
        const intact = vh.equals(row.vh) && !tampered.has(row.key);
        return [row.key, { v, vh, storedVh: row.vh, inDb: true, intact }];
      }),
    );
  }

  private async insertRows(c: Client, rows: Held[]): Promise<void> {
    if (rows.length === 0) return;
    const cols = rows.map((h) => [bucketOf(h.v.key), ...versionColumns(h.v), h.vh] as const);
    const pick = <T>(i: number) => cols.map((x) => x[i] as T);
    // A note of the scrubber for a key not held (it was edited, then deleted by hand) is not
    // the new version's: it goes in the same statement.
    const r = await c.query(
      `WITH cleared AS (DELETE FROM tampered t USING unnest($1::int[], $2::text[]) AS u(bucket, key)
                          WHERE t.bucket = u.bucket AND t.key = u.key)
       INSERT INTO records (bucket, key, tenant, outcome, body, origin, incarnation, lsn, hlc_wall, hlc_logical, vh)
       SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                            $8::bigint[], $9::bigint[], $10::int[], $11::bytea[])
       ON CONFLICT DO NOTHING`,
      Array.from({ length: 11 }, (_, i) => pick(i)),
    );
    // Another transaction inserted one of these keys after this one looked: decide again, on its row.
    if (r.rowCount !== rows.length)
      throw new RunAgain(`${rows.length - (r.rowCount ?? 0)} keys taken meanwhile`);
  }

  private async updateRow(c: Client, h: Held): Promise<void> {
    await c.query(
      `UPDATE records SET tenant = $3, outcome = $4, body = $5, origin = $6, incarnation = $7, lsn = $8,
         hlc_wall = $9, hlc_logical = $10, vh = $11 WHERE bucket = $1 AND key = $2`,
      [bucketOf(h.v.key), ...versionColumns(h.v), h.vh],
    );
  }

  private async insertLoser(
    c: Client,
    loser: StoredRecord,
    winner: StoredRecord,
    now: number,
    losers: number[],
  ): Promise<boolean> {
    const r = await c.query<{ id: number }>(
      `INSERT INTO conflicts (id, key, tenant, outcome, body, origin, incarnation, lsn, hlc_wall, hlc_logical,
         winner_origin, winner_incarnation, winner_lsn, winner_outcome, winner_hlc_wall, winner_hlc_logical, rule, detected_at_ms, vh)
       VALUES (-nextval('conflict_tmp_ids'), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
       ON CONFLICT DO NOTHING RETURNING id`,
      [
        ...versionColumns(loser),
        winner.origin,
        winner.incarnation,
        winner.lsn,
        winner.outcome,
        winner.hlc.wallMs,
        winner.hlc.logical,
        this.ruleText,
        now,
        versionHash(loser),
      ],
    );
    if (r.rows.length === 0) return false;
    losers.push(r.rows[0]!.id);
    return true;
  }

  /**
   * Put a version established as true over its loser row when that row was changed outside the
   * engine (its content or hash differs): the row keeps its id and the winner it lost to.
   */
  private async healLoser(c: Client, v: StoredRecord): Promise<void> {
    await c.query(
      `UPDATE conflicts SET tenant = $2, outcome = $3, body = $4, hlc_wall = $8, hlc_logical = $9, vh = $10
       WHERE key = $1 AND origin = $5 AND incarnation = $6 AND lsn = $7
         AND (tenant, outcome, body, hlc_wall, hlc_logical, vh) IS DISTINCT FROM ($2, $3, $4, $8, $9, $10)`,
      [...versionColumns(v), versionHash(v)],
    );
  }

  private async clearTampered(c: Client, bucket: number, key: string): Promise<void> {
    await c.query("DELETE FROM tampered WHERE bucket = $1 AND key = $2", [bucket, key]);
  }

  /**
   * The transaction's last statements: take the next gen (and conflict ids) of digest_clock,
   * whose row lock is held to COMMIT, give the new losers their ids in that order, and XOR
   * the changes into their buckets' digests under the gen.
   */
  private async finish(
    c: Client,
    deltas: Map<number, { xor: Buffer; keys: number }>,
    losers: readonly number[],
  ): Promise<void> {
    if (deltas.size === 0 && losers.length === 0) return;
    const { gen, conflictId } = await this.tick(c, losers.length);
    if (losers.length > 0)
      await c.query(
        "UPDATE conflicts AS c SET id = u.id FROM unnest($1::bigint[], $2::bigint[]) AS u(tmp, id) WHERE c.id = u.tmp",
        [losers, losers.map((_, i) => conflictId - losers.length + 1 + i)],
      );
    if (deltas.size === 0) return;
    const buckets = [...deltas.keys()].sort((a, b) => a - b);
    const r = await c.query<{ bucket: number; digest: Buffer; keys: number }>(
      "SELECT bucket, digest, keys FROM bucket_digests WHERE bucket = ANY($1::int[])",
      [buckets],
    );
    const digests: Buffer[] = [];
    const keys: number[] = [];
    const rows = new Map(r.rows.map((x) => [x.bucket, x]));
    for (const b of buckets) {
      const row = rows.get(b)!;
      const d = deltas.get(b)!;
      const next = Buffer.from(row.digest);
      for (let i = 0; i < next.length; i++) next[i]! ^= d.xor[i]!;
      digests.push(next);
      keys.push(row.keys + d.keys);
    }
    await this.writeDigests(c, gen, buckets, digests, keys);
  }

  /** The next gen, and `conflicts` more conflict ids (the last one given back); held to COMMIT. */
  private async tick(c: Client, conflicts: number): Promise<{ gen: number; conflictId: number }> {
    const r = await c.query<{ gen: number; conflict_id: number }>(
      "UPDATE digest_clock SET gen = gen + 1, conflict_id = conflict_id + $1 WHERE id = 1 RETURNING gen, conflict_id",
      [conflicts],
    );
    return { gen: r.rows[0]!.gen, conflictId: r.rows[0]!.conflict_id };
  }

  private async nextGen(c: Client): Promise<number> {
    return (await this.tick(c, 0)).gen;
  }

  private async writeDigests(c: Client, gen: number, buckets: number[], digests: Buffer[], keys: number[]) {
    await c.query(
      `UPDATE bucket_digests AS d SET digest = u.digest, keys = u.keys, gen = $4
       FROM unnest($1::int[], $2::bytea[], $3::int[]) AS u(bucket, digest, keys) WHERE d.bucket = u.bucket`,
      [buckets, digests, keys, gen],
    );
  }

  private refreshing: Promise<void> = Promise.resolve();

  /**
   * Bring the in-memory digests up to what is committed: only the buckets changed since the
   * last look. One at a time, each after the one before: an older answer applied after a
   * newer one would put old digests back under a newer gen.
   */
  private refreshDigests(): Promise<void> {
    const next = this.refreshing.catch(() => undefined).then(() => this.refreshOnce());
    this.refreshing = next;
    return next;
  }

  private async refreshOnce(): Promise<void> {
    const r = await this.pool.query<{ bucket: number; digest: Buffer; keys: number; gen: number }>(
      "SELECT bucket, digest, keys, gen FROM bucket_digests WHERE gen > $1",
      [this.digestGen],
    );
    for (const row of r.rows) {
      this.digests.set(row.bucket, row.digest, row.keys);
      if (row.gen > this.digestGen) this.digestGen = row.gen;
    }
  }

  async digestTree(): Promise<DigestTree> {
    await this.read("read digests", () => this.refreshDigests());
    return this.treeCache.current();
  }

  async rootDigest(): Promise<string> {
    await this.read("read digests", () => this.refreshDigests());
    return this.digests.root();
  }

  async bucketVersions(buckets: readonly number[]): Promise<CheckedRecord[]> {
    const r = await this.read("read buckets", (p) =>
      p.query<RecordRow & { flagged: boolean }>(
        `SELECT r.*, t.key IS NOT NULL AS flagged FROM records r
           LEFT JOIN tampered t ON t.bucket = r.bucket AND t.key = r.key WHERE r.bucket = ANY($1::int[])
         ORDER BY r.bucket, r.key`,
        [[...buckets]],
      ),
    );
    // As SQLite lists them: bucket by bucket in the order asked, each in key order.
    const byBucket = new Map<number, CheckedRecord[]>();
    for (const row of r.rows) {
      const v = fromRow(row);
      const list = byBucket.get(row.bucket) ?? [];
      list.push({ ...v, intact: !row.flagged && row.vh.equals(versionHash(v)) });
      byBucket.set(row.bucket, list);
    }
    return buckets.flatMap((b) => byBucket.get(b) ?? []);
  }

  async scrub(fromBucket: number, count: number): Promise<number[]> {
    return this.tx("scrub", async (c) => {
      // The clock first: no digest change commits while these buckets are recomputed.
      const gen = await this.nextGen(c);
      const wanted = Array.from(
        { length: Math.min(count, bucketCount) },
        (_, i) => (fromBucket + i) % bucketCount,
      );
      const found = new Map(wanted.map((b) => [b, { digest: Buffer.alloc(16), keys: 0 }]));
      const rows = await c.query<RecordRow & { flagged: boolean }>(
        `SELECT r.*, t.key IS NOT NULL AS flagged FROM records r
           LEFT JOIN tampered t ON t.bucket = r.bucket AND t.key = r.key WHERE r.bucket = ANY($1::int[])`,
        [wanted],
      );
      for (const row of rows.rows) {
        const vh = versionHash(fromRow(row));
        if (!vh.equals(row.vh)) await this.flagTampered(c, row, vh);
        const f = found.get(row.bucket)!;
        for (let k = 0; k < vh.length; k++) f.digest[k]! ^= vh[k]!;
        f.keys++;
      }
      const stored = await c.query<{ bucket: number; digest: Buffer; keys: number }>(
        "SELECT bucket, digest, keys FROM bucket_digests WHERE bucket = ANY($1::int[])",
        [wanted],
      );
      const wrong = stored.rows
        .filter((s) => !s.digest.equals(found.get(s.bucket)!.digest) || s.keys !== found.get(s.bucket)!.keys)
        .map((s) => s.bucket)
        .sort(
          (a, b) =>
            ((a - fromBucket + bucketCount) % bucketCount) - ((b - fromBucket + bucketCount) % bucketCount),
        );
      if (wrong.length > 0)
        await this.writeDigests(
          c,
          gen,
          wrong,
          wrong.map((b) => found.get(b)!.digest),
          wrong.map((b) => found.get(b)!.keys),
        );
      return wrong;
    });
  }

  /**
   * Keep the hash a row was applied with (reconcile must not take this copy as evidence), then
   * follow the content. A row edited again keeps that hash and when it was first found.
   */
  private async flagTampered(c: Client, row: RecordRow, vh: Buffer): Promise<void> {
    await c.query(
      `INSERT INTO tampered (bucket, key, applied_vh, found_vh, found_at_ms) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (bucket, key) DO UPDATE SET found_vh = excluded.found_vh`,
      [row.bucket, row.key, row.vh, vh, this.nowMs()],
    );
    await c.query("UPDATE records SET vh = $3 WHERE bucket = $1 AND key = $2", [row.bucket, row.key, vh]);
  }

  async repair(versions: readonly StoredRecord[], audit?: { requestedBy: string }): Promise<string[]> {
    return this.tx("repair", async (c) => {
      const merged = await this.merge(c, versions, "repair");
      if (audit)
        for (const v of merged.written)
          await this.noteAudit(c, repairEntry(v, audit.requestedBy, this.ruleText));
      return merged.changed;
    });
  }

  /** An audit entry written in the transaction of the change it describes (types.ts, AuditNote). */
  private async noteAudit(c: Client, entry: AuditNote["entry"]): Promise<void> {
    await c.query("INSERT INTO audit_notes (entry) VALUES ($1)", [JSON.stringify(entry)]);
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    const r = await this.read("read a key", (p) =>
      p.query<RecordRow>("SELECT * FROM records WHERE bucket = $1 AND key = $2", [bucketOf(key), key]),
    );
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  async watermark(origin: string, incarnation: string): Promise<number> {
    const r = await this.read("read a watermark", (p) =>
      p.query<{ lsn: number }>("SELECT lsn FROM watermarks WHERE origin = $1 AND incarnation = $2", [
        origin,
        incarnation,
      ]),
    );
    return r.rows[0]?.lsn ?? 0;
  }

  async watermarks(): Promise<Watermark[]> {
    const r = await this.read("read watermarks", (p) =>
      p.query<{ origin: string; incarnation: string; lsn: number; updated_at_ms: number }>(
        'SELECT * FROM watermarks ORDER BY origin COLLATE "C", updated_at_ms',
      ),
    );
    return r.rows.map((w) => ({
      origin: w.origin,
      incarnation: w.incarnation,
      lsn: w.lsn,
      updatedAtMs: w.updated_at_ms,
    }));
  }

  async resetWatermark(origin: string, incarnation: string, lsn: number): Promise<void> {
    await this.read("set a watermark", (p) =>
      p.query(
        `INSERT INTO watermarks (origin, incarnation, lsn, updated_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (origin, incarnation) DO UPDATE SET lsn = excluded.lsn, updated_at_ms = excluded.updated_at_ms`,
        [origin, incarnation, lsn, this.nowMs()],
      ),
    );
  }

  async conflicts(options: { afterId?: number; limit?: number } = {}): Promise<ConflictRow[]> {
    const r = await this.read("read conflicts", (p) =>
      p.query<ConflictDbRow>("SELECT * FROM conflicts WHERE id > $1 ORDER BY id LIMIT $2", [
        options.afterId ?? 0,
        options.limit ?? 1000,
      ]),
    );
    const winners = await this.winnersOf([...new Set(r.rows.map((x) => x.key))]);
    return r.rows.map((row) => conflictFromRow(row, winners.get(row.key)));
  }

  async auditNotes(limit: number, afterId = 0): Promise<AuditNote[]> {
    const r = await this.read("read audit notes", (p) =>
      p.query<AuditNoteDbRow>("SELECT * FROM audit_notes WHERE id > $2 ORDER BY id LIMIT $1", [
        limit,
        afterId,
      ]),
    );
    return r.rows.map(auditNoteFromRow);
  }

  async forgetAuditNotes(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.read("forget audit notes", (p) =>
      p.query("DELETE FROM audit_notes WHERE id = ANY($1::bigint[])", [ids]),
    );
  }

  private async winnersOf(keys: string[]): Promise<Map<string, StoredRecord>> {
    if (keys.length === 0) return new Map();
    const r = await this.read("read keys", (p) =>
      p.query<RecordRow>(
        `SELECT r.* FROM records r JOIN unnest($1::int[], $2::text[]) AS k(bucket, key)
           ON r.bucket = k.bucket AND r.key = k.key`,
        [keys.map(bucketOf), keys],
      ),
    );
    return new Map(r.rows.map((row) => [row.key, fromRow(row)]));
  }

  async stats(): Promise<StoreStats> {
    const r = await this.read("count", (p) =>
      p.query<{ records: number; conflicts: number }>(
        "SELECT (SELECT count(*) FROM records) AS records, (SELECT count(*) FROM conflicts) AS conflicts",
      ),
    );
    return r.rows[0]!;
  }

  async streamVersions(
    origin: string,
    incarnation: string,
    fromLsn: number,
    toLsn: number,
    limit: number,
  ): Promise<CheckedRecord[]> {
    const args = [origin, incarnation, fromLsn, toLsn, limit];
    const [winners, losers] = await this.read("read a stream", (p) =>
      Promise.all([
        p.query<RecordRow & { flagged: boolean }>(
          `SELECT r.*, t.key IS NOT NULL AS flagged FROM records r
             LEFT JOIN tampered t ON t.bucket = r.bucket AND t.key = r.key
           WHERE r.origin = $1 AND r.incarnation = $2 AND r.lsn BETWEEN $3 AND $4 ORDER BY r.lsn LIMIT $5`,
          args,
        ),
        p.query<LoserRow>(
          "SELECT * FROM conflicts WHERE origin = $1 AND incarnation = $2 AND lsn BETWEEN $3 AND $4 ORDER BY lsn LIMIT $5",
          args,
        ),
      ]),
    );
    const byLsn = new Map<number, CheckedRecord>();
    const take = (v: CheckedRecord) => {
      const seen = byLsn.get(v.lsn);
      if (!seen || (!seen.intact && v.intact)) byLsn.set(v.lsn, v);
    };
    for (const row of winners.rows) {
      const v = fromRow(row);
      take({ ...v, intact: !row.flagged && row.vh.equals(versionHash(v)) });
    }
    for (const row of losers.rows) take({ ...fromRow(row), intact: loserIntact(row) });
    return [...byLsn.values()].sort((a, b) => a.lsn - b.lsn).slice(0, limit);
  }

  async exportPage(o: {
    origin?: string;
    after?: KeyCursor;
    limit: number;
    covered?: readonly CoveredStream[];
  }): Promise<{ versions: StoredRecord[]; next: KeyCursor | undefined }> {
    const after = o.after ?? { bucket: -1, key: "" };
    const byOrigin = o.origin === undefined ? "" : " AND origin = $4";
    const args: unknown[] = [after.bucket, after.key, o.limit, ...(o.origin === undefined ? [] : [o.origin])];
    const r = await this.read("export", (p) =>
      p.query<RecordRow & { flagged: boolean }>(
        `SELECT r.*, t.key IS NOT NULL AS flagged FROM records r
           LEFT JOIN tampered t ON t.bucket = r.bucket AND t.key = r.key
         WHERE (r.bucket > $1 OR (r.bucket = $1 AND r.key > $2))${byOrigin.replace("origin", "r.origin")}
         ORDER BY r.bucket, r.key LIMIT $3`,
        args,
      ),
    );
    const last = r.rows.at(-1);
    const held = new Map((o.covered ?? []).map((s) => [`${s.origin}/${s.incarnation}`, s.lsn]));
    // A copy changed outside the engine is never exported (the interface's comment).
    const intact = (row: RecordRow & { flagged: boolean }) =>
      !row.flagged && row.vh.equals(versionHash(fromRow(row)));
    return {
      versions: r.rows
        .filter((row) => row.lsn > (held.get(`${row.origin}/${row.incarnation}`) ?? 0) && intact(row))
        .map(fromRow),
      next: r.rows.length === o.limit && last ? { bucket: last.bucket, key: last.key } : undefined,
    };
  }

  async deleteSince(wallMs: number): Promise<RemovedStream[]> {
    return this.tx("delete since", async (c) => {
      // The streams from the rows deleted, in one statement: a row another node changes
      // meanwhile is either deleted and counted, or neither.
      const streams = await c.query<RemovedStream>(
        `WITH d AS (DELETE FROM records WHERE hlc_wall >= $1 RETURNING origin, incarnation, lsn)
         SELECT origin, incarnation, min(lsn) AS "fromLsn", count(*)::int AS removed FROM d
         GROUP BY origin, incarnation ORDER BY origin COLLATE "C", incarnation COLLATE "C"`,
        [wallMs],
      );
      // Only ever down (SqliteStore.deleteSince).
      for (const s of streams.rows)
        await c.query(
          "UPDATE watermarks SET lsn = $3, updated_at_ms = $4 WHERE origin = $1 AND incarnation = $2 AND lsn > $3",
          [s.origin, s.incarnation, s.fromLsn - 1, this.nowMs()],
        );
      await this.recomputeAll(c);
      return streams.rows;
    });
  }

  /** Every bucket digest from the records (after a bulk delete). */
  private async recomputeAll(c: Client): Promise<void> {
    const gen = await this.nextGen(c);
    const all = new BucketDigests();
    const r = await c.query<{ bucket: number; vh: Buffer }>("SELECT bucket, vh FROM records");
    for (const row of r.rows) all.xor(row.bucket, row.vh, 1);
    const buckets = Array.from({ length: bucketCount }, (_, i) => i);
    await this.writeDigests(
      c,
      gen,
      buckets,
      buckets.map((b) => Buffer.from(all.digestOf(b))),
      buckets.map((b) => all.counts[b]!),
    );
  }

  async getMeta(name: string): Promise<string | undefined> {
    const r = await this.read("read meta", (p) =>
      p.query<{ value: string }>("SELECT value FROM meta WHERE name = $1", [name]),
    );
    return r.rows[0]?.value;
  }

  async setMeta(name: string, value: string): Promise<void> {
    await this.read("write meta", (p) =>
      p.query(
        "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [name, value],
      ),
    );
  }

  async isEmpty(): Promise<boolean> {
    const r = await this.read("check whether empty", (p) =>
      p.query<{ any: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM watermarks)
           OR EXISTS (SELECT 1 FROM conflicts) AS any`,
      ),
    );
    return !r.rows[0]!.any;
  }

  /** Every commit is already durable (synchronous_commit=on). */
  async syncNow(): Promise<void> {}

  async reserveConflictIds(mark: number): Promise<void> {
    await this.read("reserve conflict ids", (p) =>
      p.query(
        // Only upwards, in one statement (the row lock orders it with every apply).
        "UPDATE digest_clock SET conflict_id = GREATEST(conflict_id, $1::bigint) WHERE id = 1",
        [mark],
      ),
    );
  }
}
