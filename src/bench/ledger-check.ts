/**
 * The harness's integrity check against what clients were told: every acknowledged answer
 * (key, tenant, outcome, body, origin, LSN, timestamp) must be in every region its policy
 * targets, with exactly that content, read from the region's store file itself (not through
 * the engine, not compared region against region).
 */
import path from "node:path";
import Database from "better-sqlite3";
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

export function checkLedger(
  regionDirs: ReadonlyMap<string, string>,
  acked: readonly AckedRecord[],
): LedgerCheck {
  const out: LedgerCheck = { checked: 0, wrong: 0, examples: [] };
  for (const [region, dir] of regionDirs) {
    const db = new Database(path.join(dir, "store.sqlite"), { readonly: true, fileMustExist: true });
    try {
      // By (bucket, key), the table's key: by key alone each lookup scanned the table (a check
      // of 100,000 records took minutes).
      const winner = db.prepare("SELECT * FROM records WHERE bucket = ? AND key = ?");
      const loser = db.prepare("SELECT * FROM conflicts WHERE key = ? AND origin = ? AND lsn = ?");
      for (const a of acked) {
        if (!a.targets.includes(region)) continue;
        out.checked++;
        const rows = [winner.get(bucketOf(a.key), a.key), loser.get(a.key, a.origin, a.lsn)] as Array<
          Row | undefined
        >;
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
      db.close();
    }
  }
  return out;
}
