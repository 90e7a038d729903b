/** fast-check generators shared by the codec, recovery and merge tests. */
import fc from "fast-check";
import type { WalRecord } from "../../src/wal/index.js";

const text = (maxLength: number, minLength = 1) => fc.string({ unit: "grapheme", minLength, maxLength });

export const hlcArb = fc.record({
  wallMs: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  logical: fc.integer({ min: 0, max: 0xffff }),
});

/** Bodies as the WAL stores them: JSON text of any JSON value, or none. */
export const bodyJsonArb = fc.option(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  { nil: undefined },
);

export const recordFieldsArb = fc.record({
  key: text(40),
  tenant: text(20),
  outcome: fc.constantFrom("accepted", "escalated", "rejected", "✓ ok"),
  bodyJson: bodyJsonArb,
  hlc: hlcArb,
});

/** Consecutive records from `firstLsn`, as one origin would write them. */
export function recordsArb(firstLsn = 1, maxLength = 30): fc.Arbitrary<WalRecord[]> {
  return fc
    .array(recordFieldsArb, { minLength: 1, maxLength })
    .map((rs) => rs.map((r, i) => ({ ...r, lsn: firstLsn + i, flags: 0 })));
}
