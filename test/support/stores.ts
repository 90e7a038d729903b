/**
 * Both dedup stores behind one shape, for the contract suite: SQLite on a temporary file and
 * PostgreSQL on a database of the suite's cluster (test/setup/postgres.ts). `exec` changes a
 * store's data outside the engine (a hand edit), in the store's own SQL ($1, $2 … for
 * parameters, rewritten to ? for SQLite).
 */
import Database from "better-sqlite3";
import path from "node:path";
import pg from "pg";
import { inject } from "vitest";
import {
  PostgresStore,
  SqliteStore,
  emptyStoreSql,
  type DedupStore,
  type MergeRule,
} from "../../src/store/index.js";
import { freshDatabase } from "./postgres.js";
import { tempDir } from "./tmp.js";

export interface OpenedStore {
  store: DedupStore;
  /** Run SQL on the store's data outside the engine. */
  exec(sql: string, params?: unknown[]): Promise<void>;
  /** Open a second handle on the same data (another node of the region, or a restart). */
  another(): Promise<DedupStore>;
}

export interface StoreKind {
  name: "sqlite" | "postgres";
  /** Property runs: PostgreSQL round trips cost more than SQLite calls in this process. */
  runs: number;
  /** Whether several nodes may open it at once (SQLite: one node per data directory, its lock says so). */
  shared: boolean;
  /** A store holding nothing; `slot` reuses a database (wiped) instead of creating one. */
  open(rule: MergeRule, slot?: string): Promise<OpenedStore>;
}

const sqlite: StoreKind = {
  name: "sqlite",
  runs: 60,
  shared: false,
  open: async (rule) => {
    const file = path.join(tempDir(), "store.sqlite");
    return {
      store: new SqliteStore({ path: file, rule }),
      exec: async (sql, params = []) => {
        const db = new Database(file);
        try {
          db.prepare(sql.replace(/\$\d+/g, "?")).run(...params);
        } finally {
          db.close();
        }
      },
      another: async () => new SqliteStore({ path: file, rule }),
    };
  },
};

const slots = new Map<string, string>();

async function run(url: string, sql: string, params: unknown[] = []): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/** Empty every table of a database the store created (much faster than a new database). */
async function wipe(url: string): Promise<void> {
  await run(url, emptyStoreSql);
}

const postgres: StoreKind = {
  name: "postgres",
  runs: 15,
  shared: true,
  open: async (rule, slot) => {
    let url = slot === undefined ? undefined : slots.get(slot);
    if (url) await wipe(url);
    else {
      url = await freshDatabase(inject("pgUrl"));
      if (slot !== undefined) slots.set(slot, url);
    }
    const at = url;
    return {
      store: await PostgresStore.open({ url: at, rule, poolSize: 4 }),
      exec: (sql, params) => run(at, sql, params),
      another: () => PostgresStore.open({ url: at, rule, poolSize: 4 }),
    };
  },
};

/** Both engines, whatever CRR_STORE_KINDS says (the side-by-side comparison needs the pair). */
export const bothStoreKinds = { sqlite, postgres } as const;

/**
 * The engines the contract runs on: both, unless CRR_STORE_KINDS names some (comma-separated,
 * e.g. `sqlite` for a mutation run of the SQLite store), and CRR_STORE_RUNS caps the property
 * runs of each (a mutation run re-runs the contract for every mutant it covers).
 */
export const storeKinds: readonly StoreKind[] = chosenKinds(
  process.env.CRR_STORE_KINDS,
  process.env.CRR_STORE_RUNS,
);

function chosenKinds(names: string | undefined, runs: string | undefined): StoreKind[] {
  const all = [sqlite, postgres];
  const wanted = names ? names.split(",").map((n) => n.trim()) : all.map((k) => k.name);
  const unknown = wanted.filter((n) => !all.some((k) => k.name === n));
  if (unknown.length > 0)
    throw new Error(`CRR_STORE_KINDS: unknown engine(s) ${unknown.join(", ")}; known: sqlite, postgres`);
  const cap = runs === undefined || runs === "" ? Infinity : Number(runs);
  if (!Number.isInteger(cap) && cap !== Infinity)
    throw new Error(`CRR_STORE_RUNS: not a whole number: ${runs}`);
  if (cap < 1) throw new Error(`CRR_STORE_RUNS: at least 1, got ${runs}`);
  return all.filter((k) => wanted.includes(k.name)).map((k) => ({ ...k, runs: Math.min(k.runs, cap) }));
}
