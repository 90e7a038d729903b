import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ClockSkewError } from "../errors.js";
import { HybridClock, compareHlc, formatHlc, parseHlc, type Hlc } from "./hlc.js";

type Step =
  { kind: "tick" } | { kind: "wall"; deltaMs: number } | { kind: "remote"; aheadMs: number; logical: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constant<Step>({ kind: "tick" }),
  fc.record({ kind: fc.constant("wall" as const), deltaMs: fc.integer({ min: -5000, max: 5000 }) }),
  fc.record({
    kind: fc.constant("remote" as const),
    aheadMs: fc.integer({ min: -5000, max: 2000 }),
    logical: fc.integer({ min: 0, max: 0xffff }),
  }),
);

describe("HybridClock", () => {
  it("is strictly monotonic under any interleaving of local ticks, remote updates and wall-clock steps", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 300 }), (steps) => {
        let wall = 1_700_000_000_000;
        const clock = new HybridClock({ wallClock: () => wall, maxSkewMs: 1000 });
        let last: Hlc = { wallMs: 0, logical: 0 };
        for (const s of steps) {
          let next: Hlc;
          if (s.kind === "wall") {
            wall += s.deltaMs;
            continue;
          } else if (s.kind === "tick") {
            next = clock.now();
          } else {
            const remote = { wallMs: wall + s.aheadMs, logical: s.logical };
            try {
              next = clock.update(remote);
            } catch (err) {
              expect(err).toBeInstanceOf(ClockSkewError);
              expect(s.aheadMs).toBeGreaterThan(1000);
              continue;
            }
            expect(compareHlc(next, remote)).toBeGreaterThan(0);
          }
          expect(compareHlc(next, last)).toBeGreaterThan(0);
          last = next;
        }
      }),
    );
  });

  it("refuses and counts a remote timestamp beyond the skew limit without moving", () => {
    const clock = new HybridClock({ wallClock: () => 10_000, maxSkewMs: 500 });
    const before = clock.now();
    expect(() => clock.update({ wallMs: 10_501, logical: 0 })).toThrow(/ahead of the local clock/);
    expect(clock.skewRejections).toBe(1);
    expect(compareHlc(clock.peek(), before)).toBe(0);
    expect(
      compareHlc(clock.update({ wallMs: 10_500, logical: 7 }), { wallMs: 10_500, logical: 7 }),
    ).toBeGreaterThan(0);
  });

  it("borrows the next millisecond when the logical counter is exhausted", () => {
    const clock = new HybridClock({ wallClock: () => 5 });
    let h = clock.now();
    for (let i = 0; i < 0x10000; i++) h = clock.now();
    expect(h).toEqual({ wallMs: 6, logical: 0 });
  });

  it("merges a remote timestamp by the HLC rules (each case, exact values)", () => {
    let wall = 90;
    const at = (wallMs: number, logical: number) => {
      const c = new HybridClock({ wallClock: () => wall, floor: { wallMs, logical } });
      return c;
    };
    // Same wall ms here and there, ahead of the wall clock: the larger logical, plus one.
    expect(at(100, 3).update({ wallMs: 100, logical: 7 })).toEqual({ wallMs: 100, logical: 8 });
    expect(at(100, 9).update({ wallMs: 100, logical: 7 })).toEqual({ wallMs: 100, logical: 10 });
    // Ours ahead: our logical plus one.
    wall = 95;
    expect(at(100, 3).update({ wallMs: 90, logical: 9 })).toEqual({ wallMs: 100, logical: 4 });
    // The remote ahead: its time, its logical plus one.
    wall = 110;
    expect(at(100, 3).update({ wallMs: 120, logical: 5 })).toEqual({ wallMs: 120, logical: 6 });
    // The wall clock ahead of both: the wall clock, logical 0.
    wall = 130;
    expect(at(100, 3).update({ wallMs: 105, logical: 9 })).toEqual({ wallMs: 130, logical: 0 });
    // A floor below what the clock already holds changes nothing.
    const c = at(100, 3);
    c.observe({ wallMs: 100, logical: 3 });
    c.observe({ wallMs: 99, logical: 50 });
    expect(c.peek()).toEqual({ wallMs: 100, logical: 3 });
  });

  it("orders by wall ms, then logical", () => {
    expect(compareHlc({ wallMs: 1, logical: 2 }, { wallMs: 1, logical: 5 })).toBeLessThan(0);
    expect(compareHlc({ wallMs: 1, logical: 5 }, { wallMs: 1, logical: 2 })).toBeGreaterThan(0);
    expect(compareHlc({ wallMs: 2, logical: 0 }, { wallMs: 1, logical: 9 })).toBeGreaterThan(0);
    expect(compareHlc({ wallMs: 1, logical: 2 }, { wallMs: 1, logical: 2 })).toBe(0);
  });

  it("parses only the whole fixed form, within range", () => {
    expect(parseHlc("000000000000001.00002")).toEqual({ wallMs: 1, logical: 2 });
    for (const bad of ["x000000000000001.00002", "000000000000001.00002x", "1.2.3", ""])
      expect(() => parseHlc(bad), bad).toThrow(/not an HLC timestamp/);
    expect(() => parseHlc("000000000000001.65536")).toThrow("HLC out of range: 000000000000001.65536");
    expect(parseHlc("000000000000001.65535")).toEqual({ wallMs: 1, logical: 65535 });
    expect(() => parseHlc(`${2 ** 48}.00000`)).toThrow(/HLC out of range/);
    expect(parseHlc(`${2 ** 48 - 1}.00000`)).toEqual({ wallMs: 2 ** 48 - 1, logical: 0 });
  });

  it("never issues below a floor given at start (the WAL's last HLC after a restart)", () => {
    const clock = new HybridClock({ wallClock: () => 100, floor: { wallMs: 500, logical: 3 } });
    expect(clock.now()).toEqual({ wallMs: 500, logical: 4 });
  });

  it("formats fixed-width text that sorts like the timestamp and parses back", () => {
    const hlc = fc.record({
      wallMs: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
      logical: fc.integer({ min: 0, max: 0xffff }),
    });
    fc.assert(
      fc.property(hlc, hlc, (a, b) => {
        expect(parseHlc(formatHlc(a))).toEqual(a);
        const textOrder = formatHlc(a) < formatHlc(b) ? -1 : formatHlc(a) > formatHlc(b) ? 1 : 0;
        expect(textOrder).toBe(Math.sign(compareHlc(a, b)));
      }),
    );
    expect(() => parseHlc("12.x")).toThrow(/not an HLC/);
  });

  it("keeps whole milliseconds when the wall clock has fractions (the WAL stores integers; the answer must match)", () => {
    let wall = 1_750_000_009_199.542;
    const clock = new HybridClock({ wallClock: () => wall });
    const a = clock.now();
    expect(a.wallMs).toBe(1_750_000_009_199);
    expect(formatHlc(a)).toBe("001750000009199.00000");
    wall += 0.3;
    expect(clock.now()).toEqual({ wallMs: 1_750_000_009_199, logical: 1 });
    expect(clock.update({ wallMs: 1_750_000_009_100, logical: 7 }).wallMs).toBe(1_750_000_009_199);
  });
});
