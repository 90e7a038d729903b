/**
 * A claim whose answer was lost while the shared store was unreachable is ended once the
 * store answers again (after a heartbeat that reached it), not only at the node's restart:
 * until then the region's other nodes answer key_claimed for that key.
 */
import { describe, expect, it } from "vitest";
import { silentLogger } from "../log.js";
import type { Runtime } from "../runtime/index.js";
import type { SharedRegionStore } from "../store/index.js";
import { Membership, StuckClaims } from "./fellows.js";

const quiet = silentLogger();

describe("claims stuck by a store that did not answer", () => {
  it("end after a heartbeat that reached the store, and stay while it does not answer", async () => {
    const stuck = new StuckClaims(quiet);
    let up = false;
    const ended: string[] = [];
    const endOf = (key: string) => async () => {
      if (!up) throw new Error("Connection terminated unexpectedly");
      ended.push(key);
      return true;
    };
    stuck.add("k1", endOf("k1"));
    stuck.add("k2", endOf("k2"));
    const shared = {
      heartbeat: async () => {
        if (!up) throw new Error("Connection terminated unexpectedly");
        return { left: false };
      },
      regionNodes: async () => [],
    } as unknown as SharedRegionStore;
    let failures = 0;
    const m = new Membership({
      shared,
      incarnation: "i1",
      nodeId: "n1",
      intervalMs: 1000,
      runtime: {} as Runtime,
      log: quiet,
      stop: () => undefined,
      audit: async () => undefined,
      shipLeftStreams: () => undefined,
      onFailure: () => failures++,
      onBeat: () => stuck.retry(),
    });
    await m.beat();
    expect(failures).toBe(1);
    expect(stuck.size).toBe(2);
    // The store answers again: the next heartbeat ends both claims.
    up = true;
    await m.beat();
    expect(ended).toEqual(["k1", "k2"]);
    expect(stuck.size).toBe(0);
    expect(m.failures).toBe(0);
  });

  it("keep an end that fails for the next try", async () => {
    const stuck = new StuckClaims(quiet);
    let tries = 0;
    stuck.add("k", async () => {
      if (++tries === 1) throw new Error("still down");
      return false; // the claim was re-taken by a later append meanwhile: nothing to end
    });
    await stuck.retry();
    expect(stuck.size).toBe(1);
    await stuck.retry();
    expect(stuck.size).toBe(0);
  });
});
