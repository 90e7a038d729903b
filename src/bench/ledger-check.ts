/**
 * The harness's integrity check against what clients were told: every acknowledged answer
 * (key, tenant, outcome, body, origin, LSN, timestamp) must be in every region its policy
 * targets, with exactly that content, read from the region's store file or database itself (not through
 * the engine, not compared region against region).
 */
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { bucketOf } from "../store/index.js";

export interface AckedRecord {
  key: string;
  tenant: string;
  outcome: string;
  bodyJson: string;
  origin: string;
  lsn: number;
  /** As the append answered it: "000001763769300123.00000". */
  hlc: string;
  /** Regions that must hold it (its origin and the peers its policy targets). */
  targets: string[];
}

export interface LedgerCheck {
  checked: number;
  /** Copies a targeted region does not hold, or holds with other content. */
  wrong: number;
  examples: string[];
}

interface Row {
  tenant: string;
  outcome: string;
  body: string | null;
  origin: string;
  lsn: number;
  hlc_wall: number;
  hlc_logical: number;
}

const hlcText = (r: Row) =>
  `${String(r.hlc_wall).padStart(15, "0")}.${String(r.hlc_logical).padStart(5, "0")}`;

/** Where a region's store is: its data directory (SQLite) or its PostgreSQL database. */
export type StoreSource = { dataDir: string } | { postgresUrl: string };

interface Lookup {
  winner(key: string): Row | undefined;
  loser(key: string, origin: string, lsn: number): Row | undefined;
  close(): Promise<void>;
}

function sqliteLookup(dir: string): Lookup {
  const db = new Database(path.join(dir, "store.sqlite"), { readonly: true, fileMustExist: true });
  // By (bucket, key), the table's key: by key alone each lookup scanned the table (a check
  // of 100,000 records took minutes).
  const winner = db.prepare("SELECT * FROM records WHERE bucket = ? AND key = ?");
  const loser = db.prepare("SELECT * FROM conflicts WHERE key = ? AND origin = ? AND lsn = ?");
  return {
    winner: (key) => winner.get(bucketOf(key), key) as Row | undefined,
    loser: (key, origin, lsn) => loser.get(key, origin, lsn) as Row | undefined,
    close: async () => void db.close(),
  };
}

/** Every row of the database read once (a region's store of a benchmark fits in memory). */
async function postgresLookup(url: string): Promise<Lookup> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const num = (r: Row & { key: string }) => ({ ...r, lsn: Number(r.lsn), hlc_wall: Number(r.hlc_wall) });
    const winners = (await c.query<Row & { key: string }>("SELECT * FROM records")).rows.map(num);
    const losers = (await c.query<Row & { key: string }>("SELECT * FROM conflicts")).rows.map(num);
    const byKey = new Map(winners.map((r) => [r.key, r]));
    const byVersion = new Map(losers.map((r) => [`${r.key}\0${r.origin}\0${r.lsn}`, r]));
    return {
      winner: (key) => byKey.get(key),
      loser: (key, origin, lsn) => byVersion.get(`${key}\0${origin}\0${lsn}`),
      close: async () => undefined,
    };
  } finally {
    await c.end();
  }
}

export async function checkLedger(
  regions: ReadonlyMap<string, StoreSource>,
  acked: readonly AckedRecord[],
): Promise<LedgerCheck> {
  const out: LedgerCheck = { checked: 0, wrong: 0, examples: [] };
  for (const [region, source] of regions) {
    const store =
      "dataDir" in source ? sqliteLookup(source.dataDir) : await postgresLookup(source.postgresUrl);
    try {
      for (const a of acked) {
        if (!a.targets.includes(region)) continue;
        out.checked++;
        const rows = [store.winner(a.key), store.loser(a.key, a.origin, a.lsn)];
        const exact = rows.some(
          (r) =>
            r !== undefined &&
            r.origin === a.origin &&
            r.lsn === a.lsn &&
            hlcText(r) === a.hlc &&
            r.tenant === a.tenant &&
            r.outcome === a.outcome &&
            r.body === a.bodyJson,
        );
        if (exact) continue;
        out.wrong++;
        if (out.examples.length < 5)
          out.examples.push(`${region} lacks ${a.key} (${a.origin} LSN ${a.lsn}) as acknowledged`);
      }
    } finally {
      await store.close();
    }
  }
  return out;
}
