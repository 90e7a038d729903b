/**
 * A module of its own, without pg's types: the package's index re-exports it, and a consumer
 * without @types/pg must still type-check (test/node/package.test.ts).
 */

/**
 * Empty every table of a database crr created, keeping the schema (much faster than a new
 * database): the tests' fresh stores, and the simulator's lost store.
 */
export const emptyStoreSql = `DO $$ BEGIN IF to_regclass('records') IS NOT NULL THEN
  TRUNCATE records, watermarks, conflicts, tampered, meta, claims, nodes RESTART IDENTITY;
  UPDATE bucket_digests SET digest = '\\x00000000000000000000000000000000'::bytea, keys = 0, gen = 0 WHERE gen > 0;
  UPDATE digest_clock SET gen = 0, conflict_id = 0;
END IF;
IF to_regclass('audit_notes') IS NOT NULL THEN TRUNCATE audit_notes RESTART IDENTITY; END IF; END $$`;
