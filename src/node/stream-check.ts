/**
 * `crr verify`'s check of the streams this store holds against its peers' copies: every LSN
 * at or below a stream's watermark was applied here, so each one must be in the store, intact
 * (the winner of its key or a loser kept in conflicts), unless the tenant policy never sent it.
 * One missing was removed outside the engine (a hand delete, rows lost); one whose copy here
 * fails its version hash was changed outside it (a hand edit), and counts as missing. When another version
 * of its key won since, every region agrees on the winner, the winner digests agree, and
 * nothing else shows the loss (the simulator, seeds 314 and 454: a hand-deleted copy of
 * another region's record, and an own record whose WAL segment retention had removed, both
 * losers since, held nowhere in that region). Own LSNs the WAL still holds are checked
 * against the WAL instead (restoreOwnFromWal).
 *
 * The missing LSNs are asked of the peers, the stream's origin first (it holds every record
 * of its own streams), then the others by name; an LSN counts as answered by the first intact
 * copy. Only what the policy sends here, and loses against this store's winner of its key, is
 * put back (as a conflict loser): one that would win is a key the divergence check shows
 * (missing here, or decided otherwise), left to `crr reconcile` and its evidence. A selective
 * deployment's excluded LSNs are holes too: they are read from the peers on each check and
 * dropped.
 */
import type { PeerLink } from "../link/index.js";
import { compareVersions, sameVersion, type MergeRule } from "../store/pure.js";
import type { ApplyStore, ReadStore, StoredRecord, StreamStore } from "../store/index.js";
import type { LsnRange } from "./copy.js";

/** LSNs of a stream one request to a peer covers (the window of a check). */
export const streamCheckLsns = 5000;

/**
 * LSNs of a stream one read of this store covers when it looks for holes: whole rows, each
 * hashed (found by review: 5,000 rows of 128 KiB bodies held a live node's event loop for
 * 12 s and 640 MiB), so fewer than a peer's window, with a turn of the event loop between.
 */
export const holeCheckLsns = 500;

/** LSNs in ascending order as ranges of consecutive ones. Pure. */
export function toRanges(lsns: Iterable<number>): LsnRange[] {
  const out: LsnRange[] = [];
  for (const lsn of lsns) {
    const last = out[out.length - 1];
    if (last && last.to === lsn - 1) last.to = lsn;
    else out.push({ from: lsn, to: lsn });
  }
  return out;
}

/** The LSNs of [from, to] that `held` lacks, as ranges in order. Pure. */
export function missingRanges(from: number, to: number, held: ReadonlySet<number>): LsnRange[] {
  const lacked: number[] = [];
  for (let lsn = from; lsn <= to; lsn++) if (!held.has(lsn)) lacked.push(lsn);
  return toRanges(lacked);
}

export interface StreamHoles {
  origin: string;
  incarnation: string;
  holes: LsnRange[];
}

export interface StreamCheck {
  /** This region, its WAL's incarnation and first LSN (below it, its own records are checked here). */
  self: string;
  incarnation: string;
  walFirstLsn: number;
  store: Pick<StreamStore, "streamVersions"> & Pick<ApplyStore, "watermarks"> & Pick<ReadStore, "get">;
  rule: MergeRule;
  /** Let the event loop run between two windows (a live node's store reads do not wait on it). */
  yieldTurn: () => Promise<void>;
  links: ReadonlyMap<string, PeerLink>;
  /** Whether this region may hold `tenant`'s records written in `origin`. */
  accepts: (origin: string, tenant: string) => boolean;
}

/** The LSN range of a stream checked here: through its watermark (own current one: below the WAL). */
function checkedThrough(c: StreamCheck, w: { origin: string; incarnation: string; lsn: number }): number {
  const own = w.origin === c.self && w.incarnation === c.incarnation;
  return own ? Math.min(w.lsn, c.walFirstLsn - 1) : w.lsn;
}

/**
 * Every stream's LSNs at or below its watermark that the store holds intact neither as winner
 * nor as loser. The rows are read whole (their version hashes checked), not only their LSNs:
 * an edited loser of another region's record was counted as held, and never put back.
 */
export async function streamHoles(c: StreamCheck): Promise<StreamHoles[]> {
  const out: StreamHoles[] = [];
  for (const w of await c.store.watermarks()) {
    const through = checkedThrough(c, w);
    const holes: LsnRange[] = [];
    for (let from = 1; from <= through; from += holeCheckLsns) {
      const to = Math.min(through, from + holeCheckLsns - 1);
      holes.push(...missingRanges(from, to, await intactLsns(c, w.origin, w.incarnation, from, to)));
      await c.yieldTurn();
    }
    if (holes.length > 0) out.push({ origin: w.origin, incarnation: w.incarnation, holes });
  }
  return out;
}

/** The LSNs of [from, to] of one stream that the store holds an intact copy of. */
async function intactLsns(
  c: StreamCheck,
  origin: string,
  incarnation: string,
  from: number,
  to: number,
): Promise<Set<number>> {
  // One version per LSN, an intact copy preferred when the LSN is both a winner and a loser.
  const held = await c.store.streamVersions(origin, incarnation, from, to, to - from + 1);
  return new Set(held.filter((v) => v.intact).map((v) => v.lsn));
}

/** The peers to ask for `origin`'s stream: the origin first, then the others by name. */
function askOrder(links: ReadonlyMap<string, PeerLink>, origin: string): PeerLink[] {
  const names = [...links.keys()].sort((a, b) => (a === origin ? -1 : b === origin ? 1 : a < b ? -1 : 1));
  return names.map((n) => links.get(n)!);
}

export interface PeersAnswer {
  /** Intact copies of missing LSNs that the policy sends here (to put back). */
  found: StoredRecord[];
  /** LSNs no peer gave intact, per stream ("origin/incarnation"). */
  unanswered: Map<string, number>;
  /** Peers that failed to answer, with why. */
  failed: Map<string, string>;
}

/**
 * Windows of at most `streamCheckLsns` LSNs over `holes` (ranges in order), each with the
 * hole LSNs inside it: what one request per peer asks (memory stays one window's worth,
 * however many LSNs a selective policy leaves out of a long stream). Pure.
 */
export function holeWindows(holes: readonly LsnRange[]): Array<{ window: LsnRange; lsns: number[] }> {
  const out: Array<{ window: LsnRange; lsns: number[] }> = [];
  for (const h of holes)
    for (let lsn = h.from; lsn <= h.to; lsn++) {
      const last = out[out.length - 1];
      if (last && lsn - last.window.from < streamCheckLsns) {
        last.window.to = lsn;
        last.lsns.push(lsn);
      } else out.push({ window: { from: lsn, to: lsn }, lsns: [lsn] });
    }
  return out;
}

/** Ask the peers for the holes of each stream, a window at a time (each LSN until one peer gives an intact copy). */
export async function askPeers(c: StreamCheck, streams: readonly StreamHoles[]): Promise<PeersAnswer> {
  const found: StoredRecord[] = [];
  const unanswered = new Map<string, number>();
  const failed = new Map<string, string>();
  for (const s of streams) {
    let left = 0;
    for (const { window, lsns } of holeWindows(s.holes)) {
      const missing = new Set(lsns);
      for (const link of askOrder(c.links, s.origin)) {
        if (missing.size === 0 || failed.has(link.peer)) continue;
        try {
          await askRange(c, link, s, spanOf(missing, window), missing, found);
        } catch (err) {
          failed.set(link.peer, (err as Error).message);
        }
        await c.yieldTurn();
      }
      left += missing.size;
    }
    if (left > 0) unanswered.set(`${s.origin}/${s.incarnation}`, left);
  }
  return { found, unanswered, failed };
}

/** The smallest range within `window` that holds every LSN still `missing`. */
function spanOf(missing: ReadonlySet<number>, window: LsnRange): LsnRange {
  let from = window.to;
  let to = window.from;
  for (const lsn of missing) {
    from = Math.min(from, lsn);
    to = Math.max(to, lsn);
  }
  return { from, to };
}

async function askRange(
  c: StreamCheck,
  link: PeerLink,
  s: StreamHoles,
  h: LsnRange,
  missing: Set<number>,
  found: StoredRecord[],
): Promise<void> {
  for (let from: number | undefined = h.from; from !== undefined && from <= h.to;) {
    const page = await link.streamRecords({
      origin: s.origin,
      incarnation: s.incarnation,
      fromLsn: from,
      toLsn: h.to,
      limit: streamCheckLsns,
    });
    for (const { intact, ...v } of page.versions) {
      if (!intact || !missing.delete(v.lsn)) continue;
      if (v.origin === c.self || c.accepts(v.origin, v.tenant)) found.push(v);
    }
    // Records the peer's policy keeps from this region: accounted for, when this region's
    // policy agrees (if not, they stay missing: the peer answered nothing for them).
    for (const w of page.withheld ?? []) if (!c.accepts(s.origin, w.tenant)) missing.delete(w.lsn);
    from = page.next;
  }
}

/**
 * Split what the peers gave into the versions that lose against this store's winner of
 * their key (put back as conflict losers: no answer changes, and nothing else shows them),
 * those that are this store's winner itself (its copy here was changed outside the engine,
 * so the LSN did not count as held intact), and the rest, which would win: the divergence
 * check shows them (a key missing here or decided otherwise) for `crr reconcile` to decide
 * from evidence, as before.
 */
export async function splitByWinner(
  c: Pick<StreamCheck, "store" | "rule">,
  found: readonly StoredRecord[],
): Promise<{ losers: StoredRecord[]; changedHere: StoredRecord[]; left: StoredRecord[] }> {
  const losers: StoredRecord[] = [];
  const changedHere: StoredRecord[] = [];
  const left: StoredRecord[] = [];
  for (const v of found) {
    const winner = await c.store.get(v.key);
    if (winner && sameVersion(winner, v)) changedHere.push(v);
    else if (winner && compareVersions(c.rule, winner, v) < 0) losers.push(v);
    else left.push(v);
  }
  return { losers, changedHere, left };
}
