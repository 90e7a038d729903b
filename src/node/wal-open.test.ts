/**
 * A start that accepts a lost WAL bootstraps from its peers before it answers (simulator seed
 * 306), but only for what the WAL held: the store is intact, so the other regions' streams
 * it holds through their watermarks are noted as seeded and not copied again (the review's
 * F5: the bootstrap copied every peer's streams, a whole store's worth).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HybridClock } from "../clock/index.js";
import { silentLogger } from "../log.js";
import { SqliteStore } from "../store/index.js";
import { Wal } from "../wal/index.js";
import { seededStreams } from "./copy.js";
import { abandonedAudited, bootstrapRunning, openRegionWal, WalMissingError } from "./wal-open.js";

const region = "us-east-1";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const rec = (lsn: number, key: string) => ({
  key,
  tenant: "t",
  outcome: "approve",
  bodyJson: undefined,
  lsn,
  hlc: { wallMs: 1000 + lsn, logical: 0 },
  flags: 0,
});

/** openRegionWal on `store` with the WAL in `walDir`: the entries it gave to audit, and the WAL (the caller closes it). */
async function openOn(
  store: SqliteStore,
  walDir: string,
  o: { acceptWalLoss: boolean; bootstrapAfterLoss: boolean; open?: () => Promise<Wal> },
): Promise<{ abandoned: unknown[]; wal: Wal }> {
  const abandoned: unknown[] = [];
  const wal = await openRegionWal({
    region,
    dir: walDir,
    store,
    clock: new HybridClock(),
    acceptWalLoss: o.acceptWalLoss,
    log: silentLogger(),
    open: o.open ?? (() => Wal.open({ dir: walDir, region })),
    onAbandoned: (e) => abandoned.push(e),
    nowMs: () => 1_750_000_000_000,
    bootstrapAfterLoss: o.bootstrapAfterLoss,
  });
  return { abandoned, wal };
}

/** openOn, the WAL closed at once. */
async function abandonedBy(
  store: SqliteStore,
  walDir: string,
  o: Parameters<typeof openOn>[2],
): Promise<unknown[]> {
  const { abandoned, wal } = await openOn(store, walDir, o);
  await wal.close();
  return abandoned;
}

describe("openRegionWal with --accept-wal-loss", () => {
  it("marks the store bootstrapping and the other regions' streams it holds as seeded", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-wal-open-"));
    dirs.push(dir);
    const store = new SqliteStore({ path: ":memory:", rule: { kind: "first-write-wins" } });
    const own = "1".repeat(32);
    const eu = "e".repeat(32);
    const euOld = "f".repeat(32);
    try {
      const batch = (
        origin: string,
        incarnation: string,
        lastLsn: number,
        keys: Array<[number, string]>,
      ) => ({
        origin,
        incarnation,
        firstLsn: 1,
        lastLsn,
        records: keys.map(([lsn, key]) => rec(lsn, key)),
      });
      await store.applyLocal(
        batch(region, own, 2, [
          [1, "a"],
          [2, "b"],
        ]),
      );
      await store.applyBatch(
        batch("eu-west-1", eu, 3, [
          [1, "c"],
          [3, "d"],
        ]),
      );
      await store.applyBatch(batch("eu-west-1", euOld, 1, [[1, "e"]]));
      // The WAL directory holds no segment although the store holds this region's stream.
      const { abandoned, wal } = await openOn(store, path.join(dir, "wal"), {
        acceptWalLoss: true,
        bootstrapAfterLoss: true,
      });
      try {
        expect(abandoned).toHaveLength(1);
        expect(await bootstrapRunning(store)).toBe(true);
        expect(
          (await seededStreams(store)).sort((x, y) => x.incarnation.localeCompare(y.incarnation)),
        ).toEqual([
          { origin: "eu-west-1", incarnation: eu, lsn: 3 },
          { origin: "eu-west-1", incarnation: euOld, lsn: 1 },
        ]);
      } finally {
        await wal.close();
      }
    } finally {
      await store.close();
    }
  });

  it("a store that ran before without a stream of this region (a copy older than its first own record) refuses a WAL with no segment, unless the loss is accepted; a fresh or shared store does not", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-wal-open-"));
    dirs.push(dir);
    const walDir = path.join(dir, "wal");
    const open = async (store: SqliteStore, o: { acceptWalLoss: boolean; bootstrapAfterLoss: boolean }) => {
      const abandoned = await abandonedBy(store, walDir, o);
      fs.rmSync(walDir, { recursive: true, force: true });
      return abandoned;
    };
    const fresh = new SqliteStore({ path: ":memory:", rule: { kind: "first-write-wins" } });
    const ran = new SqliteStore({ path: ":memory:", rule: { kind: "first-write-wins" } });
    try {
      // Only another region's records, and a bootstrap that finished.
      await ran.applyBatch({
        origin: "eu-west-1",
        incarnation: "e".repeat(32),
        firstLsn: 1,
        lastLsn: 1,
        records: [rec(1, "c")],
      });
      await ran.setMeta("bootstrap", "done");
      const err = await open(ran, { acceptWalLoss: false, bootstrapAfterLoss: true }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WalMissingError);
      expect((err as WalMissingError).code).toBe("wal_missing");
      expect((err as Error).message).toMatch(/holds no segment, but the store has served this region before/);
      expect(fs.existsSync(walDir)).toBe(false); // nothing was changed
      expect(await ran.getMeta("bootstrap")).toBe("done");

      // Several nodes share the store: a node new to it has no WAL yet.
      expect(await open(ran, { acceptWalLoss: false, bootstrapAfterLoss: false })).toEqual([]);
      // A fresh store: the region's first start.
      expect(await open(fresh, { acceptWalLoss: false, bootstrapAfterLoss: true })).toEqual([]);

      // Accepted: audited, and the region copies its own older streams back from its peers.
      expect(await open(ran, { acceptWalLoss: true, bootstrapAfterLoss: true })).toEqual([
        { reason: "the WAL directory held no segment", incarnations: [] },
      ]);
      expect(await bootstrapRunning(ran)).toBe(true);
    } finally {
      await fresh.close();
      await ran.close();
    }
  });

  it("an accepted loss whose start died before its audit entry is audited by the next start, plain or not, until the caller says it is written (found by review)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-wal-open-"));
    dirs.push(dir);
    const walDir = path.join(dir, "wal");
    const store = new SqliteStore({ path: ":memory:", rule: { kind: "first-write-wins" } });
    const start = (acceptWalLoss: boolean, open?: () => Promise<Wal>) =>
      abandonedBy(store, walDir, { acceptWalLoss, bootstrapAfterLoss: true, open });
    try {
      await store.setMeta("bootstrap", "done");
      // The accepted start dies as it creates the new WAL (a crash, a full disk).
      const died = await start(true, () => Promise.reject(new Error("ENOSPC"))).catch((e: Error) => e);
      expect((died as Error).message).toBe("ENOSPC");
      expect(await bootstrapRunning(store)).toBe(true); // so the next start is not refused
      const entry = { reason: "the WAL directory held no segment", incarnations: [] };
      expect(await start(false)).toEqual([entry]); // audited by the next, plain start
      expect(await start(false)).toEqual([entry]); // and again, until it is said to be written
      await abandonedAudited(store);
      expect(await start(false)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
