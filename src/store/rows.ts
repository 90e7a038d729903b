/**
 * A stored version as both stores keep it: one row per winner in `records` (and per loser in
 * `conflicts`), with the same column names in SQLite and PostgreSQL.
 */
import type { StoredRecord } from "./types.js";

export interface RecordRow {
  bucket: number;
  vh: Buffer;
  key: string;
  tenant: string;
  outcome: string;
  body: string | null;
  origin: string;
  incarnation: string;
  lsn: number;
  hlc_wall: number;
  hlc_logical: number;
}

export function fromRow(r: Omit<RecordRow, "bucket" | "vh">): StoredRecord {
  return {
    key: r.key,
    tenant: r.tenant,
    outcome: r.outcome,
    bodyJson: r.body ?? undefined,
    origin: r.origin,
    incarnation: r.incarnation,
    lsn: r.lsn,
    hlc: { wallMs: r.hlc_wall, logical: r.hlc_logical },
  };
}

/** A version's columns in table order (key, tenant, outcome, body, origin, incarnation, lsn, hlc_wall, hlc_logical). */
export function versionColumns(v: StoredRecord): Array<string | number | null> {
  return [
    v.key,
    v.tenant,
    v.outcome,
    v.bodyJson ?? null,
    v.origin,
    v.incarnation,
    v.lsn,
    v.hlc.wallMs,
    v.hlc.logical,
  ];
}
