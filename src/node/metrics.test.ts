import v8 from "node:v8";
import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { RegionMetrics, type MetricsSource } from "./metrics.js";

/** A region as its metrics see it, holding a megabyte (so keeping it alive would show). */
function fakeRegion(name: string): MetricsSource & { name: string; payload: Buffer } {
  return {
    name,
    payload: Buffer.alloc(1024 * 1024),
    lagSeconds: async () => [["peer", 0.5]],
    watermarksView: async () => ({ watermarks: { [name]: 3 } }),
    wal: { stats: () => ({ bytes: 10, segments: 1, durableLsn: 3 }) },
    isDraining: false,
    clock: { skewRejections: 0 },
    readiness: () => ({ ready: true }),
    auditPump: { backlog: 0 },
    appendsPending: 0,
    peerAcks: () => [{ peer: "peer", ackedLsn: 2, lastAckMs: 1_700_000_000_000 }],
  };
}

function gc(): void {
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}

describe("RegionMetrics", () => {
  it("lets a closed region go: nothing process-wide keeps its metrics (and through them the region) reachable", async () => {
    const refs: Array<WeakRef<object>> = [];
    const openAndScrape = async (name: string) => {
      const region = fakeRegion(name);
      refs.push(new WeakRef(region));
      const m = new RegionMetrics(() => region);
      expect(await m.text()).toMatch(/crr_process_cpu_seconds_total/); // the process's own metrics
    };
    for (let i = 0; i < 3; i++) await openAndScrape(`r${i}`);
    await new Promise((r) => setTimeout(r, 10));
    gc();
    await new Promise((r) => setTimeout(r, 10));
    gc();
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true, true]);
  });

  it("shows the process's metrics once per scrape, beside the region's", async () => {
    const m = new RegionMetrics(() => undefined);
    const text = await m.text();
    expect(text.match(/^# TYPE crr_process_cpu_seconds_total /gm)).toHaveLength(1);
    expect(text).toMatch(/^# TYPE crr_ready gauge$/m);
  });
});
