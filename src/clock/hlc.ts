/**
 * Hybrid logical clock (Kulkarni et al.): physical milliseconds plus a logical counter.
 * Pure: time comes from an injected wall clock, so tests can step it back or freeze it.
 *
 * Guarantees: every value returned by now() or update() is strictly greater than every
 * value returned before, whatever the wall clock does; update(remote) returns a value
 * greater than `remote`. A remote timestamp further ahead than maxSkewMs is refused
 * (ClockSkewError) and counted, so one region with a broken clock cannot drag the
 * others into the future.
 */
import { ClockSkewError } from "../errors.js";
import { hlcLogicalMax, hlcMaxSkewMsDefault, hlcWallMsMax } from "../limits.js";
import { realRuntime } from "../runtime/index.js";

export interface Hlc {
  readonly wallMs: number;
  readonly logical: number;
}

export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wallMs !== b.wallMs ? a.wallMs - b.wallMs : a.logical - b.logical;
}

const wallDigits = 15;
const logicalDigits = 5;

/** Fixed-width text form that sorts like the timestamp: "001763768903123.00001". */
export function formatHlc(h: Hlc): string {
  return `${String(h.wallMs).padStart(wallDigits, "0")}.${String(h.logical).padStart(logicalDigits, "0")}`;
}

export function parseHlc(text: string): Hlc {
  const m = /^(\d{1,15})\.(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`not an HLC timestamp: ${JSON.stringify(text)}`);
  const h = { wallMs: Number(m[1]), logical: Number(m[2]) };
  if (h.logical > hlcLogicalMax || h.wallMs > hlcWallMsMax) throw new Error(`HLC out of range: ${text}`);
  return h;
}

export interface HybridClockOptions {
  /** Wall clock in ms since the epoch; injected for tests. */
  wallClock?: () => number;
  maxSkewMs?: number;
  /** Start no lower than this (e.g. the highest HLC found in the WAL on recovery). */
  floor?: Hlc;
}

export class HybridClock {
  private wallMs = 0;
  private logical = 0;
  private readonly wallClock: () => number;
  readonly maxSkewMs: number;
  /** Remote timestamps refused for skew since start. */
  skewRejections = 0;

  constructor(options: HybridClockOptions = {}) {
    this.wallClock = options.wallClock ?? realRuntime.nowMs;
    this.maxSkewMs = options.maxSkewMs ?? hlcMaxSkewMsDefault;
    if (options.floor) this.observe(options.floor);
  }

  /** The last timestamp issued (or observed), without advancing. */
  peek(): Hlc {
    return { wallMs: this.wallMs, logical: this.logical };
  }

  now(): Hlc {
    const wall = Math.floor(this.wallClock()); // whole ms: a clock with fractions would answer an HLC the WAL cannot store
    if (wall > this.wallMs) {
      this.wallMs = wall;
      this.logical = 0;
    } else {
      this.bumpLogical();
    }
    return { wallMs: this.wallMs, logical: this.logical };
  }

  /** Merge a timestamp received from another region; returns the new local time. */
  update(remote: Hlc): Hlc {
    const wall = Math.floor(this.wallClock()); // whole ms: a clock with fractions would answer an HLC the WAL cannot store
    if (remote.wallMs > wall + this.maxSkewMs) {
      this.skewRejections++;
      throw new ClockSkewError(remote.wallMs, wall, this.maxSkewMs);
    }
    const maxWall = Math.max(wall, this.wallMs, remote.wallMs);
    if (maxWall === this.wallMs && maxWall === remote.wallMs) {
      this.logical = Math.max(this.logical, remote.logical);
      this.bumpLogical();
    } else if (maxWall === this.wallMs) {
      this.bumpLogical();
    } else if (maxWall === remote.wallMs) {
      this.wallMs = maxWall;
      this.logical = remote.logical;
      this.bumpLogical();
    } else {
      this.wallMs = maxWall;
      this.logical = 0;
    }
    return { wallMs: this.wallMs, logical: this.logical };
  }

  /** Never issue anything at or below `h` (used on recovery; no skew check, it is our own past). */
  observe(h: Hlc): void {
    if (compareHlc(h, this.peek()) > 0) {
      this.wallMs = h.wallMs;
      this.logical = h.logical;
    }
  }

  private bumpLogical(): void {
    if (this.logical < hlcLogicalMax) {
      this.logical++;
      return;
    }
    // 65,536 events in one millisecond: borrow the next millisecond rather than wrap.
    this.wallMs++;
    this.logical = 0;
  }
}
