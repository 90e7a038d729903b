/**
 * Opening a region's WAL against its store, before anything is served:
 * - whether the region has state of its own: decided from the store alone (whatever the WAL
 *   holds), and marked durably (`bootstrap: running`) before the WAL is created, so a start
 *   that fails or crashes before its bootstrap finished bootstraps again;
 * - a WAL directory without segments while the store holds this incarnation's stream (an
 *   unmounted volume, a deleted directory) is refused, not silently replaced;
 * - `--accept-wal-loss` takes effect only when recovery refuses: every intact frame of the
 *   old WAL is first salvaged into the store (its stream becomes an older incarnation that
 *   the shippers backfill), the store is marked bootstrapping, then the WAL is moved aside
 *   and a new incarnation starts, which copies what its peers hold before it answers (the
 *   damaged frames may have held records the store lacks and a peer holds: seed 306);
 * - the clock never runs behind this region's own newest record in the store.
 */
import fs from "node:fs";
import path from "node:path";
import type { HybridClock } from "../clock/index.js";
import { AcknowledgedLossError, CrrError, SegmentCorruptError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ApplyStore, MetaStore, StreamStore } from "../store/index.js";
import { noteSeeded } from "./copy.js";
import {
  decodeFrame,
  parseSegmentFileName,
  runsOf,
  scanSegmentHeader,
  type Wal,
  type WalRecord,
} from "../wal/index.js";

const bootstrapMeta = "bootstrap";
const retiredMeta = "retired_incarnations";
/** `wal-abandoned` entries not yet in the audit log (a start that died before writing them). */
const abandonedMeta = "wal_abandoned_pending";

async function pendingAbandoned(store: MetaStore): Promise<Array<Record<string, unknown>>> {
  return JSON.parse((await store.getMeta(abandonedMeta)) ?? "[]") as Array<Record<string, unknown>>;
}

/** Note an abandoned WAL in the store before anything is changed, then tell the caller (it audits). */
async function noteAbandoned(o: OpenRegionWal, entry: Record<string, unknown>): Promise<void> {
  await o.store.setMeta(abandonedMeta, JSON.stringify([...(await pendingAbandoned(o.store)), entry]));
  o.onAbandoned(entry);
}

/**
 * The `wal-abandoned` entries are in the audit log: forget them. Until then every start
 * audits them again (at least once): a start that accepted a loss and died before its audit
 * entry left a store the next plain start passes (found by review).
 */
export async function abandonedAudited(store: Pick<MetaStore, "setMeta">): Promise<void> {
  await store.setMeta(abandonedMeta, "[]");
}

export class WalMissingError extends CrrError {
  constructor(dir: string, streams: Array<{ incarnation: string; lsn: number }>) {
    const what = streams.map((s) => `incarnation ${s.incarnation} up to LSN ${s.lsn}`).join(", ");
    const held =
      streams.length > 0
        ? `the store holds this region's stream (${what})`
        : "the store has served this region before (its bootstrap is done, and every start leaves a segment): records the WAL held and nothing else does may have been acknowledged";
    super(
      "wal_missing",
      `the WAL directory ${dir} holds no segment, but ${held}: is the WAL's volume mounted? Nothing was changed. To start anyway as a new incarnation: crr serve --config FILE --accept-wal-loss`,
    );
  }
}

/** Whether a bootstrap started and has not finished (the store holds only part of what the mesh decided). */
export async function bootstrapRunning(store: Pick<MetaStore, "getMeta">): Promise<boolean> {
  return (await store.getMeta(bootstrapMeta)) === "running";
}

/** Whether the region has no state of its own, marked durably before anything else is written. */
export async function needsBootstrap(store: MetaStore): Promise<boolean> {
  const mark = await store.getMeta(bootstrapMeta);
  if (mark === "running") return true;
  if (mark === "done" || !(await store.isEmpty())) return false;
  await store.setMeta(bootstrapMeta, "running");
  return true;
}

/** The store finished a bootstrap: a node ran on it, and every WAL open leaves a segment. */
async function ranBefore(store: MetaStore): Promise<boolean> {
  return (await store.getMeta(bootstrapMeta)) === "done";
}

async function retired(store: MetaStore): Promise<string[]> {
  return JSON.parse((await store.getMeta(retiredMeta)) ?? "[]") as string[];
}

async function retire(store: MetaStore, incarnations: string[]): Promise<void> {
  const all = new Set([...(await retired(store)), ...incarnations]);
  await store.setMeta(retiredMeta, JSON.stringify([...all]));
}

/** What opening the WAL needs of the store. */
export type WalOpenStore = ApplyStore & MetaStore & Pick<StreamStore, "streamVersions">;

/** This region's streams in the store whose WAL should still exist. */
async function liveStreams(
  store: WalOpenStore,
  region: string,
): Promise<Array<{ incarnation: string; lsn: number }>> {
  const gone = new Set(await retired(store));
  return (await store.watermarks()).filter(
    (w) => w.origin === region && w.lsn > 0 && !gone.has(w.incarnation),
  );
}

function hasSegments(dir: string): boolean {
  return fs.existsSync(dir) && fs.readdirSync(dir).some((n) => parseSegmentFileName(n) !== undefined);
}

export interface OpenRegionWal {
  region: string;
  dir: string;
  store: WalOpenStore;
  clock: HybridClock;
  acceptWalLoss: boolean;
  log: Logger;
  /** Open (recover) the WAL in `dir`. */
  open: () => Promise<Wal>;
  /** Audit what the operator's --accept-wal-loss did (awaited once the audit log is open). */
  onAbandoned: (entry: Record<string, unknown>) => void;
  /** Whether a stream of this region is this node's (not a fellow node's on a shared store); default all. */
  isOwn?: (incarnation: string) => boolean;
  /** The wall clock (the name of an abandoned WAL's directory). */
  nowMs: () => number;
  /**
   * Mark the store bootstrapping before a WAL is abandoned: the region then copies what its
   * peers hold before it answers (records the lost WAL held that the store lacks). False on a
   * store the region's nodes share: the mark would be every node's (not done there yet).
   */
  bootstrapAfterLoss: boolean;
}

/**
 * Mark the store bootstrapping after a lost WAL. The store itself is intact: the other
 * regions' streams it holds are whole through their watermarks (applied in order, policy
 * holes aside), so they are noted as seeded and the bootstrap does not copy them again (it
 * copied every peer's streams, a whole store's worth, to find a few own records). What it
 * copies is this region's own streams, which the lost WAL held, and what the rest lacks.
 */
async function markBootstrapAfterLoss(o: OpenRegionWal): Promise<void> {
  const held = (await o.store.watermarks()).filter((w) => w.origin !== o.region && w.lsn > 0);
  await noteSeeded(
    o.store,
    held.map((w) => ({ origin: w.origin, incarnation: w.incarnation, lsn: w.lsn })),
  );
  await o.store.setMeta(bootstrapMeta, "running");
}

export async function openRegionWal(o: OpenRegionWal): Promise<Wal> {
  // Entries an earlier start noted and did not live to audit.
  for (const entry of await pendingAbandoned(o.store)) o.onAbandoned(entry);
  if (!hasSegments(o.dir)) {
    const live = (await liveStreams(o.store, o.region)).filter((w) => o.isOwn?.(w.incarnation) ?? true);
    // A store older than the region's first own record (restored from a copy) holds no stream
    // of it, yet the WAL it ran with may have held acknowledged records (found by review: the
    // region started silently as a new incarnation). A store its nodes share is left out: a
    // node new to it has no WAL yet.
    const lost = live.length > 0 || (o.bootstrapAfterLoss && (await ranBefore(o.store)));
    if (lost && !o.acceptWalLoss) throw new WalMissingError(o.dir, live);
    if (lost) {
      // Before the new WAL exists: a crash after it must still bootstrap, and audit.
      await noteAbandoned(o, { reason: "the WAL directory held no segment", incarnations: live });
      if (o.bootstrapAfterLoss) await markBootstrapAfterLoss(o);
    }
  }
  let wal: Wal;
  try {
    wal = await o.open();
  } catch (err) {
    if (!o.acceptWalLoss || !(err instanceof AcknowledgedLossError || err instanceof SegmentCorruptError))
      throw err;
    const salvaged = await salvage(o);
    const aside = `${o.dir}.abandoned-${new Date(o.nowMs()).toISOString().replace(/[:.]/g, "-")}`;
    // Before the WAL is moved aside: a crash after it must still bootstrap (seed 306), and audit.
    await noteAbandoned(o, { reason: (err as Error).message, movedTo: aside, ...salvaged });
    if (o.bootstrapAfterLoss) await markBootstrapAfterLoss(o);
    fs.renameSync(o.dir, aside);
    o.log.error(
      { movedTo: aside, salvaged, refusal: (err as Error).message },
      "the operator accepted the loss of the WAL: starting as a new incarnation",
    );
    wal = await o.open();
  }
  if (o.acceptWalLoss && !wal.recovery.created)
    o.log.warn("--accept-wal-loss was given but the WAL recovered: nothing was abandoned");
  if (wal.recovery.created)
    await retire(
      o.store,
      (await o.store.watermarks())
        .filter((w) => w.origin === o.region)
        .map((w) => w.incarnation)
        .filter((i) => i !== wal.incarnation && (o.isOwn?.(i) ?? true)),
    );
  await observeOwnFloor(o.store, o.region, o.clock);
  return wal;
}

/** Every intact frame of every segment above the store's watermark, into the store (then it ships as an older incarnation). */
async function salvage(
  o: OpenRegionWal,
): Promise<{ incarnation?: string; salvaged: number; lastLsn?: number }> {
  let incarnation: string | undefined;
  let salvaged = 0;
  let lastLsn = 0;
  const names = fs
    .readdirSync(o.dir)
    .filter((n) => parseSegmentFileName(n) !== undefined)
    .sort();
  for (const name of names) {
    const image = fs.readFileSync(path.join(o.dir, name));
    const header = scanSegmentHeader(image, name);
    incarnation ??= header.incarnation;
    const above = await o.store.watermark(o.region, header.incarnation);
    const records: WalRecord[] = [];
    for (const run of runsOf(image, header.firstLsn)) {
      for (let p = run.offset; p < run.end;) {
        const r = decodeFrame(image, p);
        if (r.lsn > above) records.push({ ...r, flags: 0 });
        p += 8 + image.readUInt32LE(p + 4);
      }
    }
    if (records.length === 0) continue;
    await o.store.applyBatch({
      origin: o.region,
      incarnation: header.incarnation,
      firstLsn: records[0]!.lsn,
      lastLsn: records.at(-1)!.lsn,
      records,
      backfill: true,
    });
    salvaged += records.length;
    lastLsn = Math.max(lastLsn, records.at(-1)!.lsn);
    if ((await o.store.watermark(o.region, header.incarnation)) < lastLsn)
      await o.store.resetWatermark(o.region, header.incarnation, lastLsn);
  }
  return { incarnation, salvaged, lastLsn: lastLsn || undefined };
}

/** Never issue a timestamp at or below one this region already gave a record it holds. */
async function observeOwnFloor(store: WalOpenStore, region: string, clock: HybridClock): Promise<void> {
  for (const w of (await store.watermarks()).filter((x) => x.origin === region && x.lsn > 0)) {
    const [newest] = await store.streamVersions(region, w.incarnation, w.lsn, w.lsn, 1);
    if (newest) clock.observe(newest.hlc);
  }
}

export { bootstrapMeta };
