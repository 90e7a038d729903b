/**
 * Copying records from a peer into this region's store: what a region that lost its state
 * (startup bootstrap, `crr rebuild`) does before it trusts its own answers. Two shapes:
 * - a whole stream by LSN (winners and conflict losers), for a peer's own streams (every
 *   incarnation it holds) or an older incarnation of ours: complete, so the stream's
 *   watermark may be set where it ends;
 * - every winning version (export pages), for the rest: dedup answers are right at once,
 *   and each origin re-ships its stream from our watermark (0) so nothing is taken on trust.
 */
import type { ArchiveSeed } from "../archive/index.js";
import type { ExportQuery, PeerLink, WatermarksView } from "../link/index.js";
import type { ApplyStore, MetaStore, StoredRecord, StreamStore } from "../store/index.js";

type Hlc = StoredRecord["hlc"];

/** What copying needs of the store. */
export type CopyStore = Pick<StreamStore, "repair" | "streamVersions"> &
  Pick<MetaStore, "getMeta" | "setMeta"> &
  Pick<ApplyStore, "watermark" | "resetWatermark">;

/** Move a stream's watermark up to `lsn` (never down). */
export async function raiseWatermark(
  store: Pick<ApplyStore, "watermark" | "resetWatermark">,
  origin: string,
  incarnation: string,
  lsn: number,
): Promise<void> {
  if ((await store.watermark(origin, incarnation)) < lsn)
    await store.resetWatermark(origin, incarnation, lsn);
}

const pageRecordsMax = 5000;

/**
 * Copy stream (origin, incarnation) LSNs [fromLsn, toLsn] from `link`. A copy the peer holds
 * but no longer intact (changed outside the engine) is not copied, and the stream counts as
 * covered only up to the LSN before it (`coveredThrough`): its origin re-ships from there.
 * `complete`: the peer is the stream's origin, which holds every record of its own stream
 * (winner or conflict loser) whatever the tenant: an LSN it lacks is one it has not got back
 * (yet), so the stream counts as covered only below the first one (its shipper later sends
 * what it has regained there, or skips the hole, audited). Without `complete`, LSNs a peer
 * lacks are tenants its policy never sent it.
 *
 * LSNs the peer withheld (records of a tenant its policy keeps from this region) are held
 * there, not holes. One whose tenant `keep` takes (the two regions' policies differ, as
 * during a rolling widening) was not given: the stream counts as covered only below it,
 * complete or not, and its origin's shipper sends it once the policies agree.
 */
export async function copyStream(
  link: PeerLink,
  store: CopyStore,
  s: { origin: string; incarnation: string; fromLsn: number; toLsn: number },
  keep: Keep,
  complete = false,
): Promise<{
  copied: number;
  newest: StoredRecord["hlc"] | undefined;
  coveredThrough: number;
  /** LSNs whose copy there was not intact (left out). */
  damaged: number[];
  /** LSN ranges the peer does not hold at all. */
  holes: LsnRange[];
}> {
  let copied = 0;
  let newest: StoredRecord["hlc"] | undefined;
  let coveredThrough = s.toLsn;
  let expected = s.fromLsn;
  const damaged: number[] = [];
  const holes: LsnRange[] = [];
  for (let from: number | undefined = s.fromLsn; from !== undefined && from <= s.toLsn;) {
    const page = await link.streamRecords({ ...s, fromLsn: from, limit: pageRecordsMax });
    // Withheld LSNs are held by the peer, never holes (its WAL would withhold them too). One
    // this region takes (the two policies differ) was not given: covered only below it.
    const withheld = page.withheld ?? [];
    for (const w of withheld) if (keep(w)) coveredThrough = Math.min(coveredThrough, w.lsn - 1);
    const held =
      withheld.length === 0
        ? page.versions
        : [...page.versions, ...withheld.map((w) => ({ lsn: w.lsn, intact: true }))].sort(byLsn);
    for (const v of held) {
      if (!v.intact) damaged.push(v.lsn);
      if (!v.intact) coveredThrough = Math.min(coveredThrough, v.lsn - 1);
      if (complete && v.lsn > expected) coveredThrough = Math.min(coveredThrough, expected - 1);
      if (v.lsn > expected) holes.push({ from: expected, to: v.lsn - 1 });
      expected = Math.max(expected, v.lsn + 1);
    }
    const kept = page.versions.filter((v) => v.intact && keep(v)).map(({ intact: _intact, ...v }) => v);
    await store.repair(kept);
    copied += kept.length;
    for (const v of kept) if (!newest || compare(v.hlc, newest) > 0) newest = v.hlc;
    from = page.next;
  }
  if (complete && expected <= s.toLsn) coveredThrough = Math.min(coveredThrough, expected - 1);
  if (expected <= s.toLsn) holes.push({ from: expected, to: s.toLsn });
  return { copied, newest, coveredThrough, damaged, holes };
}

/** Which versions a copy keeps (by tenant: withheld LSNs carry only that). */
export type Keep = (v: Pick<StoredRecord, "tenant">) => boolean;

const byLsn = (a: { lsn: number }, b: { lsn: number }) => a.lsn - b.lsn;

export interface LsnRange {
  from: number;
  to: number;
}

/** LSNs one walRecords call asks for (the route's bound). */
const walLsnsMax = 1000;

/**
 * The records of `link`'s peer's own current stream (incarnation) in `holes` that its store
 * lacks but its WAL still holds, copied from the WAL: the origin's WAL is its truth, and a
 * record missing from its store there was removed outside the engine (a hand delete, rows
 * lost). A copy of the store alone would spread the loss, and with no region left holding
 * the record no divergence would show it (the simulator, seed 106: a region bootstrapped
 * from a peer whose operator had just deleted a key by hand; the record then survived only
 * in the origin's WAL). With the copy here the divergence shows against the origin, whose
 * reconcile puts the record back from its WAL. LSNs its WAL no longer holds are skipped (the
 * WAL answers only those it holds); if the peer started a new incarnation meanwhile, the
 * rest is left (its WAL no longer speaks for this stream).
 */
export async function copyHolesFromWal(
  link: PeerLink,
  store: Pick<CopyStore, "repair">,
  incarnation: string,
  holes: readonly LsnRange[],
  keep: Keep,
): Promise<{
  copied: number;
  newest: StoredRecord["hlc"] | undefined;
  /** The first LSN of `holes` the WAL did not give (undefined: it gave them all). */
  firstUnfilled: number | undefined;
}> {
  let copied = 0;
  let newest: StoredRecord["hlc"] | undefined;
  let firstUnfilled: number | undefined;
  for (const h of holes) {
    for (let from = h.from; from <= h.to; from += walLsnsMax) {
      const lsns = Array.from({ length: Math.min(walLsnsMax, h.to - from + 1) }, (_, i) => from + i);
      const a = await link.walRecords(lsns);
      if (a.incarnation !== incarnation) return { copied, newest, firstUnfilled: firstUnfilled ?? from };
      const given = new Set(a.records.filter((v) => v.incarnation === incarnation).map((v) => v.lsn));
      // Withheld: a tenant the origin's policy keeps from this region; given unless `keep` wants it.
      for (const w of a.withheld ?? []) if (!keep(w)) given.add(w.lsn);
      firstUnfilled ??= lsns.find((l) => !given.has(l));
      const kept = a.records.filter((v) => v.incarnation === incarnation && keep(v));
      await store.repair(kept);
      copied += kept.length;
      for (const v of kept) if (!newest || compare(v.hlc, newest) > 0) newest = v.hlc;
    }
  }
  return { copied, newest, firstUnfilled };
}

/**
 * Copy every winning version `link` holds that `keep` accepts (but those of `covered` streams
 * at or below their LSN). A peer that left out versions of a tenant this region takes
 * (`takes`: the two regions' policies differ, as during a rolling policy change) fails the
 * copy, to be asked again: no shipper re-ships another region's records, and a record held
 * only as a winner there would otherwise be missing here for good.
 */
export async function copyWinners(
  link: PeerLink,
  store: CopyStore,
  keep: (v: StoredRecord) => boolean,
  covered: ExportQuery["covered"] | undefined,
  self: string,
  takes: (tenant: string) => boolean,
): Promise<{ copied: number; newest: NewestCopied }> {
  let copied = 0;
  const newest: NewestCopied = {};
  let after: { bucket: number; key: string } | undefined;
  do {
    const page = await link.exportPage({
      after,
      limit: pageRecordsMax,
      ...(covered && covered.length > 0 ? { covered } : {}),
    });
    const refused = (page.withheldTenants ?? []).filter(takes);
    if (refused.length > 0)
      throw new Error(
        `peer ${link.peer} withholds tenant(s) ${refused.join(", ")} that this region's policy takes: the two regions' policies differ (a rolling policy change not yet done everywhere?)`,
      );
    const kept = page.versions.filter(keep);
    await store.repair(kept);
    copied += kept.length;
    for (const v of kept) laterOf(newest, v.origin === self ? "own" : "other", v.hlc);
    after = page.next;
  } while (after);
  return { copied, newest };
}

/**
 * The newest stamps a copy brought: of this region's own records (any incarnation: its own
 * past, a floor for its clock however far ahead) and of the other regions' (a floor only
 * within the skew allowed: startup.ts).
 */
export interface NewestCopied {
  own?: Hlc;
  other?: Hlc;
}

function laterOf(n: NewestCopied, side: keyof NewestCopied, h: Hlc | undefined): void {
  const was = n[side];
  if (h && (!was || compare(h, was) > 0)) n[side] = h;
}

/** A stream a bootstrap's store holds whole from LSN 1 through `lsn` (from the archive or `crr bootstrap`). */
export type SeededStream = NonNullable<ExportQuery["covered"]>[number];

const seededMeta = "bootstrap_seeded";

/** The streams seeded into this store before its bootstrap's copy from the peers (kept across restarts). */
export async function seededStreams(store: Pick<CopyStore, "getMeta">): Promise<SeededStream[]> {
  return JSON.parse((await store.getMeta(seededMeta)) ?? "[]") as SeededStream[];
}

/** Note streams seeded whole (the furthest LSN of each wins); `undefined` forgets them all (the bootstrap is done). */
export async function noteSeeded(
  store: Pick<CopyStore, "getMeta" | "setMeta">,
  streams: SeededStream[] | undefined,
): Promise<void> {
  if (!streams) return store.setMeta(seededMeta, "[]");
  const all = new Map((await seededStreams(store)).map((s) => [`${s.origin}/${s.incarnation}`, s]));
  for (const s of streams) {
    const seen = all.get(`${s.origin}/${s.incarnation}`);
    if (!seen || s.lsn > seen.lsn) all.set(`${s.origin}/${s.incarnation}`, s);
  }
  await store.setMeta(seededMeta, JSON.stringify([...all.values()]));
}

const cutMeta = "bootstrap_archive_cut";

/** A stream the archive holds only up to a hole or a damaged object, though it holds objects through `archivedLsn`. */
export type CutStream = ArchiveSeed["cut"][number];

/** The archive's cut streams a seed of this store met (kept across restarts until the bootstrap is done). */
export async function cutStreams(store: Pick<CopyStore, "getMeta">): Promise<CutStream[]> {
  return JSON.parse((await store.getMeta(cutMeta)) ?? "[]") as CutStream[];
}

/** Note cut streams (the one reaching furthest of each wins); `undefined` forgets them all (the bootstrap is done). */
export async function noteCut(
  store: Pick<CopyStore, "getMeta" | "setMeta">,
  cut: CutStream[] | undefined,
): Promise<void> {
  if (!cut) return store.setMeta(cutMeta, "[]");
  const all = new Map((await cutStreams(store)).map((c) => [`${c.origin}/${c.incarnation}`, c]));
  for (const c of cut) {
    const seen = all.get(`${c.origin}/${c.incarnation}`);
    if (!seen || c.archivedLsn > seen.archivedLsn) all.set(`${c.origin}/${c.incarnation}`, c);
  }
  await store.setMeta(cutMeta, JSON.stringify([...all.values()]));
}

/**
 * The LSNs of `c`'s stream past its cut, through the last one the archive holds, that the
 * store lacks (as `[from, to]` ranges): what neither the archive nor the peers gave.
 */
export async function missingAfterCut(
  store: Pick<CopyStore, "streamVersions">,
  c: CutStream,
): Promise<Array<[number, number]>> {
  const missing: Array<[number, number]> = [];
  let next = c.lsn + 1;
  const gap = (to: number) => {
    if (to >= next) missing.push([next, to]);
  };
  for (let from = next; from <= c.archivedLsn;) {
    const page = await store.streamVersions(c.origin, c.incarnation, from, c.archivedLsn, 10_000);
    for (const v of page) {
      gap(v.lsn - 1);
      next = Math.max(next, v.lsn + 1);
    }
    if (page.length < 10_000) break;
    from = page.at(-1)!.lsn + 1;
  }
  gap(c.archivedLsn);
  return missing;
}

/**
 * Seed an empty store with `peer`'s own streams, whole from LSN 1 up to the first record it
 * lacks (`crr bootstrap --from PEER`): returns the streams seeded.
 */
export async function seedFromPeer(
  m: Omit<MeshCopy, "views" | "links"> & { link: PeerLink; view: WatermarksView },
): Promise<{ copied: number; streams: SeededStream[] }> {
  let copied = 0;
  const streams: SeededStream[] = [];
  const peer = m.link.peer;
  for (const own of m.view.streams.filter((x) => x.origin === peer && x.lsn > 0)) {
    const fromLsn = restored(m, peer, own.incarnation) + 1;
    if (fromLsn > own.lsn) continue;
    const s = { origin: peer, incarnation: own.incarnation, fromLsn, toLsn: own.lsn };
    const r = await copyStream(m.link, m.store, s, (v) => m.accepts(peer, v.tenant), true);
    copied += r.copied;
    if (r.coveredThrough < 1) continue;
    await raiseWatermark(m.store, peer, own.incarnation, r.coveredThrough);
    streams.push({ origin: peer, incarnation: own.incarnation, lsn: r.coveredThrough });
  }
  return { copied, streams };
}

/** Through which LSN the archive restored stream (origin, incarnation) whole from LSN 1 (0: not at all). */
function restored(m: Pick<MeshCopy, "covered">, origin: string, incarnation: string): number {
  return m.covered?.find((c) => c.origin === origin && c.incarnation === incarnation)?.lsn ?? 0;
}

function compare(a: StoredRecord["hlc"], b: StoredRecord["hlc"]): number {
  return a.wallMs - b.wallMs || a.logical - b.logical;
}

/** The stream of `origin` that `view`'s region holds furthest, per incarnation. */
export function streamsOf(
  views: Iterable<[string, WatermarksView]>,
  origin: string,
): Map<string, { peer: string; lsn: number }> {
  const best = new Map<string, { peer: string; lsn: number }>();
  for (const [peer, v] of views) {
    for (const s of v.streams) {
      if (s.origin !== origin) continue;
      const seen = best.get(s.incarnation);
      if (!seen || s.lsn > seen.lsn) best.set(s.incarnation, { peer, lsn: s.lsn });
    }
  }
  return best;
}

export interface MeshCopy {
  /** This region. */
  region: string;
  /** The peers that answered, and how to reach each. */
  views: Map<string, WatermarksView>;
  links: ReadonlyMap<string, PeerLink>;
  store: CopyStore;
  /** Whether this region may hold `tenant`'s records written in `origin`. */
  accepts: (origin: string, tenant: string) => boolean;
  /** Streams this store already holds whole from LSN 1 (restored from the archive): not asked for again. */
  covered?: ExportQuery["covered"];
}

/**
 * Copy what the mesh decided into an empty or rebuilt store: each peer's own stream
 * (complete: its watermark is set), our own older incarnations from every peer that holds
 * some of them (their watermark set to the furthest), then every winning version every peer
 * holds. Returns the versions copied and the newest
 * timestamp seen (a floor for the clock).
 */
export async function copyMesh(m: MeshCopy): Promise<{ copied: number; newest: NewestCopied }> {
  let copied = 0;
  const newest: NewestCopied = {};
  /** A stream's copy (every version of one origin's), or the winners' (split by origin). */
  const note = (r: { copied: number; newest: Hlc | undefined | NewestCopied }, origin?: string) => {
    copied += r.copied;
    if (r.newest === undefined || "wallMs" in r.newest)
      laterOf(newest, origin === m.region ? "own" : "other", r.newest);
    else for (const side of ["own", "other"] as const) laterOf(newest, side, r.newest[side]);
  };
  // Each peer's own streams, its older incarnations too, from the peer itself: it ships an
  // older incarnation only when a session starts, so a stream left at 0 here could wait
  // for a session that never restarts (found by the simulator; with this reverted, seed 3 fails).
  for (const [peer, view] of m.views) {
    for (const own of view.streams.filter((x) => x.origin === peer && x.lsn > 0)) {
      // After what the archive restored whole (only that: a store's watermark alone may stand
      // above holes, e.g. a salvaged WAL's; resuming from it lost a record: simulator seed 3).
      const fromLsn = restored(m, peer, own.incarnation) + 1;
      if (fromLsn > own.lsn) continue;
      const s = { origin: peer, incarnation: own.incarnation, fromLsn, toLsn: own.lsn };
      // An older incarnation of the peer may be held with holes while the peer's own bootstrap
      // still refills them (a WAL salvaged into a lost store): covered only below the first
      // hole. The current one is complete but for records nobody holds (audited as lost there).
      const older = own.incarnation !== view.incarnation;
      const keep: Keep = (v) => m.accepts(peer, v.tenant);
      const r = await copyStream(m.links.get(peer)!, m.store, s, keep, older);
      note(r, peer);
      // The current stream's holes its WAL still holds: from the WAL, not lost with the store.
      // One neither holds (the peer may still be refilling it, or answered from a store lost
      // since its earlier answer) is covered only below it: its shipper sends the rest once
      // it has it back, or stops there until an operator skips it, audited (simulator seed
      // 631: a watermark raised past LSNs the peer no longer held hid two acknowledged records).
      let coveredThrough = r.coveredThrough;
      if (!older && r.holes.length > 0) {
        const w = await copyHolesFromWal(m.links.get(peer)!, m.store, own.incarnation, r.holes, keep);
        note(w, peer);
        if (w.firstUnfilled !== undefined) coveredThrough = Math.min(coveredThrough, w.firstUnfilled - 1);
      }
      await raiseWatermark(m.store, peer, own.incarnation, coveredThrough);
    }
  }
  // Our own older incarnations: each peer holds the tenants its policy sent it; take them all.
  // The watermark stops below the first LSN some peer holds damaged (changed outside the
  // engine) that no peer gave intact, i.e. that this store does not hold now: a damaged copy
  // at one peer must not hold back LSNs another gave whole (the watermark is what this region
  // backfills its peers up to; found by the simulator, seed 98: a hand edit of one key left
  // another region's hole unfilled). Only the damaged LSNs are kept (few), never the copied ones.
  // Every peer is asked up to the furthest watermark any of them holds, not only up to its
  // own: a peer may hold records of the stream above its watermark for it (its own bootstrap
  // copied them from our store while that store had holes, and left its watermark below the
  // first), and then no other region holds them (found by the simulator, seed 298: conflict
  // losers held only by a peer whose watermark for the stream was 0, declared lost by us).
  const furthest = streamsOf(m.views, m.region);
  const damaged = new Map<string, Set<number>>();
  for (const peer of m.views.keys()) {
    for (const [incarnation, at] of furthest) {
      const fromLsn = restored(m, m.region, incarnation) + 1;
      if (fromLsn > at.lsn) continue;
      const s = { origin: m.region, incarnation, fromLsn, toLsn: at.lsn };
      const r = await copyStream(m.links.get(peer)!, m.store, s, () => true);
      note(r, m.region);
      const set = damaged.get(incarnation) ?? new Set<number>();
      for (const l of r.damaged) set.add(l);
      damaged.set(incarnation, set);
    }
  }
  for (const [incarnation, at] of furthest) {
    let upTo = at.lsn;
    for (const l of [...(damaged.get(incarnation) ?? [])].sort((a, b) => a - b)) {
      if (l > upTo) break;
      const held = await m.store.streamVersions(m.region, incarnation, l, l, 1);
      if (held.length === 0) upTo = l - 1;
    }
    await raiseWatermark(m.store, m.region, incarnation, upTo);
  }
  // Every winning version every peer holds, not one peer's: a record may survive only as a
  // winner in one region, with no stream watermark anywhere (an incarnation whose region lost
  // its disk, copied into a region that itself bootstrapped later): no shipper re-ships it,
  // so a bootstrap that copied from another peer never got it (found by the simulator,
  // seed 4). Copies are merged by the rule, so taking the same version twice changes nothing.
  const keep = (v: StoredRecord) => v.origin === m.region || m.accepts(v.origin, v.tenant);
  for (const peer of m.views.keys()) {
    const takes = (tenant: string) => m.accepts(peer, tenant);
    const w = await copyWinners(m.links.get(peer)!, m.store, keep, m.covered, m.region, takes);
    copied += w.copied;
    for (const side of ["own", "other"] as const) laterOf(newest, side, w.newest[side]);
  }
  return { copied, newest };
}
