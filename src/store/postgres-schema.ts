/**
 * The PostgreSQL store's schema and its migrations. crr creates and migrates it itself: a
 * `crr_schema` table holds the version, and each step runs in one transaction under an
 * advisory lock, so several nodes of a region starting at once migrate it once.
 *
 * Portable on purpose (it runs on PostgreSQL 12+, and its statements avoid what Citus,
 * YugabyteDB or CockroachDB lack: no triggers, no stored procedures, no XOR on bytea):
 * the merge rule and the digest arithmetic run in crr, on rows locked FOR UPDATE.
 */
import type pg from "pg";
import { bucketCount, versionHash } from "./digest.js";
import { fromRow, type LoserRow } from "./rows.js";

/** A step: SQL, or a function run in the migration's transaction (for what SQL cannot compute). */
type Step = string | ((client: pg.PoolClient) => Promise<void>);

/** Keys compare byte by byte (COLLATE "C"), as SQLite's BINARY does: export pages resume in one order. */
const steps: readonly Step[] = [
  `
  CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE records (
    bucket INTEGER NOT NULL, key TEXT COLLATE "C" NOT NULL, tenant TEXT NOT NULL, outcome TEXT NOT NULL,
    body TEXT, origin TEXT NOT NULL, incarnation TEXT NOT NULL, lsn BIGINT NOT NULL,
    hlc_wall BIGINT NOT NULL, hlc_logical INTEGER NOT NULL, vh BYTEA NOT NULL,
    PRIMARY KEY (bucket, key)
  );
  CREATE INDEX records_by_stream ON records (origin, incarnation, lsn);
  CREATE TABLE watermarks (
    origin TEXT NOT NULL, incarnation TEXT NOT NULL, lsn BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (origin, incarnation)
  );
  -- Conflict ids are given out in commit order (the audit pump pages by id): a loser is
  -- inserted under a temporary negative id, renumbered from digest_clock.conflict_id, whose
  -- row lock is held to COMMIT, before the transaction commits.
  CREATE SEQUENCE conflict_tmp_ids;
  CREATE TABLE conflicts (
    id BIGINT PRIMARY KEY,
    key TEXT COLLATE "C" NOT NULL, tenant TEXT NOT NULL, outcome TEXT NOT NULL, body TEXT,
    origin TEXT NOT NULL, incarnation TEXT NOT NULL, lsn BIGINT NOT NULL,
    hlc_wall BIGINT NOT NULL, hlc_logical INTEGER NOT NULL,
    winner_origin TEXT NOT NULL, winner_incarnation TEXT NOT NULL, winner_lsn BIGINT NOT NULL,
    winner_outcome TEXT NOT NULL, winner_hlc_wall BIGINT NOT NULL, winner_hlc_logical INTEGER NOT NULL,
    rule TEXT NOT NULL, detected_at_ms BIGINT NOT NULL,
    UNIQUE (key, origin, incarnation, lsn)
  );
  CREATE INDEX conflicts_by_stream ON conflicts (origin, incarnation, lsn);
  CREATE TABLE tampered (
    bucket INTEGER NOT NULL, key TEXT COLLATE "C" NOT NULL, applied_vh BYTEA NOT NULL, found_vh BYTEA NOT NULL,
    found_at_ms BIGINT NOT NULL, PRIMARY KEY (bucket, key)
  );
  -- One row per bucket: the XOR of its winners' version hashes and its key count, changed in
  -- the transaction that changes the bucket. gen orders the changes (digest_clock below).
  CREATE TABLE bucket_digests (
    bucket INTEGER PRIMARY KEY, digest BYTEA NOT NULL, keys INTEGER NOT NULL, gen BIGINT NOT NULL
  );
  CREATE INDEX bucket_digests_by_gen ON bucket_digests (gen);
  INSERT INTO bucket_digests (bucket, digest, keys, gen)
    SELECT b, '\\x00000000000000000000000000000000'::bytea, 0, 0 FROM generate_series(0, ${bucketCount - 1}) AS b;
  -- Every transaction that changes digests takes the next gen here and holds the row lock to
  -- its commit: gens commit in order, so a reader that saw gen G has every change up to G.
  CREATE TABLE digest_clock (
    id INTEGER PRIMARY KEY CHECK (id = 1), gen BIGINT NOT NULL, conflict_id BIGINT NOT NULL
  );
  INSERT INTO digest_clock (id, gen, conflict_id) VALUES (1, 0, 0);
  `,
  // Several nodes of one region (ARCHITECTURE.md, "Several nodes in one region").
  `
  CREATE TABLE nodes (
    incarnation TEXT PRIMARY KEY, node_id TEXT NOT NULL, boot TEXT NOT NULL,
    joined_at_ms BIGINT NOT NULL, seen_at_ms BIGINT NOT NULL, left_at_ms BIGINT
  );
  -- A key being appended by one node: only the node that inserted the row appends it.
  CREATE TABLE claims (key TEXT COLLATE "C" PRIMARY KEY, incarnation TEXT NOT NULL, claimed_at_ms BIGINT NOT NULL);
  CREATE INDEX claims_by_incarnation ON claims (incarnation);
  `,
  // The append attempt that inserted a claim, and the last one that took it: a claim whose
  // answer was lost (the connection cut after the commit) is ended only if that attempt both
  // made it and was the last to take it (a delete delayed on the network must not end a
  // claim a later append of the node re-took).
  `
  ALTER TABLE claims ADD COLUMN attempt TEXT, ADD COLUMN taken_by TEXT;
  `,
  // The boot at which the node's WAL was last replayed into this store, and when (the
  // database's clock): after a lost or restored store, a node waits for each fellow it
  // remembers to have replayed its WAL again before it admits appends (ARCHITECTURE.md, "A
  // store that forgot").
  `
  ALTER TABLE nodes ADD COLUMN replayed_boot TEXT, ADD COLUMN replayed_at_ms BIGINT;
  `,
  // A conflict loser's version hash, written with the row: a loser changed outside the engine
  // is no longer taken as evidence. The rows kept before are hashed as they are now (trusted,
  // as they were); from here on a row without a hash is not intact.
  hashLosers,
  // Audit entries written in the transaction of the change they describe (a displaced damaged
  // winner, an audited repair), until the audit pump has appended them.
  `
  CREATE TABLE audit_notes (id BIGSERIAL PRIMARY KEY, entry TEXT NOT NULL);
  `,
];

async function hashLosers(client: pg.PoolClient): Promise<void> {
  await client.query("ALTER TABLE conflicts ADD COLUMN vh BYTEA");
  for (let after = Number.MIN_SAFE_INTEGER; ;) {
    const r = await client.query<LoserRow & { id: number }>(
      "SELECT * FROM conflicts WHERE id > $1 ORDER BY id LIMIT 1000",
      [after],
    );
    if (r.rows.length === 0) return;
    await client.query(
      "UPDATE conflicts AS c SET vh = u.vh FROM unnest($1::bigint[], $2::bytea[]) AS u(id, vh) WHERE c.id = u.id",
      [r.rows.map((row) => row.id), r.rows.map((row) => versionHash(fromRow(row)))],
    );
    after = r.rows.at(-1)!.id;
  }
}

export const schemaVersion = steps.length;

/** Create the schema, or bring an older one up to this build's version. */
export async function migrate(client: pg.PoolClient): Promise<void> {
  await client.query("BEGIN");
  try {
    // One migrator at a time across every node sharing the database (released at COMMIT).
    await client.query("SELECT pg_advisory_xact_lock(7243001)");
    await client.query("CREATE TABLE IF NOT EXISTS crr_schema (version INTEGER NOT NULL)");
    const r = await client.query<{ version: number }>("SELECT version FROM crr_schema");
    const version = r.rows[0]?.version ?? 0;
    if (version > schemaVersion)
      throw new Error(`schema version ${version} is newer than this build's ${schemaVersion}`);
    for (let v = version; v < schemaVersion; v++) {
      const step = steps[v]!;
      if (typeof step === "string") await client.query(step);
      else await step(client);
    }
    if (r.rows.length === 0)
      await client.query("INSERT INTO crr_schema (version) VALUES ($1)", [schemaVersion]);
    else await client.query("UPDATE crr_schema SET version = $1", [schemaVersion]);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}
