/**
 * Which instances of each region this node hears from, and when. An instance is one
 * process serving a region: its WAL incarnation and its boot id. Two instances of one region
 * alive at once are two nodes given the same region name, or a copy of a data directory
 * started beside the original: both would issue LSNs of one stream (or of two streams the
 * peers cannot tell apart). The instance that appeared later is the second one while the
 * earlier one still speaks after it appeared; a region that restarted (a crash, a lost disk)
 * is not, because its previous instance went silent before the new one spoke.
 *
 * "Speaks after" means requests of the earlier instance that arrived after the later one's
 * first and were also sent after it (their signed timestamps, each instance's own clock, the
 * later one's first by its own), heard over at least `spreadMs`; a request arriving more
 * than `aliveMs` after the later one's first counts whatever its timestamp. Each witness
 * alone was fooled: by arrival, a request of the previous instance still on the way when it
 * exited (delayed on the WAN, retransmitted) made the restarted node a second one, and it
 * stopped taking appends for good (the simulator, seed 2: a 205 ms delay across a restart
 * of 120 ms); by send time, a previous instance whose clock ran 1.4 s ahead did the same
 * (seed 206). A dead instance leaves only the few requests it had on the way, all at once;
 * a live one keeps speaking, so its requests span the spread (a probe interval) and it is
 * refused within about `aliveMs` whatever the two clocks say. Pure bookkeeping; time is
 * passed in.
 */

interface Heard {
  /** When it was first and last heard from (this node's clock): whether it is still alive. */
  firstMs: number;
  lastMs: number;
  /** When its first request heard was sent (its own clock). */
  firstSentMs: number;
  /** By instance key: when its requests that spoke after that instance's first arrived, first and last. */
  after: Map<string, { fromMs: number; toMs: number }>;
}

export interface InstanceSeen {
  region: string;
  incarnation: string;
  boot: string;
  /** Since it was last heard from. */
  agoMs: number;
  /** Since it was first heard from. */
  firstAgoMs: number;
}

const key = (incarnation: string, boot: string) => `${incarnation}/${boot}`;

/** Instances of one region remembered as heard (a restart each; a node's lifetime has few). */
const everHeardMax = 256;

export class IncarnationTracker {
  private readonly heard = new Map<string, Map<string, Heard & { incarnation: string; boot: string }>>();
  /**
   * Every instance of each region heard since this node started (the newest few hundred): one
   * forgotten by `recent()` for its silence is not new when it speaks again.
   */
  private readonly everHeard = new Map<string, Set<string>>();

  /**
   * `severalNodes`: regions served by several nodes on one shared store (`regions.X.nodes:
   * several`): their incarnations are fellows, only one incarnation heard from two boots is
   * a rival (a copied data directory).
   */
  constructor(
    private readonly aliveMs: number,
    private readonly severalNodes: (region: string) => boolean = () => false,
    /** How long the earlier instance's requests after the later one's first must span (default a third of aliveMs: a probe interval). */
    private readonly spreadMs = aliveMs / 3,
  ) {}

  /**
   * A request of this instance arrived at `nowMs`; it was sent at `sentAtMs` (its signed
   * timestamp). True the first time this node hears the instance: the region restarted (its
   * store may hold less than it acknowledged) or another node of it started, or this node
   * started and has not heard the region before (it cannot tell what the instance it
   * replaced acknowledged: found by review). Never again for one it heard, even after
   * `recent()` forgot it for its silence (several nodes behind one address each hear a peer
   * node now and then: a resync storm, found by review).
   */
  note(region: string, incarnation: string, boot: string, nowMs: number, sentAtMs = nowMs): boolean {
    let byInstance = this.heard.get(region);
    if (!byInstance) this.heard.set(region, (byInstance = new Map()));
    const k = key(incarnation, boot);
    let h = byInstance.get(k);
    const isNew = this.firstHeard(region, k);
    if (!h) {
      h = { incarnation, boot, firstMs: nowMs, lastMs: nowMs, firstSentMs: sentAtMs, after: new Map() };
      byInstance.set(k, h);
    }
    h.lastMs = Math.max(h.lastMs, nowMs);
    h.firstSentMs = Math.min(h.firstSentMs, sentAtMs);
    // Whom this one request spoke after: arrived after their first, and sent after it too
    // (or arrived so late that no request on the way explains it).
    for (const [other, o] of byInstance) {
      if (other === k || nowMs <= o.firstMs) continue;
      if (sentAtMs <= o.firstSentMs && nowMs - o.firstMs <= this.aliveMs) continue;
      const e = h.after.get(other);
      if (e) e.toMs = Math.max(e.toMs, nowMs);
      else h.after.set(other, { fromMs: nowMs, toMs: nowMs });
    }
    return isNew;
  }

  private firstHeard(region: string, k: string): boolean {
    let seen = this.everHeard.get(region);
    if (!seen) this.everHeard.set(region, (seen = new Set()));
    if (seen.has(k)) return false;
    seen.add(k);
    if (seen.size > everHeardMax) seen.delete(seen.values().next().value!);
    return true;
  }

  /** The instance of `region` that was serving before this one appeared and still spoke since, if any. */
  rival(
    region: string,
    incarnation: string,
    boot: string,
    nowMs: number,
  ): { incarnation: string; boot: string; agoMs: number } | undefined {
    const all = this.heard.get(region);
    const me = all?.get(key(incarnation, boot));
    if (!all || !me) return undefined;
    const fellowsAllowed = this.severalNodes(region);
    for (const [k, h] of all) {
      if (k === key(incarnation, boot) || nowMs - h.lastMs > this.aliveMs) continue;
      if (fellowsAllowed && h.incarnation !== incarnation) continue;
      // It came first and kept speaking after this one appeared (see the header).
      const spoke = h.after.get(key(incarnation, boot));
      if (h.firstMs < me.firstMs && spoke && spoke.toMs - spoke.fromMs >= this.spreadMs)
        return { incarnation: h.incarnation, boot: h.boot, agoMs: nowMs - h.lastMs };
    }
    return undefined;
  }

  /** Every instance heard within the last `aliveMs` (peers report it in their watermarks answer). */
  recent(nowMs: number): InstanceSeen[] {
    const out: InstanceSeen[] = [];
    for (const [region, byInstance] of this.heard) {
      for (const [k, h] of byInstance) {
        if (nowMs - h.lastMs > this.aliveMs) byInstance.delete(k);
        else
          out.push({
            region,
            incarnation: h.incarnation,
            boot: h.boot,
            agoMs: nowMs - h.lastMs,
            firstAgoMs: nowMs - h.firstMs,
          });
      }
    }
    return out;
  }
}
