/**
 * The simulator's world clock: one seeded random stream, virtual time, and a queue of
 * events ordered by (time, sequence). Every region gets a Runtime view of it (its own clock
 * skew; its timers die with it when it crashes). Between events the scheduler lets the
 * microtasks and in-process requests the last event started run to completion, so a run
 * depends only on its seed.
 */
import { createHash } from "node:crypto";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { Runtime, Timer } from "../runtime/index.js";

/** A simulated process: its timers run while it is alive; its wall clock is off by skewMs. */
export interface SimProcess {
  alive: boolean;
  skewMs: number;
  /**
   * Frozen (a stalled VM, a long GC pause) until this virtual time: its timers wait, and so
   * does its disk and store I/O (`thawed`); nothing it started is lost.
   */
  frozenUntilMs?: number;
}

interface Event {
  atMs: number;
  seq: number;
  fn: () => void;
  owner: SimProcess | undefined;
  cancelled: boolean;
}

/** Turns an in-process request may take before it counts as waiting for simulated time. */
const parkTurns = 1000;
/** Events at one virtual millisecond beyond which a run is stuck in a loop that never waits. */
const sameMsEventsMax = 200_000;

export class Scheduler {
  nowMs = 1_750_000_000_000;
  /** Work started outside the event queue that must finish before the next event (in-process requests). */
  readonly pending = new Set<{ proc: SimProcess }>();
  /**
   * Real I/O under way (a PostgreSQL server's answers): it takes no simulated time, so the
   * next event waits for it, and the turns spent waiting do not count toward parking.
   */
  private readonly io = new Map<Promise<unknown>, string>();
  /**
   * Wall-clock milliseconds real I/O may take before the run fails, naming what it waits
   * for: a wait that never ends is a simulator bug (I/O that waits for simulated time), and
   * must fail the run with evidence, not hang it (a stalled node's close did, on a CI machine).
   */
  ioWallMsMax = 120_000;
  /** `performance.now()` past which the run fails (checked every so many events). */
  wallDeadlineMs = Infinity;
  events = 0;
  /** Turns spent waiting for in-process requests to finish or park (the cost of `settle`). */
  turns = 0;
  private sameMsEvents = 0;
  private readonly queue: Event[] = [];
  private seq = 0;
  private readonly rng: ReturnType<typeof xoroshiro128plus>;
  private readonly trace = createHash("sha256");

  constructor(readonly seed: number) {
    this.rng = xoroshiro128plus(seed);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return uniformInt(this.rng, min, max);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.int(0, 999_999) < p * 1_000_000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  /**
   * A generator of its own for one kind of choice, from the run's seed and `label`. A fault
   * added later draws from one, so the main stream, and with it every run that does not meet
   * the new fault, stays as it was (the suite's seeds that found a bug keep their schedule).
   */
  side(label: string): { chance(p: number): boolean; pick<T>(items: readonly T[]): T } {
    let h = this.seed | 0;
    for (const ch of label) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
    const rng = xoroshiro128plus(h);
    const int = (min: number, max: number) => uniformInt(rng, min, max);
    return {
      chance: (p) => int(0, 999_999) < p * 1_000_000,
      pick: (items) => items[int(0, items.length - 1)]!,
    };
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }

  /** Add a line to the run's trace (its hash shows two runs of one seed are the same run). */
  note(line: string): void {
    const text = `${this.nowMs} ${line}`;
    this.trace.update(`${text}\n`);
    if (this.keepLines) this.lines.push(text);
  }

  /** The trace's lines, when kept (`--trace`). */
  readonly lines: string[] = [];
  keepLines = false;

  traceHash(): string {
    return this.trace.copy().digest("hex");
  }

  after(ms: number, fn: () => void, owner?: SimProcess): Timer {
    const e: Event = {
      atMs: this.nowMs + Math.ceil(Math.max(0, ms)),
      seq: this.seq++,
      fn,
      owner,
      cancelled: false,
    };
    this.push(e);
    return { cancel: () => void (e.cancelled = true) };
  }

  /** The simulator's own work (`task`) that failed: each fails the run. */
  readonly failures: string[] = [];

  /**
   * The simulator's own work started by an event (a checker's reading, an operator's step):
   * waited for like I/O, and a failure of it is a failure of the run, never swallowed.
   */
  task(what: string, p: Promise<unknown>): void {
    void this.track(p, what).catch((err: unknown) =>
      this.failures.push(`${what} failed at ${this.nowMs}: ${(err as Error)?.stack ?? String(err)}`),
    );
  }

  /** Count `p` (`what`, for a run that stops there) as real I/O the next event waits for (see `io`); returns it. */
  track<T>(p: Promise<T>, what = "I/O"): Promise<T> {
    const done = p.then(
      () => void this.io.delete(done),
      () => void this.io.delete(done),
    );
    this.io.set(done, what);
    return p;
  }

  /** Wait for the real I/O under way; fail if it is still under way after `ioWallMsMax`. */
  private async ioDone(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const what = [...new Set(this.io.values())].slice(0, 10).join("; ");
        reject(
          new Error(
            `simulation: real I/O did not end within ${this.ioWallMsMax} ms of wall time at ${this.nowMs} (${this.io.size} under way: ${what}); I/O must not wait for simulated time`,
          ),
        );
      }, this.ioWallMsMax);
    });
    try {
      await Promise.race([Promise.all([...this.io.keys()]), stuck]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves once `p` is not frozen (at once if it is not): a frozen process's I/O waits. */
  thawed(p: SimProcess): Promise<void> | undefined {
    const until = p.frozenUntilMs;
    if (until === undefined || until <= this.nowMs) return undefined;
    return new Promise((resolve) => void this.after(until - this.nowMs, resolve));
  }

  /** A Runtime for one simulated process. */
  runtimeOf(p: SimProcess): Runtime {
    const every = (ms: number, fn: () => void): Timer => {
      let current: Timer;
      let cancelled = false;
      const arm = () => {
        current = this.after(
          ms,
          () => {
            if (cancelled) return;
            arm();
            fn();
          },
          p,
        );
      };
      arm();
      return {
        cancel: () => {
          cancelled = true;
          current.cancel();
        },
      };
    };
    return {
      nowMs: () => this.nowMs + p.skewMs,
      monoMs: () => this.nowMs,
      after: (ms, fn) => this.after(ms, fn, p),
      every,
      soon: (fn) => void this.after(0, fn, p),
      random: () => this.int(0, 2 ** 30 - 1) / 2 ** 30,
      randomBytes: (n) => this.bytes(n),
    };
  }

  /** Run events until virtual time reaches `untilMs` (or nothing is left to run). */
  async runUntil(untilMs: number): Promise<void> {
    for (;;) {
      const e = this.queue[0];
      if (!e || e.atMs > untilMs) break;
      this.pop();
      if (e.cancelled || (e.owner && !e.owner.alive)) continue;
      const frozenUntilMs = e.owner?.frozenUntilMs;
      if (frozenUntilMs !== undefined && frozenUntilMs > e.atMs) {
        this.push({ ...e, atMs: frozenUntilMs, seq: this.seq++ });
        continue;
      }
      this.sameMsEvents = e.atMs === this.nowMs ? this.sameMsEvents + 1 : 0;
      if (this.sameMsEvents > sameMsEventsMax)
        throw new Error(
          `simulation: time does not advance (${sameMsEventsMax} events at ${e.atMs}): a loop that never waits`,
        );
      this.nowMs = e.atMs;
      this.events++;
      if ((this.events & 1023) === 0 && performance.now() > this.wallDeadlineMs)
        throw new Error(
          `simulation: over its wall-clock budget at ${this.nowMs} after ${this.events} events (a run much slower than usual: a busy machine, or work that loops)`,
        );
      e.fn();
      await this.settle();
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
  }

  /**
   * Let the microtasks and in-process requests the last event started finish. A request
   * still running after `parkTurns` turns waits for simulated time (a retry's backoff, a
   * timeout): the next event runs. The count of turns is part of the run, not of the
   * machine (everything in-process is synchronous I/O and promise turns), so it stays
   * deterministic. Real I/O (`track`) is waited for whole; a run on PostgreSQL is therefore
   * not replayed byte for byte (the server answers on its own schedule).
   */
  async settle(): Promise<void> {
    let turns = 0;
    for (;;) {
      await new Promise<void>((r) => setImmediate(r));
      if (this.io.size > 0) {
        await this.ioDone();
        continue;
      }
      // A frozen process's requests wait for its thaw (simulated time): not for more turns.
      if (![...this.pending].some((p) => p.proc.alive && !((p.proc.frozenUntilMs ?? 0) > this.nowMs))) return;
      if (turns++ >= parkTurns) return;
      this.turns++;
    }
  }

  private push(e: Event): void {
    const q = this.queue;
    q.push(e);
    let i = q.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(q[i]!, q[parent]!)) break;
      [q[i], q[parent]] = [q[parent]!, q[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const q = this.queue;
    const last = q.pop()!;
    if (q.length === 0) return;
    q[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < q.length && before(q[l]!, q[m]!)) m = l;
      if (r < q.length && before(q[r]!, q[m]!)) m = r;
      if (m === i) return;
      [q[i], q[m]] = [q[m]!, q[i]!];
      i = m;
    }
  }
}

function before(a: Event, b: Event): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
