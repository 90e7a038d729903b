/**
 * What only the PostgreSQL store must get right, because other transactions run beside it
 * (another node of the region, a reader, a lost connection). Each case was found by review
 * and fails on the code before its fix. Timing is made by locks held on purpose and waited
 * for in pg_stat_activity, never by sleeping.
 */
import pg from "pg";
import { afterEach, describe, expect, inject, it } from "vitest";
import { bucketOf, PostgresStore, type ApplyBatchInput, type MergeRule } from "../../src/store/index.js";
import { versionHash } from "../../src/store/pure.js";
import { freshDatabase } from "../support/postgres.js";
import { waitFor } from "../support/tmp.js";

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close().catch(() => undefined);
});

async function storeOn(url: string, rule: MergeRule): Promise<PostgresStore> {
  const s = await PostgresStore.open({ url, rule, poolSize: 4 });
  open.push(s);
  return s;
}

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  open.push({ close: () => c.end() });
  return c;
}

/**
 * Until `count` backends of this database wait for a lock in a statement matching `like`;
 * their pids. Asked on a connection of its own: inside a transaction pg_stat_activity
 * stays as it was when first read.
 */
async function lockWaiters(url: string, like: string, count = 1): Promise<number[]> {
  const watch = await client(url);
  return waitFor(async () => {
    const r = await watch.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
         AND query LIKE $1`,
      [like],
    );
    return r.rows.length >= count ? r.rows.map((x) => x.pid) : undefined;
  }, `${count} backend(s) waiting on a lock in '${like}'`);
}

/** A record of node "a"'s own stream (applyLocal). */
const rec = (key: string, lsn: number) => ({
  key,
  tenant: "t",
  outcome: "a",
  bodyJson: undefined,
  lsn,
  hlc: { wallMs: 100 + lsn, logical: 0 },
  flags: 0,
});

const one = (origin: string, key: string, lsn: number, wallMs: number): ApplyBatchInput => ({
  origin,
  incarnation: "i",
  firstLsn: lsn,
  lastLsn: lsn,
  records: [
    { key, tenant: "t", outcome: origin, bodyJson: undefined, lsn, hlc: { wallMs, logical: 0 }, flags: 0 },
  ],
});

describe("PostgresStore beside other transactions", () => {
  it("a hand-edited winner that a scrub noted while an apply waited for its row is still not kept as a loser (the review)", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    await store.applyBatch(one("a", "k", 1, 100));
    await admin.query("UPDATE records SET outcome = 'edited by hand' WHERE key = 'k'");
    // A scrub notes the edit and corrects the row's hash, and has not committed yet.
    const edited = {
      key: "k",
      tenant: "t",
      outcome: "edited by hand",
      bodyJson: undefined,
      origin: "a",
      incarnation: "i",
      lsn: 1,
      hlc: { wallMs: 100, logical: 0 },
    };
    await admin.query("BEGIN");
    await admin.query(
      "INSERT INTO tampered (bucket, key, applied_vh, found_vh, found_at_ms) SELECT bucket, key, vh, $1, 0 FROM records WHERE key = 'k'",
      [versionHash(edited)],
    );
    await admin.query("UPDATE records SET vh = $1 WHERE key = 'k'", [versionHash(edited)]);
    // An earlier decision of "k" (it wins: first write) waits for the row, then the scrub commits.
    const apply = store.applyBatch(one("b", "k", 1, 50));
    await lockWaiters(url, "SELECT * FROM records%");
    await admin.query("COMMIT");
    const r = await apply;
    expect(r.status === "applied" && r.conflicts).toEqual([
      expect.objectContaining({ key: "k", loserDamaged: true }),
    ]);
    expect(await store.conflicts()).toEqual([]);
    expect((await store.streamVersions("b", "i", 1, 1, 1))[0]).toMatchObject({ key: "k", intact: true });
  });

  it("a database of schema step 4 (losers without a version hash): the rows kept are hashed as they are when step 5 runs", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const a = await storeOn(url, { kind: "first-write-wins" });
    const sent = one("us-east-1", "k1", 1, 2000);
    await a.applyBatch(sent);
    await a.applyBatch(one("eu-west-1", "k1", 1, 1000)); // earlier: us-east-1's version loses
    await a.close();
    const c = await client(url);
    // What step 4 left: no loser hashes, and none of the later steps' tables.
    await c.query("ALTER TABLE conflicts DROP COLUMN vh");
    await c.query("DROP TABLE audit_notes");
    await c.query("UPDATE crr_schema SET version = 4");

    const b = await storeOn(url, { kind: "first-write-wins" });
    expect((await c.query("SELECT version FROM crr_schema")).rows).toEqual([{ version: 6 }]);
    expect(await b.auditNotes(10)).toEqual([]); // step 6 made the table
    const [loser] = await b.streamVersions("us-east-1", "i", 1, 1, 10);
    expect(loser).toMatchObject({ key: "k1", outcome: "us-east-1", intact: true });
    const rows = await c.query<{ vh: Buffer }>("SELECT vh FROM conflicts");
    const applied = { ...sent.records[0]!, origin: sent.origin, incarnation: sent.incarnation };
    expect(rows.rows.map((r) => r.vh.equals(versionHash(applied)))).toEqual([true]);
  });

  it("numbers conflicts in commit order: a reader paging by id (the audit pump) misses none", async () => {
    // Before: ids came from a sequence at insert time; a big batch took low ids and committed
    // after a small one's higher id was read, and the pump's mark had moved past them.
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    const recs = (origin: string, keys: string[], wallMs: number) =>
      keys.map((key, i) => ({
        key,
        tenant: "t",
        outcome: origin,
        bodyJson: undefined,
        lsn: i + 1,
        hlc: { wallMs, logical: 0 },
        flags: 0,
      }));
    const big = Array.from({ length: 50 }, (_, i) => `big-${i}`);
    await store.applyBatch({
      origin: "a",
      incarnation: "i",
      firstLsn: 1,
      lastLsn: 51,
      records: recs("a", [...big, "small"], 100),
    });
    // Hold the clock: the big batch inserts its losers, then waits to finish.
    await admin.query("BEGIN");
    await admin.query("SELECT gen FROM digest_clock WHERE id = 1 FOR UPDATE");
    const bigApply = store.applyBatch({
      origin: "b",
      incarnation: "i",
      firstLsn: 1,
      lastLsn: 50,
      records: recs("b", big, 200),
    });
    await lockWaiters(url, "UPDATE digest_clock%");
    const other = await storeOn(url, { kind: "first-write-wins" }); // another node of the region
    const smallApply = other.applyBatch({
      origin: "c",
      incarnation: "i",
      firstLsn: 1,
      lastLsn: 1,
      records: recs("c", ["small"], 200),
    });
    await lockWaiters(url, "UPDATE digest_clock%", 2);
    await admin.query("COMMIT");
    // Whichever commits first, a reader that saw it and pages on from its id sees the other.
    const first = await Promise.race([bigApply.then(() => "big"), smallApply.then(() => "small")]);
    const seen = new Set((await store.conflicts({ limit: 1000 })).map((c) => c.id));
    const mark = Math.max(0, ...seen);
    await Promise.all([bigApply, smallApply]);
    for (const c of await store.conflicts({ afterId: mark, limit: 1000 })) seen.add(c.id);
    expect(seen.size, `after ${first} committed first`).toBe(51);
  });

  it("a connection lost during a transaction fails that apply, not the process; the next apply works", async () => {
    // Before: the checked-out client's 'error' event had no listener, and the node exited.
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    await admin.query("BEGIN");
    await admin.query("SELECT gen FROM digest_clock WHERE id = 1 FOR UPDATE");
    const apply = store.applyBatch(one("a", "k", 1, 1));
    const [pid] = await lockWaiters(url, "UPDATE digest_clock%");
    await admin.query("SELECT pg_terminate_backend($1)", [pid]);
    await expect(apply).rejects.toThrow(/^store PostgreSQL .*: apply a batch failed/);
    await admin.query("ROLLBACK");
    expect((await store.applyBatch(one("a", "k", 1, 1))).status).toBe("applied");
    expect(await store.get("k")).toMatchObject({ origin: "a" });
  });

  it("deleteSince rewinds every stream whose records it deleted, also one committed while it ran", async () => {
    // Before: the streams were read, then the rows deleted in another statement; a record
    // committed in between was deleted with its watermark left past it.
    const url = await freshDatabase(inject("pgUrl"));
    const node1 = await storeOn(url, { kind: "last-write-wins" });
    const node2 = await storeOn(url, { kind: "last-write-wins" });
    const admin = await client(url);
    await node1.applyBatch(one("A", "k", 1, 5000));
    await admin.query("BEGIN");
    await admin.query("SELECT gen FROM digest_clock WHERE id = 1 FOR UPDATE");
    const applyB = node1.applyBatch(one("B", "k", 1, 6000)); // replaces k, then waits for the clock
    await lockWaiters(url, "UPDATE digest_clock%");
    const del = node2.deleteSince(4000); // waits on k's row
    await lockWaiters(url, "%DELETE FROM records%");
    await admin.query("COMMIT");
    expect((await applyB).status).toBe("applied");
    const removed = await del;
    expect(removed.map((s) => s.origin)).toContain("B");
    expect(await node1.watermark("B", "i")).toBe(0);
    expect((await node1.applyBatch(one("B", "k", 1, 6000))).status).toBe("applied"); // re-shipped, not "already"
  });

  it("digest refreshes apply in order: an older answer handled late never puts old digests back", async () => {
    // Before: two refreshes could overlap and the older one's rows, handled last, stayed.
    const url = await freshDatabase(inject("pgUrl"));
    const rule = { kind: "last-write-wins" } as const;
    const writer = await storeOn(url, rule);
    const reader = await storeOn(url, rule);
    await writer.applyBatch(one("a", "k", 1, 100));
    const pool = (reader as unknown as { pool: pg.Pool }).pool;
    const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let first = true;
    let secondAnswered: () => void = () => undefined;
    const second = new Promise<void>((r) => (secondAnswered = r));
    // The first refresh's answer is held until the test lets it go (a slow network).
    (pool as unknown as { query: unknown }).query = async (...args: unknown[]) => {
      const hold = first;
      first = false;
      const r = await query(...args);
      if (hold) await held;
      else secondAnswered();
      return r;
    };
    const slow = reader.rootDigest();
    await writer.applyBatch(one("a", "k", 2, 200));
    const newer = reader.rootDigest();
    // Before the fix the newer refresh ran beside the held one and was handled first; with
    // it, the newer one is not even asked before the held one ends (so this waits 2 s).
    await Promise.race([second, new Promise((r) => setTimeout(r, 2000))]);
    release();
    await Promise.all([slow, newer]);
    (pool as unknown as { query: unknown }).query = query;
    expect(await reader.rootDigest()).toBe(await writer.rootDigest());
  });
  it("a node marked left can neither claim nor apply, a leave waits for an apply under way, and a lost node's leave is refused while it beats (found by review: a live node marked left could still decide a key)", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    const [a, b] = ["a".repeat(32), "b".repeat(32)];
    await store.shared.joinRegion({ incarnation: a, nodeId: "node-a", boot: "1" });
    await store.shared.joinRegion({ incarnation: b, nodeId: "node-b", boot: "1" });
    expect(await store.shared.claim("k1", a)).toEqual({ taken: true, fresh: true });
    expect(await store.shared.claim("k1", a)).toEqual({ taken: true, fresh: false });
    expect(await store.shared.claim("k1", b)).toEqual({ taken: false, holder: a });

    // Beating now: a lost node's leave is refused, and changes nothing.
    expect(await store.shared.leaveLost("node-a", 60_000)).toMatchObject({ left: false });
    expect(await store.shared.claim("k1", b)).toEqual({ taken: false, holder: a });

    // An apply of a under way holds its row: the leave waits for it, so what it applies is
    // decided before a's claims end.
    await admin.query("BEGIN");
    await admin.query("SELECT gen FROM digest_clock WHERE id = 1 FOR UPDATE");
    const applying = store.applyLocal({
      origin: "us-east-1",
      incarnation: a,
      firstLsn: 1,
      lastLsn: 1,
      records: [rec("k1", 1)],
    });
    await lockWaiters(url, "%digest_clock%"); // the apply waits for the clock
    const leaving = store.shared.leaveLost("node-a", 0);
    await lockWaiters(url, "%FROM nodes%FOR UPDATE%"); // the leave waits for the apply
    await admin.query("COMMIT");
    expect((await applying).status).toBe("applied");
    expect(await leaving).toEqual({ left: true, incarnations: [a], dropped: 0 });

    // Left: no claim, no apply; b decides what a never appended.
    await expect(store.shared.claim("k2", a)).rejects.toMatchObject({ code: "node_left" });
    await expect(
      store.applyLocal({
        origin: "us-east-1",
        incarnation: a,
        firstLsn: 2,
        lastLsn: 2,
        records: [rec("k2", 2)],
      }),
    ).rejects.toMatchObject({ code: "node_left" });
    expect(await store.get("k2")).toBeUndefined();
    expect(await store.shared.claim("k2", b)).toEqual({ taken: true, fresh: true });
    expect(await store.shared.heartbeat(a)).toEqual({ left: true, forgotten: false });
    expect(await store.shared.heartbeat(b)).toEqual({ left: false, forgotten: false });
    // An incarnation the store has no row for (lost, or a backup older than its join) is forgotten, not left.
    expect(await store.shared.heartbeat("c".repeat(32))).toEqual({ left: false, forgotten: true });
  });
  it("after a lost store: a node's replay is marked for its current boot only, and a node the store never knew can be declared gone", async () => {
    const store = await storeOn(await freshDatabase(inject("pgUrl")), { kind: "first-write-wins" });
    const a = "a".repeat(32);
    const replayedAt = async () =>
      (await store.shared.regionNodes()).find((n) => n.incarnation === a)!.replayedAtMs;
    await store.shared.joinRegion({ incarnation: a, nodeId: "node-a", boot: "1" });
    expect(await replayedAt()).toBeUndefined();
    await store.shared.markReplayed(a, "0"); // an older boot's mark: not this one's
    expect(await replayedAt()).toBeUndefined();
    await store.shared.markReplayed(a, "1");
    const first = await replayedAt();
    expect(first).toBeGreaterThan(0);
    // Restarted: joined again at a new boot, not replayed yet.
    await store.shared.joinRegion({ incarnation: a, nodeId: "node-a", boot: "2" });
    expect(await replayedAt()).toBeUndefined();
    await store.shared.markReplayed(a, "2");
    expect(await replayedAt()).toBeGreaterThanOrEqual(first!);

    // A node no row names: recorded as left (once), so it is refused if it comes back.
    expect(await store.shared.leaveLost("node-z", 60_000)).toEqual({
      left: true,
      incarnations: [],
      dropped: 0,
    });
    expect(await store.shared.leaveLost("node-z", 60_000)).toMatchObject({ left: true });
    const z = (await store.shared.regionNodes()).filter((n) => n.nodeId === "node-z");
    expect(z).toEqual([expect.objectContaining({ incarnation: "left-node-z", boot: "" })]);
    expect(z[0]!.leftAtMs).toBeGreaterThan(0);
    // A known node that already left gets no extra row.
    await store.shared.leaveLost("node-a", 0);
    expect((await store.shared.regionNodes()).filter((n) => n.nodeId === "node-a")).toHaveLength(1);
  });
  it("a claim whose answer was lost is ended by the attempt that created it, and only by it", async () => {
    const store = await storeOn(await freshDatabase(inject("pgUrl")), { kind: "first-write-wins" });
    const [a, b] = ["a".repeat(32), "b".repeat(32)];
    expect(await store.shared.claim("k1", a, "attempt-1")).toEqual({ taken: true, fresh: true });
    expect(await store.shared.releaseLostClaim("k1", a, "attempt-2")).toBe(false);
    expect(await store.shared.releaseLostClaim("k1", b, "attempt-1")).toBe(false);
    expect(await store.shared.claim("k1", b, "attempt-9")).toEqual({ taken: false, holder: a });
    expect(await store.shared.releaseLostClaim("k1", a, "attempt-1")).toBe(true);
    expect(await store.shared.claim("k1", b, "attempt-9")).toEqual({ taken: true, fresh: true });
    // Re-taken by a later attempt of the same node: the claim stays the earlier attempt's
    // (that append's record may be in the node's WAL, unapplied).
    expect(await store.shared.claim("k2", a, "attempt-3")).toEqual({ taken: true, fresh: true });
    expect(await store.shared.claim("k2", a, "attempt-4")).toEqual({ taken: true, fresh: false });
    expect(await store.shared.releaseLostClaim("k2", a, "attempt-4")).toBe(false);
    expect(await store.shared.claim("k2", b, "attempt-9")).toEqual({ taken: false, holder: a });
    // A lost claim's delete that arrives after a later attempt re-took the claim ends nothing
    // (found by review: the later append's record may be in the WAL, another node would decide).
    expect(await store.shared.releaseLostClaim("k2", a, "attempt-3")).toBe(false);
    expect(await store.shared.claim("k2", b, "attempt-9")).toEqual({ taken: false, holder: a });
    await store.close();
  });
  it("claims end only as asked: by the applied records' keys of their own node, by key and node, by node, and with a node's leave", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const [a, b, c] = ["a".repeat(32), "b".repeat(32), "c".repeat(32)];
    await store.shared.joinRegion({ incarnation: a, nodeId: "node-a", boot: "1" });
    await store.shared.joinRegion({ incarnation: b, nodeId: "node-b", boot: "1" });
    await store.shared.joinRegion({ incarnation: c, nodeId: "node-c", boot: "1" });
    const holder = async (key: string) => {
      const r = await store.shared.claim(key, "x".repeat(32));
      if (r.taken) throw new Error(`${key} was not held`);
      return r.holder;
    };
    for (const k of ["k1", "k2", "k3"]) await store.shared.claim(k, a);
    for (const k of ["k4", "k5"]) await store.shared.claim(k, b);
    await store.shared.claim("k6", c);
    const local = (firstLsn: number, keys: string[]) => ({
      origin: "us-east-1",
      incarnation: a,
      firstLsn,
      lastLsn: firstLsn + keys.length - 1,
      records: keys.map((k, i) => rec(k, firstLsn + i)),
    });
    // Not applied (a gap): nothing decided, so nothing released.
    expect((await store.applyLocal(local(5, ["k1"]))).status).toBe("gap");
    expect(await holder("k1")).toBe(a);
    // Applied: the batch's keys end for its node only (k4 is b's, and stays).
    expect((await store.applyLocal(local(1, ["k1", "k4"]))).status).toBe("applied");
    expect(await store.shared.claim("k1", b)).toEqual({ taken: true, fresh: true });
    expect(await holder("k4")).toBe(b);
    expect(await holder("k2")).toBe(a);

    // By key: only the named node's claim of it.
    await store.shared.releaseClaim("k2", b);
    expect(await holder("k2")).toBe(a);
    await store.shared.releaseClaim("k2", a);
    expect(await store.shared.claim("k2", c)).toEqual({ taken: true, fresh: true });
    expect(await holder("k3")).toBe(a);

    // By node: every claim of those nodes, counted; the others stay.
    expect(await store.shared.releaseClaims([b, "z".repeat(32)])).toBe(3); // k1, k4, k5
    expect(await store.shared.releaseClaims([b])).toBe(0);
    expect(await holder("k3")).toBe(a);
    expect(await holder("k6")).toBe(c);
    expect(await store.shared.claim("k4", c)).toEqual({ taken: true, fresh: true });

    // A leave: the node is marked left and its claims end; the others' stay.
    expect(await store.shared.leaveRegion("node-c")).toBe(3); // k2, k4, k6
    expect(await holder("k3")).toBe(a);
    expect(await store.shared.claim("k6", a)).toEqual({ taken: true, fresh: true });
    await expect(store.shared.claim("k7", c)).rejects.toMatchObject({ code: "node_left" });
    const nodes = await store.shared.regionNodes();
    expect(nodes.filter((n) => n.leftAtMs !== undefined).map((n) => n.nodeId)).toEqual(["node-c"]);
  });
  it("a bucket whose key count was changed by hand, its digest right, is named by a scrub and corrected", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    await store.applyBatch(one("a", "k", 1, 100));
    const bucket = bucketOf("k");
    const root = await store.rootDigest();
    await admin.query("UPDATE bucket_digests SET keys = keys + 1 WHERE bucket = $1", [bucket]);
    expect(await store.scrub(bucket, 1)).toEqual([bucket]);
    expect(await store.scrub(bucket, 1)).toEqual([]); // corrected
    expect(await store.rootDigest()).toBe(root);
  });

  it("a node's age is read on the database's clock and never below zero", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    const [a, b] = ["a".repeat(32), "b".repeat(32)];
    await store.shared.joinRegion({ incarnation: a, nodeId: "node-a", boot: "1" });
    await store.shared.joinRegion({ incarnation: b, nodeId: "node-b", boot: "1" });
    // a last seen a minute ago; b's row written by a database clock that has since stepped back.
    await admin.query("UPDATE nodes SET seen_at_ms = seen_at_ms - 60000 WHERE incarnation = $1", [a]);
    await admin.query("UPDATE nodes SET seen_at_ms = seen_at_ms + 600000 WHERE incarnation = $1", [b]);
    const age = (await store.shared.regionNodes()).map((n) => [n.nodeId, n.seenAgoMs] as const);
    expect(age[0]![0]).toBe("node-a");
    expect(age[0]![1]).toBeGreaterThanOrEqual(60_000);
    expect(age[0]![1]).toBeLessThan(600_000);
    expect(age[1]).toEqual(["node-b", 0]);
  });
  it("a shared-store operation that fails says which, and changes nothing", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url, { kind: "first-write-wins" });
    const admin = await client(url);
    const a = "a".repeat(32);
    await store.shared.joinRegion({ incarnation: a, nodeId: "node-a", boot: "1" });
    await store.shared.claim("k1", a, "attempt-1");
    await admin.query("ALTER TABLE nodes RENAME TO nodes_away");
    await admin.query("ALTER TABLE claims RENAME TO claims_away");
    const s = store.shared;
    const failures: Array<[() => Promise<unknown>, string]> = [
      [() => s.joinRegion({ incarnation: a, nodeId: "node-a", boot: "2" }), "join the region"],
      [() => s.regionNodes(), "read the region's nodes"],
      [() => s.markReplayed(a, "1"), "record that this node's WAL is in the store"],
      [() => s.claim("k2", a), "claim a key"],
      [() => s.releaseClaim("k1", a), "release a claim"],
      [() => s.releaseLostClaim("k1", a, "attempt-1"), "release a claim whose answer was lost"],
      [() => s.releaseClaims([a]), "release claims"],
      [() => s.leaveRegion("node-a"), "leave the region"],
      [() => s.leaveLost("node-a", 0), "leave the region for a lost node"],
      [() => s.heartbeat(a), "record this node's heartbeat"],
    ];
    for (const [failing, op] of failures)
      await expect(failing()).rejects.toThrow(`: ${op} failed: relation "`);
    await admin.query("ALTER TABLE nodes_away RENAME TO nodes");
    await admin.query("ALTER TABLE claims_away RENAME TO claims");
    expect(await store.shared.regionNodes()).toEqual([
      expect.objectContaining({ incarnation: a, boot: "1", leftAtMs: undefined, replayedAtMs: undefined }),
    ]);
    expect(await store.shared.claim("k1", "b".repeat(32))).toEqual({ taken: false, holder: a });
  });
});
