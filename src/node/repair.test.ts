/**
 * Records read back from a region's own WAL are versions a peer's repair route takes: the
 * frame's own fields (its batch flags) are not sent on. Before, `crr reconcile --apply`
 * could not write a version it had established from the origin's WAL into a peer (400,
 * "must NOT have additional properties"; found by the simulator, several nodes per region).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Wal } from "../wal/index.js";
import { repairBodySchema } from "./http/routes-peer.js";
import type { Region } from "./region.js";
import { walRecords } from "./repair.js";

describe("walRecords", () => {
  it("gives stored records with only the fields a repair carries", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-repair-"));
    const wal = await Wal.open({ dir, region: "us-east-1" });
    try {
      await wal.appendBatch([
        { key: "a", tenant: "t", outcome: "approve", body: { n: 1 } },
        { key: "b", tenant: "t", outcome: "deny" },
      ]);
      const region = { name: "us-east-1", wal } as unknown as Region;
      const records = await walRecords(region, [1, 2, 3]);
      expect(records.map((r) => [r.key, r.lsn, r.origin, r.incarnation])).toEqual([
        ["a", 1, "us-east-1", wal.incarnation],
        ["b", 2, "us-east-1", wal.incarnation],
      ]);
      const allowed = Object.keys(repairBodySchema.properties.versions.items.properties);
      for (const r of records) for (const field of Object.keys(r)) expect(allowed).toContain(field);
    } finally {
      await wal.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
