/**
 * What a region does with an apply's conflicts: a winner changed outside the engine that a
 * newer decision displaced (the store did not keep its changed copy as the loser: simulator
 * seed 1151) is audited with the copy as found, not only logged (the review): from the note
 * the store wrote with the displacement, by the audit pump, which the region wakes (an entry
 * handed to the pump's memory was lost with a crash before it was written).
 */
import { describe, expect, it } from "vitest";
import { silentLogger } from "../log.js";
import type { ApplyResult } from "../store/index.js";
import { Region } from "./region.js";

const version = (origin: string, outcome: string) => ({
  key: "k",
  tenant: "t",
  outcome,
  bodyJson: undefined,
  origin,
  incarnation: "i".repeat(32),
  lsn: 1,
  hlc: { wallMs: 1, logical: 0 },
});

describe("Region.countApplied", () => {
  it("wakes the audit pump for a displaced winner changed outside the engine (the store noted it) and hands it nothing to keep in memory", () => {
    const audited: Array<Record<string, unknown>> = [];
    let pumps = 0;
    const counter = { inc: () => undefined };
    const region = Object.assign(Object.create(Region.prototype) as Region, {
      metrics: { appliedRecords: counter, duplicates: counter, conflicts: counter },
      auditPump: {
        pump: async () => void pumps++,
        record: async (e: Record<string, unknown>) => void audited.push(e),
      },
      log: silentLogger(),
    });
    const winner = version("eu-west-1", "deny");
    const result: ApplyResult = {
      status: "applied",
      watermark: 1,
      applied: 2,
      duplicates: 0,
      conflicts: [
        {
          key: "k",
          winner,
          loser: version("us-east-1", "edited by hand"),
          rule: "first-write-wins",
          loserDamaged: true,
        },
        { key: "k", winner, loser: version("ap-south-1", "approve"), rule: "first-write-wins" },
      ],
    };
    region.countApplied("eu-west-1", result);
    expect(audited).toEqual([]);
    expect(pumps).toBe(1);
  });
});
