/**
 * What clients were told, kept by the test, and the check of every region against it: each
 * acknowledged record must be in every region its policy targets with its exact content
 * (as winner or as a kept conflict loser), and each key's winner must be the one an
 * independent, obviously-correct implementation of the rule computes from the ledger. The
 * stores are read directly from their files, not through the engine.
 */
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { expect } from "vitest";
import { append, type TestNode } from "./cluster.js";

export interface Acked {
  key: string;
  tenant: string;
  outcome: string;
  /** The body as sent (undefined when none). */
  body: unknown;
  origin: string;
  lsn: number;
  hlc: string;
}

export interface RecordInput {
  key: string;
  tenant: string;
  outcome: string;
  body?: unknown;
}

interface Answer {
  key: string;
  outcome: string;
  duplicate: boolean;
  origin: string;
  lsn: number;
  hlc: string;
}

export class Ledger {
  /** Every record a region acknowledged as newly decided (duplicate: false). */
  readonly acked: Acked[] = [];
  /** Every answer, duplicates included: what the client was told the key's outcome is. */
  readonly answers: Answer[] = [];

  /** Append through the public API; a 200 is recorded, anything else is returned for the test to judge. */
  async append(node: TestNode, rec: RecordInput, wait?: number) {
    const r = await append(node, rec, wait);
    if (r.status !== 200) return r;
    const a = r.body as unknown as Answer;
    this.answers.push(a);
    if (!a.duplicate)
      this.acked.push({
        key: rec.key,
        tenant: rec.tenant,
        outcome: rec.outcome,
        body: rec.body,
        origin: a.origin,
        lsn: a.lsn,
        hlc: a.hlc,
      });
    return r;
  }

  /**
   * Append `count` records with `concurrency` in flight; every one must be acknowledged (a
   * 429, which writes nothing, is asked again after its Retry-After).
   */
  async appendMany(
    node: TestNode,
    prefix: string,
    count: number,
    tenant = "tenant-a",
    concurrency = 16,
  ): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        const rec = {
          key: `${prefix}-${i}`,
          tenant,
          outcome: i % 5 ? "accepted" : "escalated",
          body: { i, note: `n${i}` },
        };
        // A node that sheds load (429 overloaded: nothing written) is asked again after its
        // Retry-After (1 s), as a client would, for up to a minute: on a busy machine the WAL's
        // fsync can wait beyond append.queueDelayMaxMs (seen in the suite beside a mutation run).
        let r = await this.append(node, rec);
        for (let tries = 0; r.status === 429 && tries < 60; tries++) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          r = await this.append(node, rec);
        }
        if (r.status !== 200)
          throw new Error(`append ${rec.key} to ${node.name}: ${r.status} ${JSON.stringify(r.body)}`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
}

/** "001763769300123.00007" -> [wall ms, logical]. */
function hlcParts(h: string): [number, number] {
  const [wall, logical] = h.split(".");
  return [Number(wall), Number(logical)];
}

/**
 * First write wins, written out plainly: the version with the earliest timestamp wins; on
 * equal timestamps, the origin whose name sorts first.
 */
export function firstWriteWinner(versions: readonly Acked[]): Acked {
  let best = versions[0]!;
  for (const v of versions.slice(1)) {
    const [bw, bl] = hlcParts(best.hlc);
    const [vw, vl] = hlcParts(v.hlc);
    const earlier = vw < bw || (vw === bw && (vl < bl || (vl === bl && v.origin < best.origin)));
    if (earlier) best = v;
  }
  return best;
}

export interface StoredVersion {
  key: string;
  tenant: string;
  outcome: string;
  body: string | null;
  origin: string;
  lsn: number;
  hlc: string;
}

/** Every version a region's store file holds: winners, and losers kept in the conflicts table. */
export interface StoreImage {
  winners: Map<string, StoredVersion>;
  all: StoredVersion[];
}

function imageOf(
  winnerRows: Array<Record<string, unknown>>,
  loserRows: Array<Record<string, unknown>>,
): StoreImage {
  const row = (r: Record<string, unknown>): StoredVersion => ({
    key: r.key as string,
    tenant: r.tenant as string,
    outcome: r.outcome as string,
    body: r.body as string | null,
    origin: r.origin as string,
    lsn: Number(r.lsn),
    hlc: `${String(r.hlc_wall).padStart(15, "0")}.${String(r.hlc_logical).padStart(5, "0")}`,
  });
  const winners = winnerRows.map(row);
  return { winners: new Map(winners.map((w) => [w.key, w])), all: [...winners, ...loserRows.map(row)] };
}

/** A region's SQLite store, read straight from its file (not through crr). */
export function readStore(dataDir: string): StoreImage {
  const db = new Database(path.join(dataDir, "store.sqlite"), { readonly: true, fileMustExist: true });
  try {
    return imageOf(
      db.prepare("SELECT * FROM records").all() as Array<Record<string, unknown>>,
      db.prepare("SELECT * FROM conflicts").all() as Array<Record<string, unknown>>,
    );
  } finally {
    db.close();
  }
}

/** A region's PostgreSQL store, read straight from its database (not through crr). */
export async function readPostgresStore(url: string): Promise<StoreImage> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const winners = await c.query("SELECT * FROM records");
    const losers = await c.query("SELECT * FROM conflicts");
    return imageOf(winners.rows, losers.rows);
  } finally {
    await c.end();
  }
}

const same = (a: Acked, s: StoredVersion) =>
  s.key === a.key &&
  s.origin === a.origin &&
  s.lsn === a.lsn &&
  s.hlc === a.hlc &&
  s.tenant === a.tenant &&
  s.outcome === a.outcome &&
  s.body === (a.body === undefined ? null : JSON.stringify(a.body));

/**
 * Every region against the ledger: each acknowledged record it should hold is there with its
 * exact content, and each key's winner is the independent rule's winner among the
 * acknowledged versions it should hold. `shouldHold` defaults to every region holding all.
 */
export function expectMatchesLedger(
  ledger: Ledger,
  regions: ReadonlyArray<Pick<TestNode, "name" | "dataDir">>,
  shouldHold: (region: string, rec: Acked) => boolean = () => true,
): void {
  for (const region of regions)
    expectStoreMatchesLedger(ledger, region.name, readStore(region.dataDir), shouldHold);
}

/** One region's store (read by readStore or readPostgresStore) against the ledger, as expectMatchesLedger. */
export function expectStoreMatchesLedger(
  ledger: Ledger,
  region: string,
  store: StoreImage,
  shouldHold: (region: string, rec: Acked) => boolean = () => true,
): void {
  const held = ledger.acked.filter((a) => shouldHold(region, a));
  for (const a of held) {
    expect(
      store.all.some((s) => same(a, s)),
      `${region} holds ${a.key} (${a.origin} LSN ${a.lsn}) exactly as acknowledged`,
    ).toBe(true);
  }
  const byKey = new Map<string, Acked[]>();
  for (const a of held) byKey.set(a.key, [...(byKey.get(a.key) ?? []), a]);
  for (const [key, versions] of byKey) {
    const w = firstWriteWinner(versions);
    const got = store.winners.get(key);
    expect(
      got && same(w, got),
      `${region}: winner of ${key} is ${w.origin} LSN ${w.lsn} '${w.outcome}'`,
    ).toBe(true);
  }
}
