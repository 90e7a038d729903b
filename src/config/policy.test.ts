/** Which tenants a region takes, and when a new policy widens that (pure). */
import { describe, expect, it } from "vitest";
import { acceptedTenants, wideningOf } from "./policy.js";

const selective = (policies: Array<[string, string[]]>) => ({
  region: "r1",
  crr: {
    enabled: true,
    replicationMode: "selective" as const,
    policies: policies.map(([tenantID, targetRegions]) => ({ tenantID, targetRegions })),
  },
});

describe("acceptedTenants", () => {
  it("selective: the tenants whose targets name this region, sorted; multi-way: every one", () => {
    const c = selective([
      ["b", ["r0", "r1"]],
      ["a", ["r1", "r2"]],
      ["c", ["r0", "r2"]],
    ]);
    expect(acceptedTenants(c as never)).toEqual(["a", "b"]);
    expect(
      acceptedTenants({
        region: "r1",
        crr: { enabled: true, replicationMode: "multi-way", peers: ["r0"] },
      } as never),
    ).toBe("*");
    expect(acceptedTenants({ region: "r1", crr: { enabled: false } } as never)).toEqual([]);
  });
});

describe("wideningOf", () => {
  it("a tenant taken now and not before, or every tenant now, widens; the same, fewer, or an unknown before do not", () => {
    expect(wideningOf(["a"], ["a", "b"], 100, undefined, 60_000)).toEqual({ atMs: 100, before: ["a"] });
    expect(wideningOf(["a"], "*", 100, undefined, 60_000)).toEqual({ atMs: 100, before: ["a"] });
    expect(wideningOf(["a", "b"], ["a"], 100, undefined, 60_000)).toBeUndefined();
    expect(wideningOf(["a"], ["a"], 100, undefined, 60_000)).toBeUndefined();
    expect(wideningOf("*", "*", 100, undefined, 60_000)).toBeUndefined();
    expect(wideningOf(undefined, "*", 100, undefined, 60_000)).toBeUndefined();
  });

  it("a widening soon after another keeps the first one's new tenants new; after keepMs it does not", () => {
    const first = { atMs: 100, before: ["a"] }; // b came then
    expect(wideningOf(["a", "b"], ["a", "b", "c"], 60_100, first, 60_000)).toEqual({
      atMs: 60_100,
      before: ["a"],
    });
    expect(wideningOf(["a", "b"], ["a", "b", "c"], 60_101, first, 60_000)).toEqual({
      atMs: 60_101,
      before: ["a", "b"],
    });
  });
});
