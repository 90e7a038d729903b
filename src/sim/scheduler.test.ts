/**
 * The scheduler waits for the simulator's own work like I/O, and a failure of it fails the
 * run: an operator's step or a checker's reading that throws is never swallowed (found by
 * review: a sampler that threw on every sample left the run green).
 */
import { describe, expect, it } from "vitest";
import { Scheduler } from "./scheduler.js";

describe("the simulator's own work", () => {
  it("is waited for before the next event, and its failure is kept", async () => {
    const s = new Scheduler(1);
    const order: string[] = [];
    s.after(10, () => {
      s.task(
        "a slow step",
        new Promise<void>((resolve) => setTimeout(resolve, 20)).then(() => void order.push("step done")),
      );
      s.task("a failing step", Promise.reject(new Error("boom")));
    });
    s.after(11, () => order.push("next event"));
    await s.runUntil(s.nowMs + 100);
    expect(order).toEqual(["step done", "next event"]);
    expect(s.failures).toHaveLength(1);
    expect(s.failures[0]).toMatch(/^a failing step failed at 1750000000010: Error: boom/);
  });
});
