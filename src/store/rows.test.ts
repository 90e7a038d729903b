/**
 * A conflict as listed (rows.ts): with the key's current winner when the store has one, else
 * the winner the row recorded when the conflict was detected (the key's row may be gone since).
 */
import { describe, expect, it } from "vitest";
import { conflictFromRow, type ConflictDbRow } from "./rows.js";

const row: ConflictDbRow = {
  id: 4,
  bucket: 0,
  vh: Buffer.alloc(16),
  key: "k",
  tenant: "t",
  outcome: "deny",
  body: '{"a":1}',
  origin: "us-east-1",
  incarnation: "11".repeat(16),
  lsn: 9,
  hlc_wall: 2000,
  hlc_logical: 1,
  winner_origin: "eu-west-1",
  winner_incarnation: "22".repeat(16),
  winner_lsn: 3,
  winner_outcome: "approve",
  winner_hlc_wall: 1000,
  winner_hlc_logical: 2,
  rule: "first-write-wins",
  detected_at_ms: 5000,
};

describe("conflictFromRow", () => {
  it("without a current winner: the winner recorded at detection (its identity, outcome and stamp)", () => {
    const listed = conflictFromRow(row, undefined);
    // The row keeps no body or tenant of the winner: only what identifies and orders it.
    expect(listed.winner).toMatchObject({
      key: "k",
      origin: "eu-west-1",
      incarnation: "22".repeat(16),
      lsn: 3,
      outcome: "approve",
      hlc: { wallMs: 1000, logical: 2 },
    });
    expect({ ...listed, winner: undefined }).toEqual({
      id: 4,
      key: "k",
      rule: "first-write-wins",
      detectedAtMs: 5000,
      loser: {
        key: "k",
        tenant: "t",
        outcome: "deny",
        bodyJson: '{"a":1}',
        origin: "us-east-1",
        incarnation: "11".repeat(16),
        lsn: 9,
        hlc: { wallMs: 2000, logical: 1 },
      },
      winner: undefined,
    });
  });

  it("with a current winner: that one, whatever the row recorded", () => {
    const current = { ...conflictFromRow(row, undefined).winner, lsn: 77 };
    expect(conflictFromRow(row, current).winner).toBe(current);
  });
});
