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

  it("does not hold every other event for its parked requests (a run with a stall slowed to a crawl)", async () => {
    const s = new Scheduler(1);
    const p = { alive: true, skewMs: 0, frozenUntilMs: s.nowMs + 100_000 };
    // A request to the frozen process, under way until it thaws.
    s.pending.add({ proc: p });
    for (let i = 1; i <= 100; i++) s.after(i, () => undefined);
    await s.runUntil(s.nowMs + 1000);
    expect(s.events).toBe(100);
    // A running process's request would cost each event up to 1,000 turns.
    expect(s.turns).toBe(0);
  });
});
