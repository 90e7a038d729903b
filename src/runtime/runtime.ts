/**
 * Time, timers and randomness: the only door to them in engine code (the linter refuses
 * `Date.now`, `setTimeout`, `setInterval`, `setImmediate`, `Math.random` and `randomBytes`
 * elsewhere in the engine). The real runtime wraps Node's; the simulator supplies one driven
 * by its own seeded scheduler, so a run replays from its seed.
 */
import { randomBytes } from "node:crypto";

/** A scheduled callback that can be cancelled. */
export interface Timer {
  cancel(): void;
}

export interface Runtime {
  /** Wall clock, ms since the epoch. */
  nowMs(): number;
  /** A monotonic clock in ms, for durations (metrics). */
  monoMs(): number;
  /** Run `fn` once after `ms`. Never keeps a process alive by itself. */
  after(ms: number, fn: () => void): Timer;
  /** Run `fn` every `ms`. Never keeps a process alive by itself. */
  every(ms: number, fn: () => void): Timer;
  /** Run `fn` after the current turn, once every callback of this turn has run. */
  soon(fn: () => void): void;
  /** Uniform in [0, 1). */
  random(): number;
  /** `n` random bytes (incarnations, nonces). */
  randomBytes(n: number): Buffer;
}

/** Resolve after `ms` (or at once when `signal` aborts, without rejecting). */
export function sleep(rt: Runtime, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      timer.cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = rt.after(ms, done);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** An AbortSignal that aborts after `ms` on the runtime's clock. */
export function timeoutSignal(rt: Runtime, ms: number): AbortSignal {
  const ac = new AbortController();
  rt.after(ms, () => ac.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError")));
  return ac.signal;
}

/**
 * A signal that aborts when any of `signals` does (with its reason), and `release()`, which
 * detaches it from them. Instead of `AbortSignal.any`, which in Node 20 keeps every signal
 * it makes reachable from a long-lived source: ~60 bytes per call never freed, so a shipper
 * making one per batch grew for as long as it ran.
 */
export function anySignal(signals: readonly AbortSignal[]): { signal: AbortSignal; release(): void } {
  const ac = new AbortController();
  const release = () => {
    for (const s of signals) s.removeEventListener("abort", onAbort);
  };
  function onAbort(this: AbortSignal) {
    release();
    ac.abort(this.reason);
  }
  for (const s of signals) {
    if (s.aborted) {
      release();
      ac.abort(s.reason);
      break;
    }
    s.addEventListener("abort", onAbort, { once: true });
  }
  return { signal: ac.signal, release };
}

/** The next turn, as a promise (group commit: let every call of this turn join). */
export function nextTurn(rt: Runtime): Promise<void> {
  return new Promise((resolve) => rt.soon(resolve));
}

export const realRuntime: Runtime = {
  nowMs: () => Date.now(),
  monoMs: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
  soon(fn) {
    setImmediate(fn);
  },
  random: () => Math.random(),
  randomBytes: (n) => randomBytes(n),
};

/** The real runtime with its wall clock shifted (the clock-skew drill). */
export function shiftedRuntime(base: Runtime, offsetMs: number): Runtime {
  return { ...base, nowMs: () => base.nowMs() + offsetMs };
}
