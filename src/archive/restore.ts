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
import type { ApplyStore, MetaStore, StoredRecord, StreamStore } from "../store/index.js";
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
  /** With `upToHoles`: the objects past the hole (a bootstrap writes what they hold, out of order). */
  beyond?: Array<SegmentObject & { key: string }>;
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
    let beyond: RestorePlanStream["beyond"];
    for (const [i, o] of objects.entries()) {
      if (o.lastLsn <= covered) {
        overlapping.push(o); // a shorter copy of what is already covered
        continue;
      }
      if (o.firstLsn > covered + 1 && only.upToHoles) {
        hole = { fromLsn: covered + 1, toLsn: o.firstLsn - 1 };
        beyond = objects.slice(i);
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
        ...(hole ? { hole, beyond } : {}),
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
    /**
     * With `upToDamage`, a stream cut short: what the objects past the cut held, written
     * without moving the watermark; the objects past it refused as damaged.
     */
    beyond?: { records: number; objects: number; damaged: string[] };
  }>;
  records: number;
  objects: number;
}

/** Apply every archived record with HLC wall time <= toMs (all when undefined) that `policy` lets this region hold. */
export async function restoreInto(o: {
  store: ArchiveStore;
  plan: RestorePlanStream[];
  into: Pick<ApplyStore, "applyLocal"> &
    Pick<StreamStore, "repair" | "streamVersions"> &
    Pick<MetaStore, "syncNow">;
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
   * What the intact objects past a cut hold is written too, out of order (`beyond`): the
   * watermark stays at the cut, and the peers give what the hole held.
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
    const keep = (r: WalRecord) =>
      s.origin === o.self ||
      (o.policy.accepts(s.origin, r.tenant) && sends(s.origin, s.incarnation, r.tenant));
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
    let rest: Array<SegmentObject & { key: string }> = checked ? (s.beyond ?? []) : [];
    for (const [i, obj] of (checked ? s.objects : []).entries()) {
      if (past) break;
      const frames = await damaged(() => framesOf(obj));
      if (!frames) {
        // Past a damaged object: the chain's later objects, and the shorter copies not taken
        // that reach past what was applied (they may hold some of its LSNs intact).
        const after = s.overlapping.filter((x) => x.lastLsn > applied);
        rest = [...s.objects.slice(i + 1), ...after].sort(
          (a, b) => a.firstLsn - b.firstLsn || b.lastLsn - a.lastLsn,
        );
        break;
      }
      report.objects++;
      const fresh = frames.filter((r) => r.lsn > applied);
      const cut = o.toMs === undefined ? -1 : fresh.findIndex((r) => r.hlc.wallMs > o.toMs!);
      const taken = cut === -1 ? fresh : fresh.slice(0, cut);
      past = cut !== -1;
      if (taken.length === 0) continue;
      const kept = taken.filter(keep);
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
    const beyond =
      cutWhy && o.upToDamage && rest.length > 0
        ? await writeBeyond({ s, objects: rest, applied, keep, framesOf, into: o.into })
        : undefined;
    const times = [lastMs, beyond?.lastMs].filter((t): t is number => t !== undefined);
    report.streams.push({
      origin: s.origin,
      incarnation: s.incarnation,
      fromLsn: s.firstLsn,
      toLsn: applied,
      records,
      lastMs: times.length > 0 ? Math.max(...times) : undefined,
      reachesTime: past,
      archivedLsn: s.archivedLsn,
      ...(cutWhy ? { cut: cutWhy } : {}),
      ...(beyond ? { beyond: beyond.done } : {}),
    });
    report.records += records + (beyond?.done.records ?? 0);
  }
  await o.into.syncNow();
  return report;
}

/**
 * What the intact objects past a stream's cut hold above `applied`, written as versions
 * established outside the stream (the store's repair: the rule decides, the watermark stays
 * at the cut): a record only this region and its archive held is not lost to a hole or to a
 * damaged object before it. A damaged object there is passed over and named; two versions of
 * one LSN among them (checked first, as for the chain) write nothing of the stream.
 */
async function writeBeyond(b: {
  s: RestorePlanStream;
  objects: Array<SegmentObject & { key: string }>;
  applied: number;
  keep: (r: WalRecord) => boolean;
  framesOf: (obj: SegmentObject & { key: string }) => Promise<WalRecord[]>;
  into: Pick<StreamStore, "repair" | "streamVersions">;
}): Promise<{ done: NonNullable<RestoreReport["streams"][number]["beyond"]>; lastMs?: number }> {
  const damaged: string[] = [];
  const framesOf = async (obj: SegmentObject & { key: string }) => {
    try {
      return await b.framesOf(obj);
    } catch (err) {
      if (!(err instanceof ArchiveDamageError)) throw err;
      if (!damaged.includes(err.message)) damaged.push(err.message);
      return undefined;
    }
  };
  const ranges = objectOverlaps(b.objects);
  const versions = new TwoVersions(b.s, ranges, true);
  try {
    for (const obj of b.objects.filter((x) => ranges.some(([a, z]) => x.firstLsn <= z && x.lastLsn >= a)))
      versions.note(obj.key, (await framesOf(obj)) ?? []);
  } catch (err) {
    if (!(err instanceof ArchiveDamageError)) throw err;
    return { done: { records: 0, objects: 0, damaged: [...damaged, err.message] } };
  }
  let reach = b.applied;
  let records = 0;
  let objects = 0;
  let lastMs: number | undefined;
  for (const obj of b.objects) {
    const frames = await framesOf(obj);
    if (!frames) continue;
    objects++;
    // An LSN the store holds already is left as it is (`crr rebuild` replayed the region's
    // WAL first: its version is the one acknowledged); repair would replace another version.
    const held = new Set(
      (
        await b.into.streamVersions(b.s.origin, b.s.incarnation, obj.firstLsn, obj.lastLsn, frames.length)
      ).map((v) => v.lsn),
    );
    const fresh = frames.filter((r) => r.lsn > reach && !held.has(r.lsn) && b.keep(r));
    reach = Math.max(reach, obj.lastLsn);
    for (let i = 0; i < fresh.length; i += 1000)
      await b.into.repair(fresh.slice(i, i + 1000).map((r) => versionOf(b.s, r)));
    records += fresh.length;
    lastMs = fresh.at(-1)?.hlc.wallMs ?? lastMs;
  }
  return { done: { records, objects, damaged }, lastMs };
}

function versionOf(s: { origin: string; incarnation: string }, r: WalRecord): StoredRecord {
  const { key, tenant, outcome, bodyJson, lsn, hlc } = r;
  return { key, tenant, outcome, bodyJson, origin: s.origin, incarnation: s.incarnation, lsn, hlc };
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
  const versions = new TwoVersions(s, chainOverlaps(s));
  const involved = [...s.objects.filter((x) => versions.touches(x)), ...s.overlapping].sort(
    (a, b) => a.firstLsn - b.firstLsn,
  );
  for (const obj of involved) {
    let frames: WalRecord[];
    try {
      frames = await framesOf(obj);
    } catch (err) {
      // A damaged object is no version of anything: one taken is met again where the chain
      // reaches it (a restore fails there, a bootstrap's seed cuts there).
      if (!(err instanceof ArchiveDamageError)) throw err;
      continue;
    }
    versions.note(obj.key, frames);
  }
}

/** The LSNs a chain's objects share with each other or with the objects not taken. */
function chainOverlaps(s: RestorePlanStream): Array<[number, number]> {
  const ranges: Array<[number, number]> = s.overlapping.map((x) => [x.firstLsn, x.lastLsn]);
  s.objects.forEach((x, i) => {
    const before = s.objects[i - 1];
    if (before && x.firstLsn <= before.lastLsn) ranges.push([x.firstLsn, before.lastLsn]);
  });
  return ranges;
}

/** The LSNs objects sorted by first LSN share with any object before them. */
function objectOverlaps(objects: readonly SegmentObject[]): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let reach = 0;
  for (const x of objects) {
    if (x.firstLsn <= reach) ranges.push([x.firstLsn, Math.min(x.lastLsn, reach)]);
    reach = Math.max(reach, x.lastLsn);
  }
  return ranges;
}

class TwoVersions {
  private readonly seen = new Map<number, { record: string; key: string }>();

  constructor(
    private readonly s: { origin: string; incarnation: string },
    private readonly ranges: ReadonlyArray<[number, number]>,
    private readonly past = false,
  ) {}

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
          `the archive holds two versions of LSN ${r.lsn} of ${this.s.origin}/${this.s.incarnation} (${seen.key} and ${key}): which one was acknowledged is unknown; nothing of this stream was restored${this.past ? " past its cut" : ""}`,
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
  cut: Array<{
    origin: string;
    incarnation: string;
    lsn: number;
    archivedLsn: number;
    why: string;
    /** What the objects past the cut held, written without moving the watermark (RestoreReport). */
    beyond?: { records: number; objects: number; damaged: string[] };
  }>;
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
  into: Pick<ApplyStore, "applyLocal"> &
    Pick<StreamStore, "repair" | "streamVersions"> &
    Pick<MetaStore, "syncNow">;
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
              ...(s.beyond ? { beyond: s.beyond } : {}),
            },
          ]
        : [],
    ),
    newestMs: { own: newest(true), other: newest(false) },
  };
}
