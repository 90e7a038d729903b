/**
 * The simulator's dedup stores, and how the checker reads them (never region against region:
 * a second connection, as an operator's shell would open).
 *
 * - SQLite (the default): each region's store in its data directory, run on the calling
 *   thread. A power loss puts it back to the image of its last synced commit. Same seed,
 *   same run, byte for byte.
 * - PostgreSQL: one database per region on a server the caller runs. Every commit is
 *   synced (`synchronous_commit=on`), so a crash loses nothing the store committed; and
 *   since the scheduler waits for every store call, a crash falls between two calls. The server answers on its own schedule:
 *   the scheduler waits for every answer before the next event (a store call takes no
 *   simulated time), but a run is a search, not a replay: one seed may not give one trace.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { StoreUnavailableError } from "../errors.js";
import type { Region, StoreHooks } from "../node/index.js";
import { SqliteStore, emptyStoreSql } from "../store/index.js";
import type { Scheduler, SimProcess } from "./scheduler.js";

/** A version's identity in a stream: "origin/incarnation/lsn". */
export const versionId = (v: { origin: string; incarnation: string; lsn: number }): string =>
  `${v.origin}/${v.incarnation}/${v.lsn}`;

export interface RowIdentity {
  origin: string;
  incarnation: string;
  lsn: number;
  tenant: string;
}

/** The part of a simulated region the stores need. */
export interface StoreSite {
  name: string;
  dataDir: string;
  region: Region | undefined;
  /** The node's process (a frozen one's store calls wait for its thaw). */
  proc?: SimProcess;
}

/** The key to edit among `keys`, and whether to delete it; undefined: edit nothing. */
export type HandEditChoice = (keys: string[]) => Promise<{ key: string; remove: boolean } | undefined>;

export interface SimStores {
  readonly kind: "sqlite" | "postgres";
  /** The config's `store` block for `region` (undefined: SQLite in its data directory). */
  configOf(region: string): Record<string, unknown> | undefined;
  /** Region.open's store hooks for `site`. */
  hooks(site: StoreSite): StoreHooks;
  /** Every version `site`'s store holds (records and conflict losers), running or down, by versionId. */
  held(site: StoreSite): Promise<Set<string>>;
  /** Every record row, edited ones too. */
  rows(site: StoreSite): Promise<RowIdentity[]>;
  /** The process serving `site` died (its region object is dropped). */
  crashed(site: StoreSite): void;
  /** `site`'s store is gone (a lost disk, or the store alone). */
  lose(site: StoreSite): Promise<void>;
  /**
   * Change (or delete) one record from outside the engine: `choose` picks the key among
   * every key the store holds (ordered by bucket, then key) and whether to delete it.
   * Undefined when the store holds no key or `choose` chose none.
   */
  editByHand(site: StoreSite, choose: HandEditChoice): Promise<string | undefined>;
  /**
   * `proc` is cut off from its store for `ms` (a shared store only): each call fails, half
   * of them before reaching the server and half after it did the work (the answer lost).
   */
  cut?(proc: SimProcess, ms: number): void;
  /** Every cut ends now (the heal). */
  uncutAll?(): void;
  /** The run is over: let go of `site`'s store without writing anything. */
  release(site: StoreSite): Promise<void>;
  /** The run is over (passed, failed or stopped): let go of what the stores hold for it. */
  close(): Promise<void>;
}

const heldSql = (t: string) => `SELECT origin, incarnation, lsn FROM ${t}`;
const keysSql = "SELECT key FROM records ORDER BY bucket, key";
const rowsSql = "SELECT origin, incarnation, lsn, tenant FROM records";
const storeFiles = ["store.sqlite", "store.sqlite-wal", "store.sqlite-shm"];

/** The region's SQLite store (the simulator's default). */
function sqliteOf(region: Region): SqliteStore {
  if (!(region.store instanceof SqliteStore))
    throw new Error(`expected a SQLite store; region ${region.name} opened ${region.store.description}`);
  return region.store;
}

export class SqliteSimStores implements SimStores {
  readonly kind = "sqlite";
  /**
   * Regions whose store had a synced commit. After each one the store's -wal is checkpointed
   * into its file, so the file alone is what a power loss leaves (cheaper than an image of the
   * whole database per commit, a tenth of a run's time); a store never synced leaves nothing.
   */
  private readonly synced = new Set<string>();

  configOf(): undefined {
    return undefined;
  }

  hooks(site: StoreSite): StoreHooks {
    return {
      checkpointer: false,
      onSyncedCommit: (s) => {
        // SQLite's word, not the engine's: a commit it did not sync is not durable yet.
        if (!s.commitsSynced()) return;
        s.checkpointFully();
        this.synced.add(site.name);
      },
    };
  }

  async held(site: StoreSite): Promise<Set<string>> {
    const db = this.reader(site);
    if (!db) return new Set();
    try {
      const rows = db
        .prepare(`${heldSql("records")} UNION ALL ${heldSql("conflicts")}`)
        .all() as RowIdentity[];
      return new Set(rows.map(versionId));
    } finally {
      db.close();
    }
  }

  async rows(site: StoreSite): Promise<RowIdentity[]> {
    const db = this.reader(site);
    if (!db) return [];
    try {
      return db.prepare(rowsSql).all() as RowIdentity[];
    } finally {
      db.close();
    }
  }

  /** A second connection on the running store, or on the image a crash would leave. */
  private reader(site: StoreSite): Database.Database | undefined {
    if (site.region?.store.isOpen)
      return new Database(path.join(site.dataDir, "store.sqlite"), { readonly: true });
    const image = this.image(site);
    if (!image) return undefined;
    // The file of a WAL-mode database: read it as a rollback-journal one (header bytes 18, 19).
    image[18] = 1;
    image[19] = 1;
    return new Database(image, { readonly: true });
  }

  /** What a power loss would leave of `site`'s store now (undefined: no store). */
  private image(site: StoreSite): Buffer | undefined {
    const file = path.join(site.dataDir, "store.sqlite");
    return this.synced.has(site.name) && fs.existsSync(file) ? fs.readFileSync(file) : undefined;
  }

  crashed(site: StoreSite): void {
    // Read before the handle closes: closing the last connection checkpoints the -wal into the file.
    const image = this.image(site);
    if (site.region) sqliteOf(site.region).abandon();
    for (const f of storeFiles) fs.rmSync(path.join(site.dataDir, f), { force: true });
    if (image) fs.writeFileSync(path.join(site.dataDir, "store.sqlite"), image);
  }

  async lose(site: StoreSite): Promise<void> {
    for (const f of storeFiles) fs.rmSync(path.join(site.dataDir, f), { force: true });
    this.synced.delete(site.name);
  }

  async editByHand(site: StoreSite, choose: HandEditChoice): Promise<string | undefined> {
    const db = new Database(path.join(site.dataDir, "store.sqlite"));
    try {
      const keys = db.prepare(keysSql).pluck().all() as string[];
      if (keys.length === 0) return undefined;
      const chosen = await choose(keys);
      if (!chosen) return undefined;
      const { key, remove } = chosen;
      if (remove) db.prepare("DELETE FROM records WHERE key = ?").run(key);
      else db.prepare("UPDATE records SET outcome = 'edited by hand' WHERE key = ?").run(key);
      return key;
    } finally {
      db.close();
    }
  }

  async release(site: StoreSite): Promise<void> {
    if (site.region) sqliteOf(site.region).abandon();
  }

  async close(): Promise<void> {}
}

const unfrozen = Symbol("the store, read by the simulator whether its node is frozen or not");

/**
 * A region's store as the simulator's own readers use it (the watermark sampler, the
 * checkers): never held by its node's stall. Work the scheduler waits for must not wait for
 * simulated time, or the run stops (it did: a sample of a frozen node's watermarks).
 */
export function simReadable<T extends object>(store: T): T {
  return ((store as Record<symbol, unknown>)[unfrozen] as T | undefined) ?? store;
}

/** The advisory lock a simulator run holds on its PostgreSQL server ("crrs" in ASCII). */
const simLockKey = 0x63727273;

/**
 * One database per region on a PostgreSQL server (`serverUrl` names a database the role may
 * create others from). Databases are made once per process (`crr_sim_<region>`) and emptied
 * for each run.
 */
export class PostgresSimStores implements SimStores {
  readonly kind = "postgres";
  private readonly urls = new Map<string, string>();
  /** Processes cut off from the server, until a simulated time. */
  private readonly cuts = new Map<SimProcess, number>();

  private constructor(
    private readonly sched: Scheduler,
    /** Holds the server's simulator lock for the run (see open). */
    private readonly admin: pg.Client,
  ) {}

  /**
   * Databases for `regions`, created if missing and emptied. One run at a time per server:
   * a second one would empty the databases under the first (it did, by hand: every store of
   * a running seed read empty at once), so the run holds an advisory lock until `close`.
   */
  static async open(
    sched: Scheduler,
    serverUrl: string,
    regions: readonly string[],
  ): Promise<PostgresSimStores> {
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    const s = new PostgresSimStores(sched, admin);
    let ok = false;
    try {
      const lock = await admin.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [simLockKey]);
      if (!lock.rows[0]!.ok)
        throw new Error(
          `another simulator run is using this PostgreSQL server's crr_sim_* databases (advisory lock ${simLockKey}); run one at a time per server, or give each its own server`,
        );
      for (const region of regions) {
        const db = `crr_sim_${region}`;
        const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [db]);
        if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${db}`);
        const url = new URL(serverUrl);
        url.pathname = `/${db}`;
        s.urls.set(region, url.toString());
        await s.query(region, emptyStoreSql);
      }
      ok = true;
    } finally {
      if (!ok) await admin.end();
    }
    return s;
  }

  async close(): Promise<void> {
    await this.admin.end(); // and with the session, its lock
  }

  configOf(region: string): Record<string, unknown> {
    return { kind: "postgres", url: this.urls.get(region)!, poolSize: 2 };
  }

  hooks(site: StoreSite): StoreHooks {
    return {
      opening: (open) => this.sched.track(open, `open the store of ${site.name}`),
      wrap: (store) => this.tracked(store, site.proc, `${site.name} (${path.basename(site.dataDir)})`),
    };
  }

  /**
   * The store with every call that returns a promise counted as I/O the scheduler waits for,
   * its `shared` side (claims, membership, heartbeats) too. While the node is frozen, a call
   * waits for its thaw first (every call of PostgresStore is asynchronous; the wait is in
   * simulated time and not counted as I/O, which the scheduler would wait for forever).
   */
  cut(proc: SimProcess, ms: number): void {
    this.cuts.set(proc, this.sched.nowMs + ms);
  }

  uncutAll(): void {
    this.cuts.clear();
  }

  /**
   * `call` as a process cut off from the server sees it: a connection error, raised before
   * the server saw it or after it did the work (an answer lost after a commit); undefined
   * when `proc` is not cut off now (a close is never cut: the process lets go).
   */
  private cutCall(
    proc: SimProcess | undefined,
    op: string,
    call: () => unknown,
  ): Promise<unknown> | undefined {
    const until = proc && this.cuts.get(proc);
    if (until === undefined || until <= this.sched.nowMs || op === "close") return undefined;
    const lost = new StoreUnavailableError(
      "(simulated)",
      op,
      new Error("Connection terminated unexpectedly (the simulator cut this node off from its store)"),
    );
    if (this.sched.chance(0.5)) return Promise.reject(lost);
    return Promise.resolve(call()).then(() => Promise.reject(lost));
  }

  private tracked<T extends object>(store: T, proc: SimProcess | undefined, site: string): T {
    const sched = this.sched;
    const cutCall = this.cutCall.bind(this);
    const tracked = (x: object, p: SimProcess | undefined) => this.tracked(x, p, site);
    return new Proxy(store, {
      get(target, prop) {
        if (prop === unfrozen) return tracked(target, undefined);
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === "shared" && typeof v === "object" && v !== null) return tracked(v, proc);
        if (typeof v !== "function") return v;
        const what = `${String(prop)} on the store of ${site}`;
        const call = (args: unknown[]): unknown => {
          const apply = () => Reflect.apply(v, target, args) as unknown;
          const cut = cutCall(proc, String(prop), apply);
          if (cut) return sched.track(cut, what);
          const r = apply();
          return r instanceof Promise ? sched.track(r, what) : r;
        };
        return (...args: unknown[]) => {
          const thawed = proc && sched.thawed(proc);
          return thawed ? thawed.then(() => call(args)) : call(args);
        };
      },
    });
  }

  private async query<T extends pg.QueryResultRow>(region: string, sql: string): Promise<T[]> {
    const c = new pg.Client({ connectionString: this.urls.get(region)! });
    await c.connect();
    try {
      return (await c.query<T>(sql)).rows;
    } finally {
      await c.end();
    }
  }

  async held(site: StoreSite): Promise<Set<string>> {
    const rows = await this.query<RowIdentity>(
      site.name,
      `${heldSql("records")} UNION ALL ${heldSql("conflicts")}`,
    );
    return new Set(rows.map((r) => versionId({ ...r, lsn: Number(r.lsn) })));
  }

  async rows(site: StoreSite): Promise<RowIdentity[]> {
    return (await this.query<RowIdentity>(site.name, rowsSql)).map((r) => ({ ...r, lsn: Number(r.lsn) }));
  }

  crashed(site: StoreSite): void {
    // The process is gone: its connections close, and what it had not committed is undone.
    // At once, also when it was frozen: its stall must not hold the close (the scheduler
    // waits for the close, and a thaw in simulated time would never come; it did not).
    if (site.region)
      void this.sched.track(
        simReadable(site.region.store)
          .close()
          .catch(() => undefined),
        `close the crashed node's store (${path.basename(site.dataDir)})`,
      );
  }

  async lose(site: StoreSite): Promise<void> {
    await this.query(site.name, emptyStoreSql);
  }

  async editByHand(site: StoreSite, choose: HandEditChoice): Promise<string | undefined> {
    const c = new pg.Client({ connectionString: this.urls.get(site.name)! });
    await c.connect();
    try {
      const keys = (await c.query<{ key: string }>(keysSql)).rows.map((r) => r.key);
      if (keys.length === 0) return undefined;
      const chosen = await choose(keys);
      if (!chosen) return undefined;
      const { key, remove } = chosen;
      if (remove) await c.query("DELETE FROM records WHERE key = $1", [key]);
      else await c.query("UPDATE records SET outcome = 'edited by hand' WHERE key = $1", [key]);
      return key;
    } finally {
      await c.end();
    }
  }

  async release(site: StoreSite): Promise<void> {
    if (site.region)
      await simReadable(site.region.store)
        .close()
        .catch(() => undefined);
  }
}
