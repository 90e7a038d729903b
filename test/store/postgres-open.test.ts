/**
 * What the PostgreSQL store's connections give every transaction, and what its failures say.
 * The server's own failures are made real by a trigger that raises the SQLSTATE a full disk, a
 * damaged page, a shutdown or a serialization failure would: the store cannot tell them from
 * the real ones, and the test waits for nothing by the clock.
 */
import pg from "pg";
import { afterEach, describe, expect, inject, it } from "vitest";
import { PostgresStore, type ApplyBatchInput } from "../../src/store/index.js";
import { describePostgres } from "../../src/store/postgres-store.js";
import { freshDatabase } from "../support/postgres.js";
import { waitFor } from "../support/tmp.js";

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close().catch(() => undefined);
});

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  open.push({ close: () => c.end() });
  return c;
}

async function storeOn(url: string, onPoolError?: (m: string) => void): Promise<PostgresStore> {
  const s = await PostgresStore.open({ url, rule: { kind: "first-write-wins" }, poolSize: 2, onPoolError });
  open.push(s);
  return s;
}

const one = (key: string, lsn: number): ApplyBatchInput => ({
  origin: "a",
  incarnation: "i",
  firstLsn: lsn,
  lastLsn: lsn,
  records: [
    { key, tenant: "t", outcome: "a", bodyJson: undefined, lsn, hlc: { wallMs: 100, logical: 0 }, flags: 0 },
  ],
});

/** A trigger on records that raises `code` while the sequence `tries` has not passed `until`. */
async function failInserts(admin: pg.Client, code: string, until: number): Promise<void> {
  await admin.query("CREATE SEQUENCE IF NOT EXISTS tries");
  await admin.query(`CREATE OR REPLACE FUNCTION fail_insert() RETURNS trigger AS $$
    BEGIN
      IF nextval('tries') <= ${until} THEN RAISE EXCEPTION 'made to fail' USING ERRCODE = '${code}'; END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql`);
  await admin.query(
    "CREATE OR REPLACE TRIGGER fail_insert BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION fail_insert()",
  );
}

const tries = async (admin: pg.Client) =>
  Number((await admin.query<{ n: string }>("SELECT last_value AS n FROM tries")).rows[0]!.n);

describe("PostgreSQL store connections", () => {
  it("every session commits synchronously and times a statement out, whatever the database's defaults", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const admin = await client(url);
    const name = new URL(url).pathname.slice(1);
    await admin.query(`ALTER DATABASE ${name} SET synchronous_commit = off`);
    await admin.query(`ALTER DATABASE ${name} SET statement_timeout = 0`);
    const store = await storeOn(url);
    await admin.query("CREATE TABLE seen (sc text, st text)");
    await admin.query(`CREATE FUNCTION note_settings() RETURNS trigger AS $$
      BEGIN
        INSERT INTO seen VALUES (current_setting('synchronous_commit'), current_setting('statement_timeout'));
        RETURN NEW;
      END $$ LANGUAGE plpgsql`);
    await admin.query(
      "CREATE TRIGGER note_settings BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION note_settings()",
    );
    expect((await store.applyBatch(one("k", 1))).status).toBe("applied");
    expect((await admin.query("SELECT sc, st FROM seen")).rows).toEqual([{ sc: "on", st: "2min" }]);
  });

  it("a serialization failure or a deadlock runs the transaction again, 20 attempts in all", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const admin = await client(url);
    const store = await storeOn(url);
    await failInserts(admin, "40001", 3);
    expect((await store.applyBatch(one("k1", 1))).status).toBe("applied");
    expect(await tries(admin)).toBe(4);
    expect((await store.get("k1"))?.lsn).toBe(1);

    await admin.query("ALTER SEQUENCE tries RESTART");
    await failInserts(admin, "40P01", 1_000);
    const err = await store.applyBatch(one("k2", 2)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "store_failed" });
    expect((err as Error).message).toMatch(/: apply a batch failed: made to fail$/);
    expect(await tries(admin)).toBe(20);
    expect(await store.get("k2")).toBeUndefined();
    expect((await store.watermarks()).find((w) => w.origin === "a")?.lsn).toBe(1);
  });

  it.each([
    ["53100", "a full disk", "store_full"],
    ["XX001", "a damaged data page", "store_corrupt"],
    ["XX002", "a damaged index page", "store_corrupt"],
    ["57P01", "a server shutting down", "store_unavailable"],
    ["08006", "a connection failure", "store_unavailable"],
    ["42501", "a refused privilege", "store_failed"],
  ])(
    "SQLSTATE %s (%s) is a %s error naming the database and the operation, and is not run again",
    async (sqlstate, _what, code) => {
      const url = await freshDatabase(inject("pgUrl"));
      const admin = await client(url);
      const store = await storeOn(url);
      await failInserts(admin, sqlstate, 1_000);
      const err = await store.applyBatch(one("k", 1)).catch((e: unknown) => e);
      expect(err).toMatchObject({ code });
      expect((err as Error).message).toContain(
        `store ${describePostgres(url)}: apply a batch failed: made to fail`,
      );
      expect(await tries(admin)).toBe(1);
      if (code === "store_corrupt") expect((err as Error).message).toContain("crr rebuild");
    },
  );

  it("an idle connection the server ends is reported and replaced; the store goes on", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const admin = await client(url);
    const reported: string[] = [];
    const store = await storeOn(url, (m) => reported.push(m));
    expect((await store.applyBatch(one("k1", 1))).status).toBe("applied");
    const ended = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    expect(ended.rows.length).toBeGreaterThan(0);
    await waitFor(async () => (reported.length > 0 ? true : undefined), "the pool's error reported");
    expect(reported[0]).toMatch(/terminat/i);
    expect((await store.applyBatch(one("k2", 2))).status).toBe("applied");
  });

  it("without a listener for it, an idle connection the server ends does not end the process", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const admin = await client(url);
    const store = await storeOn(url);
    expect((await store.applyBatch(one("k1", 1))).status).toBe("applied");
    await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    // An apply may meet the ended connection before the pool has let it go: until one passes.
    await waitFor(
      () =>
        store.applyBatch(one("k2", 2)).then(
          (r) => r.status === "applied" || undefined,
          () => undefined,
        ),
      "an apply after the server ended the idle connection",
    );
  });

  it("a transaction that gets no connection fails as a store error naming the server's refusal", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const store = await storeOn(url);
    const name = new URL(url).pathname.slice(1);
    // Asked from the server's own database: a database cannot refuse the connection asking.
    const admin = await client(inject("pgUrl"));
    await admin.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name]);
    await waitFor(
      () =>
        store.applyBatch(one("k1", 1)).then(
          () => undefined,
          (e: Error) => (/not currently accepting connections/.test(e.message) ? e : undefined),
        ),
      "an apply refused for want of a connection",
    ).then((e) =>
      expect(e.message).toMatch(
        /^store PostgreSQL .*: apply a batch failed: database .* is not currently accepting connections$/,
      ),
    );
  });

  it("opening a server that does not answer fails as unavailable, naming the database and never the password", async () => {
    const err = await PostgresStore.open({
      url: "postgres://crr:s3cret-pw@127.0.0.1:1/regiondb",
      rule: { kind: "first-write-wins" },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "store_unavailable" });
    expect((err as Error).message).toMatch(/^store PostgreSQL 127\.0\.0\.1:1\/regiondb: open failed: /);
    expect((err as Error).message).not.toContain("s3cret-pw");
  });

  it("opening a database that does not exist fails as a store error and leaves no connection behind", async () => {
    const u = new URL(inject("pgUrl"));
    u.pathname = "/no_such_db";
    const err = await PostgresStore.open({ url: u.toString(), rule: { kind: "first-write-wins" } }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "store_failed" });
    expect((err as Error).message).toContain("/no_such_db: open failed: ");
  });

  it("each of its reads and writes that fails says which, naming the database", async () => {
    const url = await freshDatabase(inject("pgUrl"));
    const admin = await client(url);
    const store = await storeOn(url);
    // A conflict, so that reading the conflicts goes on to read their keys.
    await store.applyBatch(one("k", 1));
    await store.applyBatch({ ...one("k", 1), origin: "b" });
    await admin.query("ALTER TABLE records RENAME TO records_away");
    await expect(store.conflicts()).rejects.toThrow(`store ${describePostgres(url)}: read keys failed: `);
    for (const t of [
      "watermarks",
      "conflicts",
      "tampered",
      "bucket_digests",
      "digest_clock",
      "audit_notes",
      "meta",
    ])
      await admin.query(`ALTER TABLE ${t} RENAME TO ${t}_away`);
    const v = { ...one("k", 2).records[0]!, origin: "a", incarnation: "i" };
    const failures: Array<[() => Promise<unknown>, string]> = [
      [() => store.applyBatch(one("k2", 2)), "apply a batch"],
      [() => store.applyLocal(one("k2", 2)), "apply"],
      [() => store.digestTree(), "read digests"],
      [() => store.rootDigest(), "read digests"],
      [() => store.bucketVersions([0]), "read buckets"],
      [() => store.scrub(0, 4), "scrub"],
      [() => store.repair([v]), "repair"],
      [() => store.get("k"), "read a key"],
      [() => store.watermark("a", "i"), "read a watermark"],
      [() => store.watermarks(), "read watermarks"],
      [() => store.resetWatermark("a", "i", 0), "set a watermark"],
      [() => store.conflicts(), "read conflicts"],
      [() => store.auditNotes(10), "read audit notes"],
      [() => store.forgetAuditNotes([1]), "forget audit notes"],
      [() => store.stats(), "count"],
      [() => store.streamVersions("a", "i", 1, 10, 10), "read a stream"],
      [() => store.exportPage({ limit: 10 }), "export"],
      [() => store.deleteSince(0), "delete since"],
      [() => store.getMeta("m"), "read meta"],
      [() => store.setMeta("m", "v"), "write meta"],
      [() => store.isEmpty(), "check whether empty"],
      [() => store.reserveConflictIds(5), "reserve conflict ids"],
    ];
    for (const [failing, op] of failures)
      await expect(failing()).rejects.toThrow(`store ${describePostgres(url)}: ${op} failed: relation "`);
  });

  it("closes once; a second close is nothing", async () => {
    const store = await storeOn(await freshDatabase(inject("pgUrl")));
    expect(store.isOpen).toBe(true);
    await store.close();
    expect(store.isOpen).toBe(false);
    await store.close();
    expect(store.isOpen).toBe(false);
  });

  it("describes a database by host, port and name: never its user or password", () => {
    expect(describePostgres("postgres://u:pw@db.example:6543/crr")).toBe("PostgreSQL db.example:6543/crr");
    expect(describePostgres("postgres://u:pw@db.example/crr")).toBe("PostgreSQL db.example:5432/crr");
    expect(describePostgres("not a url with pw")).toBe("PostgreSQL (an unparsable url)");
  });
});
