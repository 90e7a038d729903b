/** IncarnationTracker.note's answer: the first time this node hears an instance of a region. */
import { describe, expect, it } from "vitest";
import { IncarnationTracker } from "./incarnations.js";

describe("IncarnationTracker.note", () => {
  it("is true the first time an instance is heard, never again, also once recent() forgot it for its silence", () => {
    const t = new IncarnationTracker(1_000);
    // The first heard since this node started: what it replaced is unknown (found by review).
    expect(t.note("eu", "i1", "boot1", 0)).toBe(true);
    expect(t.note("eu", "i1", "boot1", 10)).toBe(false); // the same instance again
    expect(t.note("us", "i9", "boot9", 10)).toBe(true); // another region's first
    expect(t.note("eu", "i1", "boot2", 20)).toBe(true); // restarted: a new boot
    expect(t.note("eu", "i1", "boot2", 30)).toBe(false);
    expect(t.note("eu", "i2", "boot3", 40)).toBe(true); // a new incarnation (a lost WAL)
    t.recent(10_000); // silent for longer than aliveMs: every instance forgotten
    // Heard again after the silence: not new (several nodes behind one address each hear a
    // peer node only now and then: a resync each time was a storm, found by review).
    expect(t.note("us", "i9", "boot9", 10_000)).toBe(false);
    expect(t.note("eu", "i2", "boot4", 10_000)).toBe(true); // down for long, still a restart
  });

  it("remembers the newest 256 instances of a region", () => {
    const t = new IncarnationTracker(1_000);
    for (let i = 0; i <= 256; i++) expect(t.note("eu", "i", `boot${i}`, i)).toBe(true);
    expect(t.note("eu", "i", "boot256", 300)).toBe(false);
    expect(t.note("eu", "i", "boot1", 300)).toBe(false);
    expect(t.note("eu", "i", "boot0", 300)).toBe(true); // the oldest, forgotten
  });
});
