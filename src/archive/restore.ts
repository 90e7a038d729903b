/**
 * Restore from the archive: a store as of a point in time, built from every origin's
 * archived WAL. An origin's records carry increasing hybrid timestamps, so "as of T" is a
 * prefix of each origin's stream (every record whose HLC wall time is at most T), and the
 * merge rule makes the order of origins irrelevant: the result is the store a region that
 * had applied exactly those records would hold.
 *
 * Planned from the keys before anything is read: per origin and incarnation, the objects
 * that cover its LSNs from 1 (of several objects with one first LSN, the longest); a
 * stretch of LSNs no object holds is refused, naming it, before anything is written. Each object is
 * then checked as the archiver checked it (its origin's seal over its bytes, a whole scan of
 * the LSN range its key names), and objects that share LSNs must agree on them.
 */
import type { ReplicationPolicy } from "../config/index.js";
import { checkSeal, type KeyRing } from "../protocol/index.js";
import type { ApplyStore, MetaStore } from "../store/index.js";
import { decodeFrames, scanSegment, segmentHeaderBytes, type WalRecord } from "../wal/index.js";
import { sendsEverything, streamAudiences, streamId } from "./audience.js";
import { parseSegmentObjectKey, segmentObjectKey, type SegmentObject } from "./keys.js";
import type { ArchiveStore, StoredObject } from "./s3-store.js";

export interface RestorePlanStream {
  origin: string;
  incarnation: string;
  objects: Array<SegmentObject & { key: string }>;
  /** Objects not taken whose LSNs the taken ones cover too: read to check they agree. */
  overlapping: Array<SegmentObject & { key: string }>;
  firstLsn: number;
  lastLsn: number;
  /** With `upToHoles`: the LSNs missing after `lastLsn` although the archive holds objects past them. */
  hole?: { fromLsn: number; toLsn: number };
  /** The last LSN any object of the stream holds (past a hole too). */
  archivedLsn: number;
}

/**
 * An archived object that does not hold what its key and its origin's seal say, or two
 * versions of one LSN: lasting (reading it again gives the same), unlike a failed request.
 */
export class ArchiveDamageError extends Error {}

export class ArchiveGapError extends Error {
  constructor(
    readonly origin: string,
    readonly incarnation: string,
    readonly fromLsn: number,
    readonly toLsn: number,
  ) {
    super(
      `the archive holds no object with LSNs ${fromLsn}..${toLsn} of ${origin} (incarnation ${incarnation}): a restore would miss them`,
    );
  }
}

/** Every key under `prefix`, with start-after pages (the only full listing crr makes: a restore's). */
export async function listAll(store: ArchiveStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for (;;) {
    const page = await store.list(prefix, keys.at(-1), 1000);
    keys.push(...page);
    if (page.length < 1000) return keys;
  }
}

/**
 * The objects that cover each origin's stream, per incarnation; throws ArchiveGapError on a
 * hole. With `upToHoles` (a bootstrap, which gets the rest from its peers): each stream's
 * chain from LSN 1 up to its first hole instead, the hole named (no object when LSN 1 is
 * missing).
 */
export function planRestore(
  keys: readonly string[],
  only: { prefix: string; origins: readonly string[]; upToHoles?: boolean },
): RestorePlanStream[] {
  const streams = new Map<string, Array<SegmentObject & { key: string }>>();
  for (const key of keys) {
    const o = parseSegmentObjectKey(key);
    // Only this deployment's keys (not another one nested under the prefix) of its regions.
    if (!o || key !== segmentObjectKey(only.prefix, o) || !only.origins.includes(o.origin)) continue;
    const id = `${o.origin}/${o.incarnation}`;
    streams.set(id, [...(streams.get(id) ?? []), { ...o, key }]);
  }
  const plan: RestorePlanStream[] = [];
  for (const objects of streams.values()) {
    objects.sort((a, b) => a.firstLsn - b.firstLsn || b.lastLsn - a.lastLsn);
    const chosen: Array<SegmentObject & { key: string }> = [];
    const overlapping: Array<SegmentObject & { key: string }> = [];
    let covered = 0; // every incarnation's stream starts at LSN 1
    let hole: RestorePlanStream["hole"];
    for (const o of objects) {
      if (o.lastLsn <= covered) {
        overlapping.push(o); // a shorter copy of what is already covered
        continue;
      }
      if (o.firstLsn > covered + 1 && only.upToHoles) {
        hole = { fromLsn: covered + 1, toLsn: o.firstLsn - 1 };
        break;
      }
      if (o.firstLsn > covered + 1)
        throw new ArchiveGapError(o.origin, o.incarnation, covered + 1, o.firstLsn - 1);
      chosen.push(o);
      covered = o.lastLsn;
    }
    const { origin, incarnation } = objects[0]!;
    if (chosen.length > 0 || hole)
      plan.push({
        ...{ origin, incarnation, objects: chosen, overlapping, firstLsn: 1, lastLsn: covered },
        archivedLsn: objects.reduce((m, o) => Math.max(m, o.lastLsn), 0),
        ...(hole ? { hole } : {}),
      });
  }
  return plan.sort((a, b) => a.origin.localeCompare(b.origin) || a.incarnation.localeCompare(b.incarnation));
}

export interface RestoreReport {
  streams: Array<{
    origin: string;
    incarnation: string;
    fromLsn: number;
    toLsn: number;
    records: number;
    /** The HLC wall time of the last record taken. */
    lastMs: number | undefined;
    /** Whether the archive holds a record after the time (else it may end before it). */
    reachesTime: boolean;
    /** With `upToDamage`: why the stream stops at `toLsn` though the archive holds objects past it (a hole, a damaged object). */
    cut?: string;
    /** The last LSN any object of the stream holds. */
    archivedLsn: number;
  }>;
  records: number;
  objects: number;
}

/** Apply every archived record with HLC wall time <= toMs (all when undefined) that `policy` lets this region hold. */
export async function restoreInto(o: {
  store: ArchiveStore;
  plan: RestorePlanStream[];
  into: Pick<ApplyStore, "applyLocal"> & Pick<MetaStore, "syncNow">;
  toMs: number | undefined;
  policy: ReplicationPolicy;
  self: string;
  /** Every origin's keys: each object's seal is checked before it is used. */
  keys: KeyRing;
  objectBytesMax: number;
  /** Whether another origin's stream, by its published audience, sends this region `tenant` (audience.ts); default: every tenant. */
  originSends?: (origin: string, incarnation: string, tenant: string) => boolean;
  /**
   * A bootstrap's seed: a damaged object (ArchiveDamageError) ends its stream before it
   * instead of failing the restore, said in the stream's `cut` (as a hole of the plan is).
   */
  upToDamage?: boolean;
}): Promise<RestoreReport> {
  const sends = o.originSends ?? (() => true);
  const report: RestoreReport = { streams: [], records: 0, objects: 0 };
  for (const s of o.plan) {
    let applied = s.firstLsn - 1;
    let records = 0;
    let past = false;
    let lastMs: number | undefined;
    let cutWhy = s.hole && `the archive holds no object with LSNs ${s.hole.fromLsn}..${s.hole.toLsn}`;
    const framesOf = async (obj: SegmentObject & { key: string }) =>
      checkedFrames(obj, await o.store.get(obj.key, o.objectBytesMax), o.keys);
    const damaged = async <T>(read: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await read();
      } catch (err) {
        if (!o.upToDamage || !(err instanceof ArchiveDamageError)) throw err;
        cutWhy = err.message;
        return undefined;
      }
    };
    const checked = await damaged(async () => (await checkVersions(s, framesOf), true));
    for (const obj of checked ? s.objects : []) {
      if (past) break;
      const frames = await damaged(() => framesOf(obj));
      if (!frames) break;
      report.objects++;
      const fresh = frames.filter((r) => r.lsn > applied);
      const cut = o.toMs === undefined ? -1 : fresh.findIndex((r) => r.hlc.wallMs > o.toMs!);
      const taken = cut === -1 ? fresh : fresh.slice(0, cut);
      past = cut !== -1;
      if (taken.length === 0) continue;
      const kept = taken.filter(
        (r) =>
          s.origin === o.self ||
          (o.policy.accepts(s.origin, r.tenant) && sends(s.origin, s.incarnation, r.tenant)),
      );
      const r = await o.into.applyLocal({
        origin: s.origin,
        incarnation: s.incarnation,
        firstLsn: taken[0]!.lsn,
        lastLsn: taken.at(-1)!.lsn,
        records: kept,
      });
      if (r.status === "gap")
        throw new ArchiveGapError(s.origin, s.incarnation, r.watermark + 1, taken[0]!.lsn - 1);
      applied = taken.at(-1)!.lsn;
      lastMs = taken.at(-1)!.hlc.wallMs;
      records += kept.length;
    }
    report.streams.push({
      origin: s.origin,
      incarnation: s.incarnation,
      fromLsn: s.firstLsn,
      toLsn: applied,
      records,
      lastMs,
      reachesTime: past,
      archivedLsn: s.archivedLsn,
      ...(cutWhy ? { cut: cutWhy } : {}),
    });
    report.records += records;
  }
  await o.into.syncNow();
  return report;
}

/**
 * Objects of one stream that hold the same LSNs must hold the same records: two versions of
 * an LSN (a WAL that issued archived LSNs again) are refused, naming both objects, before
 * anything of the stream is applied. Only the objects that share LSNs are read for it (after
 * an origin's restart, one object overlaps the ones before it), and only those LSNs kept.
 */
async function checkVersions(
  s: RestorePlanStream,
  framesOf: (obj: SegmentObject & { key: string }) => Promise<WalRecord[]>,
): Promise<void> {
  const versions = new TwoVersions(s);
  const involved = [...s.objects.filter((x) => versions.touches(x)), ...s.overlapping].sort(
    (a, b) => a.firstLsn - b.firstLsn,
  );
  for (const obj of involved) {
    let frames: WalRecord[];
    try {
      frames = await framesOf(obj);
    } catch (err) {
      if (s.objects.includes(obj)) throw err;
      continue; // an object not taken that is not the origin's: no version of anything
    }
    versions.note(obj.key, frames);
  }
}

class TwoVersions {
  private readonly ranges: Array<[number, number]> = [];
  private readonly seen = new Map<number, { record: string; key: string }>();

  constructor(private readonly s: RestorePlanStream) {
    for (const x of s.overlapping) this.ranges.push([x.firstLsn, x.lastLsn]);
    s.objects.forEach((x, i) => {
      const before = s.objects[i - 1];
      if (before && x.firstLsn <= before.lastLsn) this.ranges.push([x.firstLsn, before.lastLsn]);
    });
  }

  touches(x: SegmentObject): boolean {
    return this.ranges.some(([a, b]) => x.firstLsn <= b && x.lastLsn >= a);
  }

  note(key: string, frames: readonly WalRecord[]): void {
    for (const r of frames) {
      if (!this.ranges.some(([a, b]) => r.lsn >= a && r.lsn <= b)) continue;
      const record = JSON.stringify(r);
      const seen = this.seen.get(r.lsn);
      if (!seen) this.seen.set(r.lsn, { record, key });
      else if (seen.record !== record)
        throw new ArchiveDamageError(
          `the archive holds two versions of LSN ${r.lsn} of ${this.s.origin}/${this.s.incarnation} (${seen.key} and ${key}): which one was acknowledged is unknown; nothing of this stream was restored`,
        );
    }
  }
}

/**
 * An archived object's frames, checked as the archiver checked it before it counted: sealed
 * by its origin (the signature covers origin, incarnation, LSN range, SHA-256 and length),
 * and a whole scan of the LSN range its key names.
 */
export function checkedFrames(
  obj: SegmentObject & { key: string },
  got: StoredObject,
  keys: KeyRing,
): WalRecord[] {
  const sealed = checkSeal(keys, { ...obj, body: got.body }, got.seal);
  if (sealed !== "ok") throw new ArchiveDamageError(`archived ${obj.key} refused: ${sealed}`);
  try {
    const scan = scanSegment(got.body, { file: obj.key, last: false });
    if (
      scan.header.region !== obj.origin ||
      scan.header.incarnation !== obj.incarnation ||
      scan.header.firstLsn !== obj.firstLsn ||
      scan.lastLsn !== obj.lastLsn
    )
      throw new Error(
        `archived ${obj.key} holds ${scan.header.region}/${scan.header.incarnation} LSNs ${scan.header.firstLsn}..${scan.lastLsn}, not what its key names`,
      );
    return decodeFrames(got.body.subarray(segmentHeaderBytes), { source: obj.key, firstLsn: obj.firstLsn });
  } catch (err) {
    throw new ArchiveDamageError((err as Error).message);
  }
}

/** What a bootstrap took from the archive before asking its peers. */
export interface ArchiveSeed {
  /** Streams of other regions left to the peers, and why (no trusted audience, or not sent here whole). */
  passedOver: string[];
  records: number;
  objects: number;
  /** Each stream restored whole from LSN 1 through `lsn` (its watermark is set there). */
  streams: Array<{ origin: string; incarnation: string; lsn: number }>;
  /**
   * Streams that stop at `lsn` though the archive holds objects up to `archivedLsn`: a hole,
   * or a damaged object (`why`).
   */
  cut: Array<{ origin: string; incarnation: string; lsn: number; archivedLsn: number; why: string }>;
  /**
   * The newest hybrid wall time restored, of this region's own records (a floor for its
   * clock) and of the other regions' (a floor only within the skew allowed).
   */
  newestMs: { own?: number; other?: number };
}

/**
 * Fill an empty store from the archive before a bootstrap copies from the peers: every
 * origin's archived chain from LSN 1 up to its first hole, checked object by object; the
 * peers then give only what is newer (streams resume at the watermarks set here, and their
 * winners' export leaves out what these streams cover).
 */
export async function seedFromArchive(o: {
  store: ArchiveStore;
  prefix: string;
  origins: readonly string[];
  into: Pick<ApplyStore, "applyLocal"> & Pick<MetaStore, "syncNow">;
  policy: ReplicationPolicy;
  self: string;
  keys: KeyRing;
  objectBytesMax: number;
}): Promise<ArchiveSeed> {
  const prefix = o.prefix.replace(/^\/+|\/+$/g, "");
  const keys = await listAll(o.store, prefix === "" ? "" : `${prefix}/`);
  const planned = planRestore(keys, { prefix, origins: o.origins, upToHoles: true });
  // Another region's stream only when its audience sends this one everything (an object holds
  // every tenant its origin wrote): the peers give the rest, withholding what is not for us.
  const { audiences, passedOver } = await streamAudiences(o.store, o.keys, prefix, o.self, planned);
  for (const [id, a] of audiences)
    if (!sendsEverything(a, o.self))
      passedOver.set(id, `${id}: its policy (${a.mode}) does not send ${o.self} every record`);
  const plan = planned.filter((s) => !passedOver.has(streamId(s.origin, s.incarnation)));
  const report = await restoreInto({ ...o, plan, toMs: undefined, upToDamage: true });
  const newest = (own: boolean) => {
    const times = report.streams
      .filter((s) => (s.origin === o.self) === own)
      .map((s) => s.lastMs)
      .filter((t): t is number => t !== undefined);
    return times.length > 0 ? Math.max(...times) : undefined;
  };
  return {
    passedOver: [...passedOver.values()],
    records: report.records,
    objects: report.objects,
    streams: report.streams
      .filter((s) => s.toLsn > 0)
      .map((s) => ({ origin: s.origin, incarnation: s.incarnation, lsn: s.toLsn })),
    cut: report.streams.flatMap((s) =>
      s.cut
        ? [
            {
              origin: s.origin,
              incarnation: s.incarnation,
              lsn: s.toLsn,
              archivedLsn: s.archivedLsn,
              why: s.cut,
            },
          ]
        : [],
    ),
    newestMs: { own: newest(true), other: newest(false) },
  };
}
