/**
 * Watermarks sampled while a run goes on, checked against two rules:
 * - a region's watermark of a stream never moves backward while its process lives (nor
 *   across a graceful restart): only a lost store (or disk) may take it back;
 * - what a peer acknowledged is durable: once a shipper has seen its peer acknowledge LSN n
 *   of a stream, the peer's store holds the stream through n from then on, whatever crashes
 *   it goes through, until its store is lost;
 * - retention keeps what someone still needs: a region's WAL holds every LSN of its stream
 *   that a peer it ships to has not acknowledged, and that its own store has not applied
 *   (a peer once removed from its configuration, or one that lost its store, is excused:
 *   the shipper backfills those from the store, by design).
 * Readings and shippers are a node's (a region served by several nodes has one store and
 * several streams); what a peer acknowledged is owed by the peer region's store.
 */
import type { Region } from "../node/index.js";
import type { SimCluster } from "./cluster.js";
import { simReadable } from "./store.js";

const streamKey = (origin: string, incarnation: string) => `${origin}/${incarnation}`;

export class WatermarkWatch {
  readonly problems: string[] = [];
  private readonly said = new Set<string>();
  /** node -> stream -> highest watermark seen since its store was last lost or its process crashed. */
  private readonly seen = new Map<string, Map<string, number>>();
  /** peer -> stream -> highest LSN a shipper saw that peer acknowledge since its store was last lost. */
  private readonly owed = new Map<string, Map<string, number>>();
  /** "node>peer/incarnation" -> the shipper's `acked` at its last sample, and when (only a move is a new acknowledgement). */
  private readonly lastAcked = new Map<string, { acked: number; atMs: number }>();
  /** peer -> when its store was last lost (an answer it sent before may still be on its way). */
  private readonly lostAtMs = new Map<string, number>();

  constructor(
    private readonly c: SimCluster,
    private readonly inFlightMs: number,
  ) {}

  /** "node>peer" pairs retention may leave behind (backfilled from the store instead); "node>node": its own store. */
  private readonly excused = new Set<string>();

  /** `node` did not ship to region `peer` for a while (removed from its configuration, or no peer until a policy widened). */
  peerRemoved(node: string, peer: string): void {
    this.excused.add(`${node}>${peer}`);
  }

  /** The region's store is gone: nothing it held or acknowledged is expected of it any more. */
  storeLost(region: string): void {
    for (const n of this.c.nodes.keys()) this.excused.add(`${n}>${region}`);
    for (const n of this.c.nodesOf(region)) {
      this.excused.add(`${n.name}>${n.name}`);
      this.seen.delete(n.name);
    }
    this.owed.delete(region);
    this.lostAtMs.set(region, this.c.sched.nowMs);
  }

  /**
   * A power loss: on SQLite unsynced commits may be undone, so only acknowledged LSNs stay
   * binding. On PostgreSQL every commit is synced: the store's watermarks never move back.
   */
  crashed(node: string): void {
    if (this.c.o.stores.kind === "sqlite") this.seen.delete(node);
  }

  /**
   * Take one sample of every running region (called on the scheduler's clock). The stores
   * are read first, then every rule is checked against that one reading.
   */
  async sample(): Promise<void> {
    const all = await Promise.all(this.c.up().map((n) => this.read(n.name)));
    // Only readings of a process still running (PostgreSQL answers take real time).
    const readings = all.filter((x) => x !== undefined && this.c.nodes.get(x.node)!.region === x.r);
    for (const x of readings) {
      if (!x) continue;
      this.checkForward(x.node, x.marks);
      for (const [k, lsn] of this.owed.get(this.c.regionOf(x.node)) ?? [])
        if ((x.marks.get(k) ?? 0) < lsn)
          this.problem(`${x.node}: holds ${k} through ${x.marks.get(k) ?? 0}, but acknowledged ${lsn}`);
    }
    for (const n of this.c.up()) this.noteAcks(n.name);
    for (const x of readings) if (x) this.checkRetention(x.node, x.own);
  }

  /** A running node's watermarks, and the one of its own current stream. */
  private async read(
    node: string,
  ): Promise<{ node: string; r: Region; marks: Map<string, number>; own: number } | undefined> {
    const r = this.c.nodes.get(node)!.region!;
    if (!r.store.isOpen) return undefined;
    try {
      const marks = new Map(
        (await simReadable(r.store).watermarks()).map((w) => [streamKey(w.origin, w.incarnation), w.lsn]),
      );
      return { node, r, marks, own: marks.get(streamKey(this.c.regionOf(node), r.wal.incarnation)) ?? 0 };
    } catch (err) {
      // A store closed under the reading (the process stopped meanwhile) is no finding.
      if (this.c.nodes.get(node)!.region === r && r.store.isOpen)
        this.problem(`${node}: its store's watermarks could not be read: ${(err as Error).message}`);
      return undefined;
    }
  }

  private checkRetention(node: string, ownApplied: number): void {
    const r = this.c.nodes.get(node)!.region!;
    const first = r.wal.firstLsn;
    if (first <= 1) return;
    // What a peer acknowledged: the highest acknowledgement ever seen from it (a shipper that
    // just restarted starts from its state file, written every ackPersistIntervalMs, so its
    // `acked` may lag what the peer acknowledged before; found with a window of 16, seed 26).
    const k = streamKey(this.c.regionOf(node), r.wal.incarnation);
    const needs: Array<[string, number]> = [...r.shippers].map(([peer, sh]) => [
      peer,
      Math.max(sh.acked, this.owed.get(peer)?.get(k) ?? 0),
    ]);
    needs.push([node, ownApplied]);
    for (const [who, applied] of needs)
      if (!this.excused.has(`${node}>${who}`) && applied + 1 < first)
        this.problem(
          `${node}: its WAL starts at LSN ${first}, but ${who === node ? "its store" : who} has applied only ${applied} of ${r.wal.incarnation.slice(0, 8)}`,
        );
  }

  private checkForward(node: string, marks: Map<string, number>): void {
    const seen = this.seen.get(node) ?? new Map<string, number>();
    this.seen.set(node, seen);
    for (const [k, lsn] of marks) {
      const before = seen.get(k) ?? 0;
      if (lsn < before) this.problem(`${node}: watermark of ${k} moved back from ${before} to ${lsn}`);
      seen.set(k, Math.max(before, lsn));
    }
  }

  private noteAcks(node: string): void {
    const r = this.c.nodes.get(node)!.region!;
    const k = streamKey(this.c.regionOf(node), r.wal.incarnation);
    for (const [peer, sh] of r.shippers) {
      const link = `${node}>${peer}/${r.wal.incarnation}`;
      const before = this.lastAcked.get(link);
      const nowMs = this.c.sched.nowMs;
      this.lastAcked.set(link, { acked: sh.acked, atMs: nowMs });
      if (before !== undefined && sh.acked <= before.acked) continue;
      // An acknowledgement learnt around a loss of the peer's store may predate it.
      const lostAtMs = this.lostAtMs.get(peer) ?? -Infinity;
      if (nowMs - lostAtMs < this.inFlightMs || (before && lostAtMs >= before.atMs)) continue;
      const m = this.owed.get(peer) ?? new Map<string, number>();
      this.owed.set(peer, m);
      m.set(k, Math.max(m.get(k) ?? 0, sh.acked));
    }
  }

  private problem(p: string): void {
    // One line per broken rule and stream is enough evidence; the rest would repeat it.
    if (this.said.has(p)) return;
    this.said.add(p);
    this.problems.push(`at ${this.c.sched.nowMs}: ${p}`);
  }
}
