/**
 * What only the SQLite store does: digests kept in memory survive a clean close and are
 * rebuilt after a crash. The contract both stores keep is test/store/store-contract.test.ts.
 */
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SqliteStore, bucketCount, bucketOf } from "../../src/store/index.js";
import { nodeFileOps, type FileOps } from "../../src/util/file-ops.js";
import type { WalRecord } from "../../src/wal/index.js";
import { tempDir } from "../support/tmp.js";

const rule = { kind: "first-write-wins" } as const;
const incarnation = "11".repeat(16);
const records = (from: number, n: number, keyOf = (i: number) => `key-${i}`): WalRecord[] =>
  Array.from({ length: n }, (_, i) => ({
    key: keyOf(from + i),
    tenant: "t",
    outcome: i % 2 ? "accepted" : "rejected",
    bodyJson: `{"i":${i}}`,
    lsn: from + i,
    hlc: { wallMs: 1000 + from + i, logical: 0 },
    flags: 0,
  }));

describe("SqliteStore", () => {
  it("syncs every commit it makes durable, the first after opening included", async () => {
    // SQLite runs `PRAGMA synchronous` when it compiles it: a prepared one run again did
    // nothing the first time, so the first synced commit of a store was not synced.
    const seen: Array<boolean | string> = [];
    let s: SqliteStore | undefined = undefined;
    s = new SqliteStore({
      path: path.join(tempDir(), "store.sqlite"),
      rule,
      onSyncedCommit: () => seen.push(s?.commitsSynced() ?? "while opening"),
    });
    await s.setMeta("first", "1");
    await s.applyBatch({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 3, records: records(1, 3) });
    expect(s.commitsSynced()).toBe(false); // back after the batch, not only after setMeta
    await s.setMeta("second", "2");
    expect(seen.filter((x) => x !== "while opening")).toEqual([true, true, true]);
    // And back to NORMAL for the region's own records (the inbox WAL holds them durably).
    expect(s.commitsSynced()).toBe(false);
    await s.close();
  });

  it("a file store answers a peer's batch after an fdatasync of its -wal (group commit), its commits not synced one by one", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const synced: string[] = [];
    const opened = new Map<number, string>();
    const fileOps: FileOps = {
      ...nodeFileOps,
      open: async (f, flags) => {
        const fd = await nodeFileOps.open(f, flags);
        opened.set(fd, f);
        return fd;
      },
      fdatasync: async (fd) => {
        synced.push(path.basename(opened.get(fd) ?? "?"));
        return nodeFileOps.fdatasync(fd);
      },
    };
    const s = new SqliteStore({ path: file, rule, fileOps, checkpointer: false });
    await s.applyBatch({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 3, records: records(1, 3) });
    expect(synced).toContain("store.sqlite-wal");
    expect(s.commitsSynced()).toBe(false);
    await s.close();
  });

  it("opens a store of schema version 2 (losers without a version hash): the rows kept are hashed as they are, and new ones as written", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const a = new SqliteStore({ path: file, rule });
    a.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 10, records: records(1, 10) });
    const earlier = records(1, 2).map((r, i) => ({ ...r, hlc: { wallMs: 10 + i, logical: 0 } }));
    a.applySync({ origin: "eu-west-1", incarnation, firstLsn: 1, lastLsn: 2, records: earlier });
    await a.close();
    // What version 2 left: no vh column in conflicts, its version number in meta.
    const db = new Database(file);
    db.exec("ALTER TABLE conflicts DROP COLUMN vh");
    db.exec("UPDATE meta SET value = '2' WHERE name = 'schema_version'");
    db.close();

    const b = new SqliteStore({ path: file, rule });
    const losers = await b.streamVersions("us-east-1", incarnation, 1, 2, 10);
    expect(losers.map((v) => [v.lsn, v.intact])).toEqual([
      [1, true],
      [2, true],
    ]);
    b.applySync({
      origin: "eu-west-1",
      incarnation: "22".repeat(16),
      firstLsn: 1,
      lastLsn: 1,
      records: records(3, 1).map((r) => ({ ...r, lsn: 1, hlc: { wallMs: 5, logical: 0 } })),
    });
    await b.close();
    const check = new Database(file, { readonly: true });
    expect(check.prepare("SELECT value FROM meta WHERE name = 'schema_version'").pluck().get()).toBe("3");
    const hashed = check.prepare("SELECT lsn, vh IS NOT NULL AS hashed FROM conflicts ORDER BY id").all();
    check.close();
    expect(hashed).toEqual([
      { lsn: 1, hashed: 1 },
      { lsn: 2, hashed: 1 },
      { lsn: 3, hashed: 1 },
    ]);
  });

  it("refuses a store of a newer schema than this build's, naming the file, and leaves it as it was", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const a = new SqliteStore({ path: file, rule });
    await a.close();
    const db = new Database(file);
    db.exec("UPDATE meta SET value = '99' WHERE name = 'schema_version'");
    db.close();
    expect(() => new SqliteStore({ path: file, rule })).toThrow(
      new RegExp(`store ${file}: open failed: schema version 99 is newer than this build's 3`),
    );
    const check = new Database(file, { readonly: true });
    expect(check.prepare("SELECT value FROM meta WHERE name = 'schema_version'").pluck().get()).toBe("99");
    check.close();
  });

  it("without digests: no tree or root to give, and a scrub has nothing to compare", async () => {
    const s = new SqliteStore({ path: path.join(tempDir(), "store.sqlite"), rule, digests: false });
    s.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 5, records: records(1, 5) });
    await expect(s.rootDigest()).rejects.toThrow("opened without digests");
    await expect(s.digestTree()).rejects.toThrow("opened without digests");
    expect(await s.scrub(0, 65_536)).toEqual([]);
    expect(await s.get("key-3")).toMatchObject({ lsn: 3 });
    // A rebuild --since has no digests to recompute either.
    const since = (await s.get("key-4"))!.hlc.wallMs;
    expect(await s.deleteSince(since)).toEqual([
      { origin: "us-east-1", incarnation, fromLsn: 4, removed: 2 },
    ]);
    expect(await s.watermark("us-east-1", incarnation)).toBe(3);
    await s.close();
  });

  it("lists conflicts a page at a time: 1,000 by default, after an id", async () => {
    const s = new SqliteStore({ path: path.join(tempDir(), "store.sqlite"), rule });
    s.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 1001, records: records(1, 1001) });
    const earlier = records(1, 1001).map((r) => ({ ...r, hlc: { wallMs: 1, logical: r.lsn } }));
    s.applySync({ origin: "eu-west-1", incarnation, firstLsn: 1, lastLsn: 1001, records: earlier });
    const first = await s.conflicts();
    expect(first).toHaveLength(1000);
    const rest = await s.conflicts({ afterId: first.at(-1)!.id });
    expect(rest.map((c) => c.loser.lsn)).toEqual([1001]);
    expect((await s.conflicts({ limit: 2 })).map((c) => c.id)).toEqual(first.slice(0, 2).map((c) => c.id));
    await s.close();
  });

  it("says what it is, whether it is open; closing twice is closing once", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const s = new SqliteStore({ path: file, rule });
    expect(s.description).toBe(`SQLite ${file}`);
    expect(s.isOpen).toBe(true);
    await s.close();
    expect(s.isOpen).toBe(false);
    await s.close();
    const abandoned = new SqliteStore({ path: file, rule, checkpointer: false });
    abandoned.abandon();
    expect(abandoned.isOpen).toBe(false);
    abandoned.abandon();
  });

  it("in memory (the tests' and tools' store): no -wal to sync, no checkpointer; applies, reads and closes", async () => {
    const s = new SqliteStore({ path: ":memory:", rule });
    const r = await s.applyBatch({
      origin: "us-east-1",
      incarnation,
      firstLsn: 1,
      lastLsn: 3,
      records: records(1, 3),
    });
    expect(r).toMatchObject({ status: "applied", applied: 3 });
    expect(await s.watermark("us-east-1", incarnation)).toBe(3);
    await s.syncNow();
    expect(Number(await s.getMeta("synced_at"))).toBeGreaterThan(0);
    await s.close();
    expect(s.isOpen).toBe(false);
  });

  it("a full checkpoint empties the -wal, and says so when a reader keeps it from finishing", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const s = new SqliteStore({ path: file, rule, checkpointer: false });
    s.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 50, records: records(1, 50) });
    expect(fs.statSync(`${file}-wal`).size).toBeGreaterThan(0);
    s.checkpointFully();
    expect(fs.statSync(`${file}-wal`).size).toBe(0);
    s.applySync({ origin: "us-east-1", incarnation, firstLsn: 51, lastLsn: 60, records: records(51, 10) });
    const reader = new Database(file, { readonly: true });
    reader.prepare("BEGIN").run();
    reader.prepare("SELECT count(*) FROM records").get(); // holds a snapshot of the -wal
    expect(() => s.checkpointFully()).toThrow(`${file}: the checkpoint did not finish`);
    reader.prepare("COMMIT").run();
    reader.close();
    s.checkpointFully();
    expect(fs.statSync(`${file}-wal`).size).toBe(0);
    await s.close();
  });

  it("a store that cannot be opened (no such directory) is a StoreError naming the file, and nothing is created", () => {
    const dir = path.join(tempDir(), "missing");
    const file = path.join(dir, "store.sqlite");
    expect(() => new SqliteStore({ path: file, rule, checkpointer: false })).toThrow(
      new RegExp(`store ${file}: open failed`),
    );
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("a clean close leaves its digests saved as clean; while open they are marked stale", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const s = new SqliteStore({ path: file, rule });
    s.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 5, records: records(1, 5) });
    const clean = () => {
      const db = new Database(file, { readonly: true });
      try {
        return db.prepare("SELECT clean FROM digest_snapshot WHERE id = 1").pluck().get();
      } finally {
        db.close();
      }
    };
    expect(clean()).toBe(0);
    await s.close();
    expect(clean()).toBe(1);
  });

  it("a displaced damaged winner's note is committed with the displacement: a crash before the audit keeps it", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const s = new SqliteStore({ path: file, rule });
    s.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 3, records: records(1, 3) });
    const edit = new Database(file);
    edit.prepare("UPDATE records SET outcome = 'edited by hand' WHERE key = 'key-2'").run();
    edit.close();
    const earlier = records(2, 1).map((r) => ({ ...r, lsn: 1, hlc: { wallMs: 1, logical: 0 } }));
    await s.applyBatch({ origin: "eu-west-1", incarnation, firstLsn: 1, lastLsn: 1, records: earlier });
    s.abandon(); // killed before the audit pump ran
    const again = new SqliteStore({ path: file, rule });
    expect((await again.auditNotes(10)).map((n) => n.entry)).toMatchObject([
      {
        kind: "tampered-displaced",
        key: "key-2",
        displaced: { outcome: "edited by hand" },
        winner: { origin: "eu-west-1" },
      },
    ]);
    await again.close();
  });

  it("a winner whose stored hash was overwritten by hand with text is noted by the scrub, which goes on to note the others (found by review)", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const s = new SqliteStore({ path: file, rule, checkpointer: false });
    await s.applyBatch({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 3, records: records(1, 3) });
    const db = new Database(file);
    db.prepare("UPDATE records SET vh = 'x' WHERE key = 'key-1'").run();
    db.prepare("UPDATE records SET outcome = 'edited by hand' WHERE key = 'key-2'").run();
    db.close();
    // key-1's content is as applied (its bucket's digest is right); key-2's is not.
    expect(await s.scrub(0, bucketCount)).toEqual([bucketOf("key-2")]);
    const versions = await s.streamVersions("us-east-1", incarnation, 1, 3, 3);
    expect(versions.map((v) => [v.key, v.intact])).toEqual([
      ["key-1", false],
      ["key-2", false],
      ["key-3", true],
    ]);
    await s.close();
  });

  it("keeps digests across a clean close and rebuilds them after a crash (an unclosed handle)", async () => {
    const file = path.join(tempDir(), "store.sqlite");
    const a = new SqliteStore({ path: file, rule });
    a.applySync({ origin: "us-east-1", incarnation, firstLsn: 1, lastLsn: 500, records: records(1, 500) });
    // A second origin overwrites some keys with earlier versions (they win).
    const earlier = records(1, 50).map((r, i) => ({ ...r, hlc: { wallMs: 10 + i, logical: 0 } }));
    a.applySync({ origin: "eu-west-1", incarnation, firstLsn: 1, lastLsn: 50, records: earlier });
    const root = await a.rootDigest();
    expect((await a.stats()).conflicts).toBe(50);
    await a.close();

    const b = new SqliteStore({ path: file, rule });
    expect(await b.rootDigest()).toBe(root); // from the clean snapshot
    b.applySync({
      origin: "us-east-1",
      incarnation,
      firstLsn: 501,
      lastLsn: 600,
      records: records(501, 100),
    });
    const after = await b.rootDigest();
    // "Crash": b is never closed; a new handle must not trust the stale snapshot.
    const c = new SqliteStore({ path: file, rule });
    expect(await c.rootDigest()).toBe(after);
    expect(after).not.toBe(root);
    await c.close();
  });
});
