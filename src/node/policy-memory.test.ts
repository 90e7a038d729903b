/** What the store remembers of the policy across starts, and the widening the view reports. */
import { describe, expect, it } from "vitest";
import { acceptedMeta, notePolicy, readWidening } from "./policy-memory.js";

function metaStore() {
  const meta = new Map<string, string>();
  return {
    meta,
    getMeta: async (name: string) => meta.get(name),
    setMeta: async (name: string, value: string) => void meta.set(name, value),
  };
}

const config = (tenants: string[] | "*") => ({
  region: "r1",
  divergence: { inFlightMsMax: 60_000 },
  crr:
    tenants === "*"
      ? { enabled: true, replicationMode: "multi-way", peers: ["r0"] }
      : {
          enabled: true,
          replicationMode: "selective",
          policies: tenants.map((tenantID) => ({ tenantID, targetRegions: ["r0", "r1"] })),
        },
});

describe("notePolicy", () => {
  it("remembers the policy; a later start that takes more notes since when, which stays until a newer widening", async () => {
    const store = metaStore();
    expect(await notePolicy(store, config(["a"]) as never, 1_000)).toBeUndefined(); // first start: nothing to compare
    expect(store.meta.get(acceptedMeta)).toBe('["a"]');
    expect(await notePolicy(store, config(["a", "b"]) as never, 2_000)).toEqual({
      atMs: 2_000,
      before: ["a"],
    });
    expect(await readWidening(store)).toEqual({ atMs: 2_000, before: ["a"] });
    // A narrower policy widens nothing; the last widening is still in force.
    expect(await notePolicy(store, config(["a"]) as never, 3_000)).toEqual({ atMs: 2_000, before: ["a"] });
    expect(await notePolicy(store, config("*") as never, 200_000)).toEqual({ atMs: 200_000, before: ["a"] });
    expect(store.meta.get(acceptedMeta)).toBe('"*"');
  });

  it("a remembered value it cannot read counts as unknown (no widening), and is replaced", async () => {
    const store = metaStore();
    store.meta.set(acceptedMeta, "{not json");
    expect(await notePolicy(store, config(["a"]) as never, 1_000)).toBeUndefined();
    expect(store.meta.get(acceptedMeta)).toBe('["a"]');
  });
});
