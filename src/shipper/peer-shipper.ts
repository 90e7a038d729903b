/**
 * Ships this region's own streams to one peer through a PeerLink: tails durable records,
 * cuts batches (bounded in bytes and records), sends them, and tracks the LSN the peer has
 * durably applied (`acked`). The loop is supervised: any failure (a refused batch, a lost
 * connection, an unreadable segment, a bug) ends the session, shows as `failing` with the
 * error, and the session restarts with backoff from the peer's own watermark. Nothing is
 * skipped unless an operator said so (`allowSkip`), which the region audits.
 *
 * A session: ask the peer what it holds (and refuse a peer with another conflict rule or
 * format), ship older incarnations of ours it lacks, backfill tenants a widened policy now
 * sends it, then ship the current incarnation from its watermark: from the WAL, or from this
 * region's store where the WAL no longer holds the LSNs. Up to `inflightBatchesMax` batches
 * are in flight, in LSN order on one connection.
 */
import { EventEmitter, setMaxListeners } from "node:events";
import type { Logger } from "../log.js";
import { WalClosedError } from "../errors.js";
import { LinkError, type PeerLink, type WatermarksView } from "../link/index.js";
import { BATCH_FLAG_BACKFILL, BATCH_FLAG_SKIP_GAP, encodeBatch } from "../protocol/index.js";
import { anySignal, realRuntime, sleep, type Runtime, type Timer } from "../runtime/index.js";
import type { WalChunk } from "../wal/index.js";
import type { FileOps } from "../util/file-ops.js";
import { readAckState, writeAckState, type AckState } from "./ack-state.js";
import { backfillTenants, shipOlderStreams, type BackfillContext } from "./backfill.js";
import {
  StreamGapError,
  filterChunk,
  readOwnStream,
  skipChunk,
  type OwnRecords,
  type ShipperWal,
} from "./stream-reader.js";

export interface PeerShipperOptions {
  region: string;
  link: PeerLink;
  wal: ShipperWal;
  own: OwnRecords;
  /** Undefined: every record goes to this peer. */
  sendsTenant?: (tenant: string) => boolean;
  /** The tenants this peer receives under a selective policy; undefined: every tenant. */
  tenants?: readonly string[];
  /** This region's conflict rule and format version: a peer with others is refused. */
  rule: string;
  formatVersion: number;
  batchBytesMax: number;
  batchRecordsMax: number;
  lingerMs: number;
  retryDelayMsMin: number;
  retryDelayMsMax: number;
  inflightBatchesMax: number;
  /** Bytes of batches sent and not yet answered, at most (one batch is always allowed). */
  inflightBytesMax: number;
  stateFile: string;
  /** How the state file is written (default node:fs; the simulator passes its disk). */
  fileOps?: FileOps;
  ackPersistIntervalMs: number;
  log: Logger;
  runtime?: Runtime;
  /** Audit, durably, own records of an older incarnation nobody here holds. */
  reportLost?: (incarnation: string, ranges: Array<[number, number]>) => Promise<void>;
}

export type ShipperState = "starting" | "shipping" | "caught-up" | "failing" | "stopped";

export interface ShipperEvents {
  /** The peer durably acknowledged everything of the current incarnation up to `lsn`; `records` were sent for it. */
  ack: [lsn: number, records: number];
  /** A send or a session failed; `reason` is a short stable label (metrics), `err` the detail. */
  failure: [reason: string, err: Error];
  /** The peer holds more of our current incarnation than our WAL: LSNs would be reissued. */
  peerAhead: [peerLsn: number, durableLsn: number];
  /** The WAL could not serve a range (retention, a damaged segment): it was read from the store. */
  fallback: [err: Error];
}

/**
 * Why answerOrMore stops its wait: one reason for every call. abort() without a reason builds
 * a DOMException (a stack capture) each time, once or twice per batch on the shipping path.
 */
const answeredFirst = new Error("the oldest batch was answered first");

/** Exponential backoff with jitter: the capped step times 1..2. */
export function backoffMs(failures: number, minMs: number, maxMs: number, random: () => number): number {
  const step = Math.min(maxMs, minMs * 2 ** Math.max(0, failures - 1));
  return Math.min(maxMs, step * (1 + random()));
}

/** The peer's watermark for one stream of `origin` (0 when it holds none). */
export function streamLsn(view: WatermarksView, origin: string, incarnation: string): number {
  return view.streams.find((s) => s.origin === origin && s.incarnation === incarnation)?.lsn ?? 0;
}

type SendOutcome =
  | { kind: "ok"; watermark: number; chunk: WalChunk; sent: number }
  | { kind: "gap"; watermark: number; chunk: WalChunk }
  | { kind: "error"; error: Error; chunk: WalChunk };

export class PeerShipper extends EventEmitter<ShipperEvents> {
  readonly peer: string;
  /** Highest LSN of our current incarnation the peer has durably applied. */
  acked = 0;
  state: ShipperState = "starting";
  /** The last failure, while failing (shown by status). */
  lastError: string | undefined;
  private readonly o: PeerShipperOptions;
  private readonly rt: Runtime;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private persistTimer: Timer | undefined;
  private persisted: AckState | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private failures = 0;
  private failingReason: string | undefined;
  /** When `acked` last moved (lag's lower bound when the oldest unacknowledged record cannot be read). */
  private progressAtMs: number;
  /** An operator allowed skipping LSNs of the current incarnation up to this one (audited by the region); 0: none. */
  private skipThrough = 0;
  /** Wall-clock ms of the peer's last answer to a batch of the current stream (0: none yet). */
  lastAckAtMs = 0;
  /**
   * A new instance of the peer spoke (peerRestarted) and no session has read what it holds
   * since: `acked` was acknowledged by the instance it replaced, whose store may be gone.
   * Status then calls the peer not caught up (found by review: `crr drain` trusted it).
   */
  ackInDoubt = false;
  /** peerRestarted calls so far: a session clears the doubt only if none came since it asked. */
  private restartsHeard = 0;
  /** Set by resync(): the current session ends at its next idle moment and a new one starts. */
  private resyncWanted = false;
  /** A resync is due once a bootstrapping peer may be done (peerBootstrapping). */
  private lookAgain = false;
  /** Wakes the caught-up wait for a resync. */
  private idleWake = new AbortController();

  constructor(o: PeerShipperOptions) {
    super();
    this.o = o;
    this.rt = o.runtime ?? realRuntime;
    this.peer = o.link.peer;
    this.progressAtMs = this.rt.nowMs();
    // Every batch in the window listens on this signal (and the waits beside them): a full
    // window is not a leak, and must not print Node's MaxListenersExceededWarning.
    setMaxListeners(o.inflightBatchesMax + 16, this.abort.signal);
    const saved = readAckState(o.stateFile, this.peer);
    this.persisted = saved;
    if (saved && saved.incarnation === o.wal.incarnation) this.acked = saved.acked;
  }

  start(): void {
    this.loop = this.supervise();
    this.persistTimer = this.rt.every(this.o.ackPersistIntervalMs, () => void this.persistAck());
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error("shipper stopped"));
    this.persistTimer?.cancel();
    await this.loop;
    await this.persistAck();
    this.state = "stopped";
  }

  /**
   * End the session once its window has drained (nothing new is sent meanwhile) and start a
   * new one: it ships the region's streams that became this node's to ship since the last
   * one (a fellow node of the region left). Under steady load the window never empties by
   * itself (found by review).
   */
  resync(): void {
    this.resyncWanted = true;
    this.idleWake.abort(new Error("resync"));
  }

  /**
   * A new instance of the peer spoke (a restart; its store may hold less than it
   * acknowledged): what it acknowledged is in doubt until a new session reads what it holds.
   */
  peerRestarted(): void {
    this.restartsHeard++;
    this.ackInDoubt = true;
    this.resync();
  }

  /** Let sessions skip LSNs of the current incarnation up to `throughLsn` that nobody holds. */
  allowSkip(throughLsn: number): void {
    this.skipThrough = Math.max(this.skipThrough, throughLsn);
  }

  /** Wall-clock ms of the oldest durable record the peer has not acknowledged; undefined when caught up. */
  async oldestUnackedWallMs(): Promise<number | undefined> {
    const wal = this.o.wal;
    if (this.acked >= wal.durableLsn) return undefined;
    try {
      // (the session reports fallbacks; a lag reading does not repeat them)
      const limits = { bytesMax: 1, recordsMax: 1 };
      const chunk = await readOwnStream(
        wal,
        this.o.own,
        this.o.region,
        this.acked + 1,
        limits,
        () => undefined,
      );
      if (chunk) return chunk.frames.readUIntLE(16, 6);
    } catch {
      // Neither the WAL nor the store can say how old it is: the lag is at least this long.
    }
    return this.progressAtMs;
  }

  // ---- supervision -------------------------------------------------------------------

  private async supervise(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        await this.session();
      } catch (err) {
        if (signal.aborted) break;
        this.failures++;
        this.noteFailure(err instanceof Error ? err : new Error(String(err)));
        const delay = backoffMs(this.failures, this.o.retryDelayMsMin, this.o.retryDelayMsMax, () =>
          this.rt.random(),
        );
        await sleep(this.rt, delay, signal);
      }
    }
  }

  private async session(): Promise<void> {
    const restartsBefore = this.restartsHeard;
    const view = await this.o.link.watermarks(this.abort.signal);
    this.checkPeer(view);
    const peerCurrent = streamLsn(view, this.o.region, this.o.wal.incarnation);
    // A peer holding less of us than it acknowledged (restored from a backup) lost what
    // backfills sent it too: redo them as if nothing were known.
    const wentBack =
      this.persisted?.incarnation === this.o.wal.incarnation && peerCurrent < this.persisted.acked;
    if (wentBack)
      this.o.log.warn(
        { peer: this.peer, was: this.persisted!.acked, now: peerCurrent },
        "peer went back; redoing backfills",
      );
    this.setAcked(peerCurrent);
    // An answer asked before the new instance spoke may be its predecessor's (found by review).
    if (this.restartsHeard === restartsBefore) this.ackInDoubt = false;
    const c: BackfillContext = {
      ...this.o,
      view,
      send: (chunk, flags) => this.sendOnce(chunk, flags),
      aborted: () => this.abort.signal.aborted,
      skipThrough: this.skipThrough,
      reportLost: this.o.reportLost ?? (async () => undefined),
    };
    await shipOlderStreams(c);
    await this.backfillWidened(c, wentBack);
    await this.shipCurrent();
  }

  /** Refuse a peer that merges by another rule or reads another format, and a peer ahead of our WAL. */
  private checkPeer(view: WatermarksView): void {
    if (view.rule !== this.o.rule || view.formatVersion !== this.o.formatVersion) {
      throw new LinkError(
        "rule_mismatch",
        `peer ${this.peer} merges by '${view.rule}' (format ${view.formatVersion}), this region by '${this.o.rule}' (format ${this.o.formatVersion}): regions with different rules never converge; not replicating`,
      );
    }
    const lsn = streamLsn(view, this.o.region, this.o.wal.incarnation);
    if (lsn > this.o.wal.durableLsn) {
      this.emit("peerAhead", lsn, this.o.wal.durableLsn);
      throw new LinkError(
        "peer_ahead",
        `peer ${this.peer} has applied LSN ${lsn} of incarnation ${this.o.wal.incarnation}, but this WAL ends at ${this.o.wal.durableLsn}: was the data directory restored from an old copy? Appends are refused until recovery restores them`,
      );
    }
  }

  /**
   * Tenants the peer receives now but did not before: their records below its watermark were
   * filtered out when shipped. Unknown before (no state, or the peer went back): all of them.
   */
  private async backfillWidened(c: BackfillContext, forget: boolean): Promise<void> {
    const now: string[] | "*" = this.o.tenants ? [...this.o.tenants].sort() : "*";
    if (c.view.bootstrapping === true) return this.peerBootstrapping();
    const before = forget ? undefined : this.persisted?.tenants;
    const sends = this.o.sendsTenant ?? (() => true);
    const keep =
      before === "*"
        ? undefined
        : before === undefined
          ? sends
          : (t: string) => sends(t) && !before.includes(t);
    const anything = c.view.streams.some((s) => s.origin === this.o.region && s.lsn > 0);
    if (keep && anything && (before === undefined || now === "*" || now.some((t) => !before.includes(t)))) {
      this.o.log.warn(
        { peer: this.peer, before: before ?? "unknown", now },
        "the peer receives tenants it did not before: backfilling",
      );
      await backfillTenants(c, keep);
    }
    if (!this.abort.signal.aborted) await this.persistAck({ tenants: now });
  }

  /**
   * A bootstrapping peer fills its store from the other regions, by its own policy, which may
   * be older than ours (found by the simulator, seed 5: a region bootstrapping under the old
   * policy copied our stream without a tenant the new one sends it, and this shipper, having
   * seen it empty, had recorded the new policy as delivered). What it will hold of ours is
   * unknown until it is done: the delivered tenants are forgotten, and a new session looks
   * again a moment later; the first one after the bootstrap backfills every tenant it sends.
   */
  private async peerBootstrapping(): Promise<void> {
    if (!this.abort.signal.aborted) await this.persistAck({ tenants: undefined });
    if (this.lookAgain) return;
    this.lookAgain = true;
    void sleep(this.rt, this.o.retryDelayMsMax, this.abort.signal).then(
      () => {
        this.lookAgain = false;
        this.resync();
      },
      () => undefined,
    );
  }

  // ---- the current incarnation ---------------------------------------------------------

  private async shipCurrent(): Promise<void> {
    const signal = this.abort.signal;
    let next = this.acked + 1;
    // Batches in flight, in LSN order: the peer applies them in the order sent.
    const inflight: Array<Promise<SendOutcome>> = [];
    // The size of each batch in `inflight`: the window is bounded in batches
    // and in bytes (the bandwidth-delay product a link is allowed to hold).
    const sizes = new WeakMap<Promise<SendOutcome>, number>();
    const bytes = () => inflight.reduce((n, p) => n + (sizes.get(p) ?? 0), 0);
    const roomFor = () =>
      inflight.length === 0 ||
      (inflight.length < this.o.inflightBatchesMax && bytes() < this.o.inflightBytesMax);
    // Ends the batches still in flight once the session fails: undici times out pipelined
    // requests one after the other (each from when it reaches the head of the connection), so
    // waiting for them made a black-holed link take the whole window times the request
    // timeout to be noticed (64 s with 64 batches and 1 s).
    const ending = new AbortController();
    const window = anySignal([signal, ending.signal]);
    setMaxListeners(this.o.inflightBatchesMax + 16, window.signal);
    try {
      while (!signal.aborted) {
        // With nothing in flight the peer is exactly at `acked` (a skip may have moved it).
        if (inflight.length === 0) next = this.acked + 1;
        if (inflight.length === 0 && this.resyncWanted) {
          this.resyncWanted = false;
          return; // supervise() starts the next session
        }
        // A resync sends nothing new: the window drains, then the session ends.
        if (roomFor() && !this.resyncWanted) {
          const chunk = await this.nextChunk(next, inflight);
          if (chunk) {
            this.state = "shipping";
            const sent = this.send(chunk, 0, window.signal);
            sizes.set(sent, chunk.frames.length);
            inflight.push(sent);
            next = chunk.lastLsn + 1;
            continue;
          }
          if (inflight.length === 0) {
            this.noteRecovered();
            this.state = "caught-up";
            await this.waitIdle(next - 1);
            if (this.o.lingerMs > 0) await sleep(this.rt, this.o.lingerMs, signal);
            continue;
          }
          // Room in the window but nothing new yet: send new records as soon as they are
          // durable, without waiting for the oldest answer first.
          if ((await this.answerOrMore(inflight[0]!, next)) === "more") continue;
          if (signal.aborted) break;
        }
        this.took(await inflight.shift()!);
      }
    } finally {
      // Whatever was sent after a failure is ended, then settled (some may have landed, and
      // their answers count; the next session asks the peer where it is anyway).
      ending.abort(new Error("the shipping session ended"));
      for (const later of await Promise.all(inflight))
        if (later.kind === "ok") this.advance(later.watermark, later.sent);
      window.release();
    }
  }

  /** Wait for LSN `after` + 1 to be durable, a resync, or the end. */
  private async waitIdle(after: number): Promise<void> {
    if (this.resyncWanted) return;
    if (this.idleWake.signal.aborted) this.idleWake = new AbortController();
    const wake = anySignal([this.abort.signal, this.idleWake.signal]);
    try {
      // An abort or a resync ends the wait; a closed WAL ends the session (a failure, retried
      // with backoff until the shipper is stopped: never a loop that waits for nothing).
      await this.o.wal.waitForDurable(after, wake.signal).catch((err: unknown) => {
        if (err instanceof WalClosedError) throw err;
      });
    } finally {
      wake.release();
    }
  }

  /**
   * The next chunk from `next`, or undefined when nothing is durable yet. Where nobody holds
   * LSNs and the operator allowed skipping them, the window is settled first, then a skip
   * batch (no records, exactly the skipped range) is sent and waited for: it starts exactly
   * where the peer is, so it can never skip past a batch that did not land.
   */
  private async nextChunk(
    next: number,
    inflight: Array<Promise<SendOutcome>>,
  ): Promise<WalChunk | undefined> {
    const limits = { bytesMax: this.o.batchBytesMax, recordsMax: this.o.batchRecordsMax };
    try {
      return await readOwnStream(this.o.wal, this.o.own, this.o.region, next, limits, (err) =>
        this.emit("fallback", err),
      );
    } catch (err) {
      if (!(err instanceof StreamGapError) || err.toLsn > this.skipThrough) throw err;
      for (const o of await Promise.all(inflight.splice(0))) this.took(o);
      this.o.log.error(
        { peer: this.peer, from: err.fromLsn, to: err.toLsn },
        "skipping LSNs nobody holds, as the operator allowed (audited)",
      );
      await this.sendOnce(
        skipChunk(this.o.region, this.o.wal.incarnation, err.fromLsn, err.toLsn),
        BATCH_FLAG_SKIP_GAP,
      );
      return this.nextChunk(this.acked + 1, inflight);
    }
  }

  private async answerOrMore(oldest: Promise<SendOutcome>, next: number): Promise<"answer" | "more"> {
    const stopWaiting = new AbortController();
    const waiting = anySignal([this.abort.signal, stopWaiting.signal]);
    const more = this.o.wal.waitForDurable(next - 1, waiting.signal).then(
      () => "more" as const,
      () => "stopped" as const,
    );
    try {
      const first = await Promise.race([oldest.then(() => "answer" as const), more]);
      return first === "more" ? "more" : "answer";
    } finally {
      stopWaiting.abort(answeredFirst);
      waiting.release();
    }
  }

  private windowFailure(outcome: Exclude<SendOutcome, { kind: "ok" }>): Error {
    if (outcome.kind === "error") return outcome.error;
    this.o.log.warn(
      { peer: this.peer, sent: outcome.chunk.firstLsn, peerWatermark: outcome.watermark },
      "peer asked to rewind",
    );
    return new LinkError("rewind", `peer ${this.peer} is at LSN ${outcome.watermark}; resuming from there`);
  }

  /** A window batch's answer, in order: a failure ends the session; an acknowledgement advances. */
  private took(outcome: SendOutcome): void {
    if (outcome.kind !== "ok") throw this.windowFailure(outcome);
    this.noteRecovered();
    this.advance(outcome.watermark, outcome.sent);
  }

  private advance(watermark: number, sent: number): void {
    this.lastAckAtMs = this.rt.nowMs();
    if (watermark <= this.acked) return;
    this.setAcked(watermark);
    this.failures = 0;
    if (this.skipThrough > 0 && watermark >= this.skipThrough) this.skipThrough = 0; // the allowance is used up
    this.emit("ack", watermark, sent);
  }

  private setAcked(lsn: number): void {
    if (lsn !== this.acked) this.progressAtMs = this.rt.nowMs();
    this.acked = lsn;
  }

  // ---- sending ---------------------------------------------------------------------------

  /** The batch body: the frames this peer may receive, and how many. */
  private encode(chunk: WalChunk, flags: number): { body: Buffer; sent: number } {
    const mine = this.o.sendsTenant ? filterChunk(chunk, this.o.sendsTenant) : chunk;
    const sent = mine.count ?? mine.lastLsn - mine.firstLsn + 1;
    const header = {
      origin: this.o.region,
      incarnation: chunk.incarnation,
      firstLsn: chunk.firstLsn,
      lastLsn: chunk.lastLsn,
      recordCount: sent,
      flags,
    };
    return { body: encodeBatch(header, mine.frames), sent };
  }

  /** Send one batch; the outcome never rejects (the session settles it). */
  private send(chunk: WalChunk, flags: number, signal = this.abort.signal): Promise<SendOutcome> {
    let encoded: { body: Buffer; sent: number };
    try {
      encoded = this.encode(chunk, flags);
    } catch (err) {
      return Promise.resolve({ kind: "error", error: err as Error, chunk });
    }
    return this.o.link.replicate(encoded.body, signal).then(
      (answer): SendOutcome => {
        // A backfill answer carries the stream's watermark, unrelated to the batch.
        if (answer.kind === "ok" && (flags & BATCH_FLAG_BACKFILL) !== 0)
          return { ...answer, chunk, sent: encoded.sent };
        // An acknowledgement never covers more than was sent, and a rewind never points past it.
        const limit = answer.kind === "ok" ? chunk.lastLsn : chunk.firstLsn - 1;
        if (answer.watermark > limit) {
          const error = new LinkError(
            "ack_beyond_sent",
            `peer ${this.peer} answered watermark ${answer.watermark} for a batch ending at ${chunk.lastLsn}: protocol error, not trusted`,
          );
          return { kind: "error", error, chunk };
        }
        return answer.kind === "ok" ? { ...answer, chunk, sent: encoded.sent } : { ...answer, chunk };
      },
      (error: unknown) => ({ kind: "error", error: error as Error, chunk }),
    );
  }

  /** Send one batch and wait for it (backfill, skips); an ack of the current incarnation advances. */
  private async sendOnce(chunk: WalChunk, flags: number): Promise<void> {
    const outcome = await this.send(chunk, flags);
    if (outcome.kind !== "ok") throw this.windowFailure(outcome);
    // Older incarnations and backfills can take a long session: the peer taking them is
    // shipping that works (status shows no stale error meanwhile).
    this.noteRecovered();
    this.state = "shipping";
    if (chunk.incarnation === this.o.wal.incarnation && (flags & BATCH_FLAG_BACKFILL) === 0)
      this.advance(outcome.watermark, outcome.sent);
  }

  // ---- state -------------------------------------------------------------------------------

  /** Count every failure; log only when the reason changes (not once per retry). */
  private noteFailure(error: Error): void {
    const reason =
      error instanceof LinkError ? error.reason : error instanceof StreamGapError ? "stream_gap" : "internal";
    this.emit("failure", reason, error);
    this.state = "failing";
    this.lastError =
      error instanceof StreamGapError
        ? `${error.message}; to skip them (lost for this peer), run: crr skip-gap --url <this node> --peer ${this.peer} --through ${error.toLsn}`
        : error.message;
    if (this.failingReason !== reason) {
      this.failingReason = reason;
      const level =
        reason === "internal" || reason === "stream_gap" || reason === "rule_mismatch" ? "error" : "warn";
      this.o.log[level](
        { peer: this.peer, reason, err: this.lastError },
        "shipping to peer is failing; retrying with backoff",
      );
    }
  }

  /**
   * Shipping works again: the peer took a batch, or there is nothing left to send. (Not when
   * a session merely starts: most failures come after the peer's watermarks answered, and
   * every retry logged "recovered" then "failing" again; nor for answers settled after a
   * failure, which supervise() reports next.)
   */
  private noteRecovered(): void {
    if (this.failingReason !== undefined) {
      this.o.log.info({ peer: this.peer, after: this.failingReason }, "shipping to peer recovered");
      this.failingReason = undefined;
      this.lastError = undefined;
    }
  }

  /** Write the state file (one write at a time); a failure is counted, not fatal (the peer is asked on start). */
  private persistAck(change: Pick<AckState, "tenants"> = {}): Promise<void> {
    this.persisting = this.persisting.then(async () => {
      const p = this.persisted;
      const state: AckState = {
        peer: this.peer,
        incarnation: this.o.wal.incarnation,
        acked: this.acked,
        tenants: "tenants" in change ? change.tenants : p?.tenants,
      };
      if (p && JSON.stringify(p) === JSON.stringify(state)) return;
      try {
        await writeAckState(this.o.stateFile, state, this.o.fileOps);
        this.persisted = state;
      } catch (err) {
        this.emit("failure", "ack_persist", err as Error);
        this.o.log.warn(
          { peer: this.peer, err: (err as Error).message },
          "could not persist the acknowledged LSN",
        );
      }
    });
    return this.persisting;
  }
}
