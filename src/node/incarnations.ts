/**
 * Which instances of each region this node hears from, and when. An instance is one
 * process serving a region: its WAL incarnation and its boot id. Two instances of one region
 * alive at once are two nodes given the same region name, or a copy of a data directory
 * started beside the original: both would issue LSNs of one stream (or of two streams the
 * peers cannot tell apart). The instance that appeared later is the second one while the
 * earlier one still speaks after it appeared; a region that restarted (a crash, a lost disk)
 * is not, because its previous instance went silent before the new one spoke.
 *
 * "Speaks after" takes two witnesses, each fooled alone: a request of the earlier instance
 * that arrived after the later one's first, and that was also sent after it (its signed
 * timestamp, by the earlier instance's clock, against the later one's first by its own).
 * By arrival alone, a request of the previous instance still on the way when it exited
 * (delayed on the WAN, retransmitted) made the restarted node a second one, and it stopped
 * taking appends for good (the simulator, seed 2: a 205 ms delay across a restart of 120
 * ms). By send time alone, a previous instance whose clock ran 1.4 s ahead did the same
 * (seed 206). Pure bookkeeping; time is passed in.
 */

interface Heard {
  /** When it was first and last heard from (this node's clock): whether it is still alive. */
  firstMs: number;
  lastMs: number;
  /** When its first and last requests heard were sent (its own clock): the rivalry. */
  firstSentMs: number;
  lastSentMs: number;
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

export class IncarnationTracker {
  private readonly heard = new Map<string, Map<string, Heard & { incarnation: string; boot: string }>>();

  /**
   * `severalNodes`: regions served by several nodes on one shared store (`regions.X.nodes:
   * several`): their incarnations are fellows, only one incarnation heard from two boots is
   * a rival (a copied data directory).
   */
  constructor(
    private readonly aliveMs: number,
    private readonly severalNodes: (region: string) => boolean = () => false,
  ) {}

  /** A request of this instance arrived at `nowMs`; it was sent at `sentAtMs` (its signed timestamp). */
  note(region: string, incarnation: string, boot: string, nowMs: number, sentAtMs = nowMs): void {
    let byInstance = this.heard.get(region);
    if (!byInstance) this.heard.set(region, (byInstance = new Map()));
    const h = byInstance.get(key(incarnation, boot));
    if (!h) {
      byInstance.set(key(incarnation, boot), {
        incarnation,
        boot,
        firstMs: nowMs,
        lastMs: nowMs,
        firstSentMs: sentAtMs,
        lastSentMs: sentAtMs,
      });
      return;
    }
    h.lastMs = Math.max(h.lastMs, nowMs);
    h.firstSentMs = Math.min(h.firstSentMs, sentAtMs);
    h.lastSentMs = Math.max(h.lastSentMs, sentAtMs);
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
      // Heard after this one's first request arrived, and sent after this one's first was
      // sent: either alone is fooled, by a late request or by a clock set ahead.
      if (h.firstMs < me.firstMs && h.lastMs > me.firstMs && h.lastSentMs > me.firstSentMs)
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
