/**
 * Ships this region's own streams to one peer through a PeerLink: tails durable records,
 * cuts batches (bounded in bytes and records), sends them, and tracks the LSN the peer has
 * durably applied (`acked`). The loop is supervised: any failure (a refused batch, a lost
 * connection, an unreadable segment, a bug) ends the session, shows as `failing` with the
 * error, and the session restarts with backoff from the peer's own watermark. Nothing is
 * skipped unless an operator said so (`allowSkip`), which the region audits.
 *
 * A session: ask the peer what it holds (and refuse a peer with another conflict rule or
 * format), backfill what it lacks below its watermark (older incarnations of ours; tenants a
 * widened policy now sends it), then ship the current incarnation from the peer's watermark:
 * from the WAL, or from this region's store where the WAL no longer holds the LSNs.
 * Up to `inflightBatchesMax` batches are in flight, in LSN order on one connection.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../log.js";
import { LinkError, type PeerLink, type WatermarksView } from "../link/index.js";
import { BATCH_FLAG_SKIP_GAP, encodeBatch } from "../protocol/index.js";
import { checkFrame, readTenant, type WalChunk } from "../wal/index.js";
import { readAckState, writeAckState, type AckState } from "./ack-state.js";
import { backfillOlderStreams, backfillTenants, type BackfillContext } from "./backfill.js";
import { StreamGapError, readOwnStream, type OwnRecords, type ShipperWal } from "./stream-reader.js";

export interface PeerShipperOptions {
  region: string;
  link: PeerLink;
  wal: ShipperWal;
  own: OwnRecords;
  /** Undefined: every record goes to this peer. */
  sendsTenant?: (tenant: string) => boolean;
  /** The tenants this peer receives under a selective policy (to notice a widened policy). */
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
  stateFile: string;
  ackPersistIntervalMs: number;
  log: Logger;
  nowMs?: () => number;
  random?: () => number;
}

export type ShipperState = "starting" | "shipping" | "caught-up" | "failing" | "stopped";

export interface ShipperEvents {
  /** The peer durably acknowledged everything of the current incarnation up to `lsn`. */
  ack: [lsn: number, records: number];
  /** A send or a session failed; `reason` is a short stable label (metrics), `err` the detail. */
  failure: [reason: string, err: Error];
  /** The peer holds more of our current incarnation than our WAL: LSNs would be reissued. */
  peerAhead: [peerLsn: number, durableLsn: number];
  /** The WAL could not serve a range (retention, a damaged segment): it was read from the store. */
  fallback: [err: Error];
}

/** Exponential backoff with jitter: the capped step times 1..2. */
export function backoffMs(failures: number, minMs: number, maxMs: number, random = Math.random): number {
  const step = Math.min(maxMs, minMs * 2 ** Math.max(0, failures - 1));
  return Math.min(maxMs, step * (1 + random()));
}

/** The peer's watermark for one stream of `origin` (0 when it holds none). */
export function streamLsn(view: WatermarksView, origin: string, incarnation: string): number {
  return view.streams.find((s) => s.origin === origin && s.incarnation === incarnation)?.lsn ?? 0;
}

type SendOutcome =
  | { kind: "ok"; watermark: number; chunk: WalChunk }
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
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private persisted: AckState | undefined;
  private failures = 0;
  private failingReason: string | undefined;
  private readonly nowMs: () => number;
  /** When `acked` last moved (lag's lower bound when the oldest unacknowledged record cannot be read). */
  private progressAtMs: number;
  /** An operator allowed skipping LSNs up to this one (audited by the region). */
  private skipThrough = 0;

  constructor(o: PeerShipperOptions) {
    super();
    this.o = o;
    this.peer = o.link.peer;
    this.nowMs = o.nowMs ?? Date.now;
    this.progressAtMs = this.nowMs();
    const saved = readAckState(o.stateFile, this.peer);
    this.persisted = saved;
    if (saved && saved.incarnation === o.wal.incarnation) this.acked = saved.acked;
  }

  start(): void {
    this.loop = this.supervise();
    this.persistTimer = setInterval(() => void this.persistAck(), this.o.ackPersistIntervalMs);
    this.persistTimer.unref();
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error("shipper stopped"));
    clearInterval(this.persistTimer);
    await this.loop;
    await this.persistAck();
    this.state = "stopped";
    await this.o.link.close();
  }

  /** Let the next session skip LSNs of the current incarnation up to `throughLsn` that nobody holds. */
  allowSkip(throughLsn: number): void {
    this.skipThrough = Math.max(this.skipThrough, throughLsn);
  }

  /** Wall-clock ms of the oldest durable record the peer has not acknowledged; undefined when caught up. */
  async oldestUnackedWallMs(): Promise<number | undefined> {
    const wal = this.o.wal;
    if (this.acked >= wal.durableLsn) return undefined;
    const lsn = this.acked + 1;
    try {
      // (the session reports fallbacks; a lag reading does not repeat them)
      const limits = { bytesMax: 1, recordsMax: 1 };
      const chunk = await readOwnStream(wal, this.o.own, this.o.region, lsn, limits, () => undefined);
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
        await sleep(
          backoffMs(this.failures, this.o.retryDelayMsMin, this.o.retryDelayMsMax, this.o.random),
          signal,
        );
      }
    }
  }

  private async session(): Promise<void> {
    const view = await this.o.link.watermarks(this.abort.signal);
    this.checkPeer(view);
    const incarnation = this.o.wal.incarnation;
    this.setAcked(streamLsn(view, this.o.region, incarnation));
    const backfill: BackfillContext = {
      ...this.o,
      view,
      send: (chunk, flags) => this.sendOnce(chunk, flags),
      aborted: () => this.abort.signal.aborted,
    };
    const older = await backfillOlderStreams(backfill, this.persisted?.older ?? {});
    await this.backfillWidened(backfill);
    await this.persistAck({ older });
    this.noteRecovered();
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
    const peerLsn = streamLsn(view, this.o.region, this.o.wal.incarnation);
    if (peerLsn > this.o.wal.durableLsn) {
      this.emit("peerAhead", peerLsn, this.o.wal.durableLsn);
      throw new LinkError(
        "peer_ahead",
        `peer ${this.peer} has applied LSN ${peerLsn} of incarnation ${this.o.wal.incarnation}, but this WAL ends at ${this.o.wal.durableLsn}: was the data directory restored from an old copy? Appends are refused until recovery restores them`,
      );
    }
  }

  /** A selective policy that now sends this peer more tenants: backfill their records below its watermark. */
  private async backfillWidened(c: BackfillContext): Promise<void> {
    const now = this.o.tenants ? [...this.o.tenants].sort() : undefined;
    const before = this.persisted?.tenants;
    const added = now && before ? now.filter((t) => !before.includes(t)) : [];
    if (added.length > 0) {
      this.o.log.warn(
        { peer: this.peer, tenants: added },
        "policy now sends these tenants to the peer: backfilling",
      );
      await backfillTenants(c, new Set(added));
    }
    if (!this.abort.signal.aborted) await this.persistAck({ tenants: now });
  }

  // ---- the current incarnation ---------------------------------------------------------

  private async shipCurrent(): Promise<void> {
    const signal = this.abort.signal;
    let next = this.acked + 1;
    let skipGap = false;
    // Batches in flight, in LSN order: the peer applies them in the order sent.
    const inflight: Array<Promise<SendOutcome>> = [];
    try {
      while (!signal.aborted) {
        if (inflight.length < this.o.inflightBatchesMax) {
          const chunk = await this.nextChunk(next, skipGap);
          if (chunk && "skipTo" in chunk) {
            skipGap = true;
            next = chunk.skipTo;
            continue;
          }
          if (chunk) {
            this.state = "shipping";
            inflight.push(this.send(chunk, skipGap ? BATCH_FLAG_SKIP_GAP : 0));
            skipGap = false;
            next = chunk.lastLsn + 1;
            continue;
          }
          if (inflight.length === 0) {
            this.state = "caught-up";
            await this.o.wal.waitForDurable(next - 1, signal).catch(() => undefined);
            if (this.o.lingerMs > 0) await sleep(this.o.lingerMs, signal);
            continue;
          }
          // Room in the window but nothing new yet: send new records as soon as they are
          // durable, without waiting for the oldest answer first.
          if ((await this.answerOrMore(inflight[0]!, next)) === "more") continue;
          if (signal.aborted) break;
        }
        const outcome = await inflight.shift()!;
        if (outcome.kind !== "ok") throw this.windowFailure(outcome);
        this.advance(outcome.watermark, outcome.chunk);
      }
    } finally {
      // Whatever was sent after a failure is settled (some may have landed) before the session ends.
      for (const later of await Promise.all(inflight))
        if (later.kind === "ok") this.advance(later.watermark, later.chunk);
    }
  }

  /** The chunk from `next`; where to skip to when the operator allowed a gap; undefined when nothing is durable yet. */
  private async nextChunk(
    next: number,
    skipping: boolean,
  ): Promise<WalChunk | { skipTo: number } | undefined> {
    const limits = { bytesMax: this.o.batchBytesMax, recordsMax: this.o.batchRecordsMax };
    try {
      return await readOwnStream(this.o.wal, this.o.own, this.o.region, next, limits, (err) =>
        this.emit("fallback", err),
      );
    } catch (err) {
      if (err instanceof StreamGapError && !skipping && err.toLsn <= this.skipThrough) {
        this.o.log.error(
          { peer: this.peer, from: err.fromLsn, to: err.toLsn },
          "skipping LSNs nobody holds, as the operator allowed (audited)",
        );
        return { skipTo: err.toLsn + 1 };
      }
      throw err;
    }
  }

  private async answerOrMore(oldest: Promise<SendOutcome>, next: number): Promise<"answer" | "more"> {
    const stopWaiting = new AbortController();
    const more = this.o.wal
      .waitForDurable(next - 1, AbortSignal.any([this.abort.signal, stopWaiting.signal]))
      .then(
        () => "more" as const,
        () => "stopped" as const,
      );
    const first = await Promise.race([oldest.then(() => "answer" as const), more]);
    stopWaiting.abort();
    return first === "more" ? "more" : "answer";
  }

  private windowFailure(outcome: Exclude<SendOutcome, { kind: "ok" }>): Error {
    if (outcome.kind === "error") return outcome.error;
    this.o.log.warn(
      { peer: this.peer, sent: outcome.chunk.firstLsn, peerWatermark: outcome.watermark },
      "peer asked to rewind",
    );
    return new LinkError("rewind", `peer ${this.peer} is at LSN ${outcome.watermark}; resuming from there`);
  }

  private advance(watermark: number, chunk: WalChunk): void {
    if (watermark <= this.acked) return;
    const records = watermark - Math.max(this.acked, chunk.firstLsn - 1);
    this.setAcked(watermark);
    this.failures = 0;
    this.emit("ack", watermark, records);
  }

  private setAcked(lsn: number): void {
    if (lsn !== this.acked) this.progressAtMs = this.nowMs();
    this.acked = lsn;
  }

  // ---- sending ---------------------------------------------------------------------------

  /** Frames of `chunk` this peer may receive (all of them unless the policy filters tenants). */
  private select(chunk: WalChunk): { frames: Buffer[]; count: number } {
    const total = chunk.lastLsn - chunk.firstLsn + 1;
    if (!this.o.sendsTenant) return { frames: [chunk.frames], count: total };
    const frames: Buffer[] = [];
    let p = 0;
    while (p < chunk.frames.length) {
      const f = checkFrame(chunk.frames, p);
      if (f.kind !== "ok")
        throw new Error(`WAL chunk from ${chunk.segment} failed its own check at ${chunk.offset + p}`);
      if (this.o.sendsTenant(readTenant(chunk.frames, p))) frames.push(chunk.frames.subarray(p, f.end));
      p = f.end;
    }
    return { frames, count: frames.length };
  }

  private encode(chunk: WalChunk, flags: number): Buffer {
    const { frames, count } = this.select(chunk);
    return encodeBatch(
      {
        origin: this.o.region,
        incarnation: chunk.incarnation,
        firstLsn: chunk.firstLsn,
        lastLsn: chunk.lastLsn,
        recordCount: count,
        flags,
      },
      frames,
    );
  }

  /** Send one batch of the window; the outcome never rejects (the session settles it). */
  private send(chunk: WalChunk, flags: number): Promise<SendOutcome> {
    let body: Buffer;
    try {
      body = this.encode(chunk, flags);
    } catch (err) {
      return Promise.resolve({ kind: "error", error: err as Error, chunk });
    }
    return this.o.link.replicate(body, this.abort.signal).then(
      (answer): SendOutcome => {
        // An acknowledgement never covers more than was sent, and a rewind never points past it.
        const limit = answer.kind === "ok" ? chunk.lastLsn : chunk.firstLsn - 1;
        if (answer.watermark > limit) {
          const error = new LinkError(
            "ack_beyond_sent",
            `peer ${this.peer} answered watermark ${answer.watermark} for a batch ending at ${chunk.lastLsn}: protocol error, not trusted`,
          );
          return { kind: "error", error, chunk };
        }
        return { ...answer, chunk };
      },
      (error: unknown) => ({ kind: "error", error: error as Error, chunk }),
    );
  }

  /** Send one batch and wait for it (backfill); resolves with the peer's watermark. */
  private async sendOnce(chunk: WalChunk, flags: number): Promise<number> {
    const outcome = await this.send(chunk, flags);
    if (outcome.kind !== "ok") throw this.windowFailure(outcome);
    return outcome.watermark;
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

  private noteRecovered(): void {
    if (this.failingReason !== undefined) {
      this.o.log.info({ peer: this.peer, after: this.failingReason }, "shipping to peer recovered");
      this.failingReason = undefined;
      this.lastError = undefined;
    }
  }

  private async persistAck(change: Pick<AckState, "tenants" | "older"> = {}): Promise<void> {
    const p = this.persisted;
    const state: AckState = {
      peer: this.peer,
      incarnation: this.o.wal.incarnation,
      acked: this.acked,
      tenants: "tenants" in change ? change.tenants : p?.tenants,
      older: change.older ?? p?.older,
    };
    if (p && JSON.stringify(p) === JSON.stringify(state)) return;
    try {
      await writeAckState(this.o.stateFile, state);
      this.persisted = state;
    } catch (err) {
      this.o.log.warn(
        { peer: this.peer, err: (err as Error).message },
        "could not persist the acknowledged LSN",
      );
    }
  }
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
