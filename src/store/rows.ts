/**
 * A stored version as both stores keep it: one row per winner in `records` (and per loser in
 * `conflicts`), with the same column names in SQLite and PostgreSQL.
 */
import { versionHash } from "./digest.js";
import type { AuditNote, ConflictRow, StoredRecord } from "./types.js";

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

/** A `conflicts` row's loser (`vh` as found: a hand edit may have cleared it or written anything). */
export type LoserRow = Omit<RecordRow, "bucket" | "vh"> & { vh: unknown };

/**
 * Whether a loser row still holds what the engine wrote (not changed outside it): its version
 * hash against its columns. A row without a hash was not written by the engine (the rows kept
 * before losers had one were hashed when the column was added).
 */
export function loserIntact(row: LoserRow): boolean {
  return Buffer.isBuffer(row.vh) && row.vh.equals(versionHash(fromRow(row)));
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

/** A `conflicts` row: the loser's columns, the winner at detection time, the rule and when. */
export type ConflictDbRow = RecordRow & {
  id: number;
  winner_origin: string;
  winner_incarnation: string;
  winner_lsn: number;
  winner_outcome: string;
  winner_hlc_wall: number;
  winner_hlc_logical: number;
  rule: string;
  detected_at_ms: number;
};

/** A conflict as listed: with the key's current winner when there is one (it may have changed since), else the winner at detection time. */
export function conflictFromRow(row: ConflictDbRow, current: StoredRecord | undefined): ConflictRow {
  const loser = fromRow(row);
  return {
    id: row.id,
    key: row.key,
    loser,
    winner: current ?? {
      ...loser,
      origin: row.winner_origin,
      incarnation: row.winner_incarnation,
      lsn: row.winner_lsn,
      outcome: row.winner_outcome,
      hlc: { wallMs: row.winner_hlc_wall, logical: row.winner_hlc_logical },
    },
    rule: row.rule,
    detectedAtMs: row.detected_at_ms,
  };
}

/** An `audit_notes` row: the entry as JSON. */
export interface AuditNoteDbRow {
  id: number | string;
  entry: string;
}

export function auditNoteFromRow(row: AuditNoteDbRow): AuditNote {
  return { id: Number(row.id), entry: JSON.parse(row.entry) as AuditNote["entry"] };
}

/** The audit entry of a winner changed outside the engine that a newer decision displaced (docs/FORMAT.md). */
export function displacedEntry(loser: StoredRecord, winner: StoredRecord, atMs: number): AuditNote["entry"] {
  return { kind: "tampered-displaced", key: loser.key, displaced: loser, winner, detectedAtMs: atMs };
}

/** The audit entry of a version a repair wrote (docs/FORMAT.md). */
export function repairEntry(written: StoredRecord, requestedBy: string, rule: string): AuditNote["entry"] {
  return { kind: "repair", key: written.key, requestedBy, written, rule };
}
