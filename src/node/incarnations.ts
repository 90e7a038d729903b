/**
 * Which incarnation of each region this node hears from, and when. Two incarnations of one
 * region heard from within `aliveMs` of each other are two nodes configured with the same
 * region name (a misconfiguration that makes peers' watermarks switch between their streams):
 * the one first heard later is the second, and is refused. A region that lost its disk comes
 * back as a new incarnation too, but its old one has gone silent, so it passes once the
 * window has gone by. Pure bookkeeping; time is passed in.
 */

interface Heard {
  firstMs: number;
  lastMs: number;
}

export class IncarnationTracker {
  private readonly heard = new Map<string, Map<string, Heard>>();

  constructor(private readonly aliveMs: number) {}

  note(region: string, incarnation: string, nowMs: number): void {
    let byInc = this.heard.get(region);
    if (!byInc) this.heard.set(region, (byInc = new Map()));
    const h = byInc.get(incarnation);
    if (h) h.lastMs = Math.max(h.lastMs, nowMs);
    else byInc.set(incarnation, { firstMs: nowMs, lastMs: nowMs });
  }

  /** The other incarnation of `region` that is alive and was heard from first, if any. */
  rival(
    region: string,
    incarnation: string,
    nowMs: number,
  ): { incarnation: string; agoMs: number } | undefined {
    const byInc = this.heard.get(region);
    const me = byInc?.get(incarnation);
    if (!byInc || !me) return undefined;
    for (const [other, h] of byInc) {
      if (other === incarnation || nowMs - h.lastMs > this.aliveMs) continue;
      if (h.firstMs <= me.firstMs) return { incarnation: other, agoMs: nowMs - h.lastMs };
    }
    return undefined;
  }

  /** Everything heard within the last `aliveMs` (peers report it in their watermarks answer). */
  recent(nowMs: number): Array<{ region: string; incarnation: string; agoMs: number }> {
    const out: Array<{ region: string; incarnation: string; agoMs: number }> = [];
    for (const [region, byInc] of this.heard) {
      for (const [incarnation, h] of byInc) {
        if (nowMs - h.lastMs <= this.aliveMs) out.push({ region, incarnation, agoMs: nowMs - h.lastMs });
        else byInc.delete(incarnation);
      }
    }
    return out;
  }
}
