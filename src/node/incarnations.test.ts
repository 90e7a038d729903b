/** IncarnationTracker.note's answer: a new instance of a region already heard from (it restarted). */
import { describe, expect, it } from "vitest";
import { IncarnationTracker } from "./incarnations.js";

describe("IncarnationTracker.note", () => {
  it("is true only for a new instance of a region heard from before, also once the old one is forgotten", () => {
    const t = new IncarnationTracker(1_000);
    expect(t.note("eu", "i1", "boot1", 0)).toBe(false); // the first heard: nothing to compare
    expect(t.note("eu", "i1", "boot1", 10)).toBe(false); // the same instance again
    expect(t.note("us", "i9", "boot9", 10)).toBe(false); // another region's first
    expect(t.note("eu", "i1", "boot2", 20)).toBe(true); // restarted: a new boot
    expect(t.note("eu", "i1", "boot2", 30)).toBe(false);
    expect(t.note("eu", "i2", "boot3", 40)).toBe(true); // a new incarnation (a lost WAL)
    t.recent(10_000); // silent for longer than aliveMs: every instance forgotten
    expect(t.note("eu", "i2", "boot4", 10_000)).toBe(true); // down for long, still a restart
    expect(t.note("us", "i9", "boot9", 10_000)).toBe(true); // forgotten, then heard again
  });
});
