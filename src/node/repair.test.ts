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
import Database from "better-sqlite3";
import { createLogger } from "../log.js";
import { SqliteStore } from "../store/index.js";
import { Wal } from "../wal/index.js";
import { repairBodySchema } from "./http/routes-peer.js";
import { Region } from "./region.js";
import { restoreOwnFromWal, walRecords } from "./repair.js";

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

/**
 * Three own records a, b, c in the WAL and the store; an operator deletes "b" by hand, then an
 * older version of "b" from a peer arrives and wins (simulator seed 315).
 */
async function ownDeletedThenBeaten() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-restore-own-"));
  const wal = await Wal.open({ dir: path.join(dir, "wal"), region: "us-east-1" });
  const file = path.join(dir, "store.sqlite");
  const store = new SqliteStore({ path: file, rule: { kind: "first-write-wins" } });
  const acks = await wal.appendBatch([
    { key: "a", tenant: "t", outcome: "approve" },
    { key: "b", tenant: "t", outcome: "approve" },
    { key: "c", tenant: "t", outcome: "approve" },
  ]);
  const records = (await walRecords({ name: "us-east-1", wal } as unknown as Region, [1, 2, 3])).map((r) => ({
    ...r,
    flags: 0,
  }));
  await store.applyLocal({
    origin: "us-east-1",
    incarnation: wal.incarnation,
    firstLsn: 1,
    lastLsn: 3,
    records,
  });
  // An operator deletes "b" by hand; then an older version of "b" from a peer arrives and wins.
  const db = new Database(file);
  db.prepare("DELETE FROM records WHERE key = 'b'").run();
  db.close();
  const older = {
    ...records[1]!,
    outcome: "deny",
    lsn: 1,
    hlc: { wallMs: acks[0]!.hlc.wallMs - 1_000, logical: 0 },
  };
  await store.applyBatch({
    origin: "eu-west-1",
    incarnation: "e".repeat(32),
    firstLsn: 1,
    lastLsn: 1,
    records: [older],
  });
  expect(await store.streamVersions("us-east-1", wal.incarnation, 1, 3, 10)).toHaveLength(2);
  return { dir, wal, store };
}

describe("restoreOwnFromWal (crr verify)", () => {
  it("puts back an own record deleted by hand, as a loser when another version won since (simulator seed 315)", async () => {
    const { dir, wal, store } = await ownDeletedThenBeaten();
    try {
      const audited: unknown[] = [];
      const region = {
        name: "us-east-1",
        wal,
        store,
        log: createLogger({ level: "silent" }),
        auditPump: { record: async (e: unknown) => void audited.push(e), pump: async () => undefined },
      } as unknown as Region;
      await restoreOwnFromWal(region);
      const held = await store.streamVersions("us-east-1", wal.incarnation, 1, 3, 10);
      expect(held.map((v) => [v.key, v.lsn, v.outcome])).toEqual([
        ["a", 1, "approve"],
        ["b", 2, "approve"],
        ["c", 3, "approve"],
      ]);
      // The peer's older version stays the winner; ours is kept as its loser.
      expect(await store.get("b")).toMatchObject({ origin: "eu-west-1", outcome: "deny" });
      expect((await store.conflicts()).map((c) => [c.loser.key, c.loser.origin])).toEqual([
        ["b", "us-east-1"],
      ]);
      // Nothing missing: nothing written again.
      await restoreOwnFromWal(region);
      expect(await store.conflicts()).toHaveLength(1);
    } finally {
      await store.close();
      await wal.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("restoreOwnFromWal and an edited loser", () => {
  it("puts an own record back over its loser row when that row was edited by hand (its LSN was held, but not intact)", async () => {
    const { dir, wal, store } = await ownDeletedThenBeaten();
    try {
      const region = {
        name: "us-east-1",
        wal,
        store,
        log: createLogger({ level: "silent" }),
        auditPump: { record: async () => undefined, pump: async () => undefined },
      } as unknown as Region;
      await restoreOwnFromWal(region); // "b" is back, as a loser
      const db = new Database(path.join(dir, "store.sqlite"));
      db.prepare("UPDATE conflicts SET outcome = 'edited by hand' WHERE key = 'b'").run();
      db.close();
      expect((await store.streamVersions("us-east-1", wal.incarnation, 2, 2, 1))[0]).toMatchObject({
        outcome: "edited by hand",
        intact: false,
      });
      expect((await restoreOwnFromWal(region)).restored).toBe(1);
      expect((await store.streamVersions("us-east-1", wal.incarnation, 2, 2, 1))[0]).toMatchObject({
        outcome: "approve",
        intact: true,
      });
      expect(await store.conflicts()).toHaveLength(1); // the same row, put back
      expect((await restoreOwnFromWal(region)).restored).toBe(0);
    } finally {
      await store.close();
      await wal.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Region.verify", () => {
  it("with a full scrub puts back own records from the WAL before it compares (the call, not only the helper)", async () => {
    const { dir, wal, store } = await ownDeletedThenBeaten();
    try {
      const region = Object.assign(Object.create(Region.prototype) as Region, {
        name: "us-east-1",
        wal,
        store,
        log: createLogger({ level: "silent" }),
        auditPump: { record: async () => undefined, pump: async () => undefined },
        links: new Map(),
        policy: { accepts: () => true },
        runtime: { soon: (fn: () => void) => void setImmediate(fn) },
        divergence: { scan: async () => ({ findings: [], errors: [] }) },
      });
      const report = await region.verify({ fullScrub: true });
      expect(report.restored).toEqual({ fromWal: 1, fromPeers: 0 });
      expect((await store.conflicts()).map((c) => [c.loser.key, c.loser.origin])).toEqual([
        ["b", "us-east-1"],
      ]);
    } finally {
      await store.close();
      await wal.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
