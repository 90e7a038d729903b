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

describe("a frozen process", () => {
  it("runs its timers and I/O only once it thaws, in their order; others run on", async () => {
    const s = new Scheduler(1);
    const p = { alive: true, skewMs: 0, frozenUntilMs: s.nowMs + 1000 };
    const other = { alive: true, skewMs: 0 };
    const t0 = s.nowMs;
    const ran: string[] = [];
    s.after(10, () => ran.push(`a@${s.nowMs - t0}`), p);
    s.after(20, () => ran.push(`b@${s.nowMs - t0}`), p);
    s.after(30, () => ran.push(`other@${s.nowMs - t0}`), other);
    s.after(40, () => void s.thawed(p)!.then(() => ran.push(`io@${s.nowMs - t0}`)));
    await s.runUntil(t0 + 2000);
    expect(ran).toEqual(["other@30", "a@1000", "b@1000", "io@1000"]);
    expect(s.thawed(p)).toBeUndefined();
  });
});
