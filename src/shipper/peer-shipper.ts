/**
 * Ships this region's WAL to one peer: tails durable records, cuts batches (bounded in bytes
 * and records), signs and POSTs them, retries forever with exponential backoff and jitter
 * (at-least-once), and tracks the peer's acknowledged LSN.
 *
 * Up to `inflightBatchesMax` batches are in flight per peer, pipelined on one connection so
 * the peer applies them in LSN order; a long link's round trip is hidden, and while the
 * window is full the WAL keeps growing, so the next batch is bigger (natural batching).
 * On start, and whenever the peer answers 409, it asks the peer for its watermark and
 * resumes at watermark + 1: a peer restored from an old backup is refilled from the WAL.
 */
import { EventEmitter, setMaxListeners } from "node:events";
import fs from "node:fs";
import pRetry from "p-retry";
import { Pool } from "undici";
import type { Logger } from "../log.js";
import { BATCH_FLAG_SKIP_GAP, encodeBatch, signRequest } from "../protocol/index.js";
import { writeFileDurable } from "../util/durable-file.js";
import { WalLsnUnavailableError } from "../errors.js";
import { checkFrame, readTenant, type Wal, type WalChunk } from "../wal/index.js";
import { ShipError, classify } from "./ship-error.js";

export interface PeerShipperOptions {
  region: string;
  peer: string;
  url: string;
  wal: Wal;
  secret: string;
  /** Undefined: every record goes to this peer. */
  sendsTenant?: (tenant: string) => boolean;
  batchBytesMax: number;
  batchRecordsMax: number;
  lingerMs: number;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  retryDelayMsMin: number;
  retryDelayMsMax: number;
  /** Batches sent before the first is acknowledged (one pipelined connection keeps their order). */
  inflightBatchesMax: number;
  /** Where the acknowledged LSN is kept across restarts. */
  stateFile: string;
  ackPersistIntervalMs: number;
  log: Logger;
  nowMs?: () => number;
}

export type ShipperState = "starting" | "shipping" | "caught-up" | "failing" | "stopped";

export interface ShipperEvents {
  /** The peer acknowledged everything up to `lsn`. */
  ack: [lsn: number, records: number];
  /** A send failed; `reason` is a short stable label (metrics), `err` the detail. */
  failure: [reason: string, err: Error];
}

type SendOutcome =
  | { kind: "ok"; watermark: number; chunk: WalChunk }
  | { kind: "gap"; watermark: number; chunk: WalChunk }
  | { kind: "error"; error: Error; chunk: WalChunk };

/** Exponential backoff with jitter: the capped step times 1..2 (p-retry's randomize policy). */
export function backoffMs(failures: number, minMs: number, maxMs: number): number {
  const step = Math.min(maxMs, minMs * 2 ** Math.max(0, failures - 1));
  return Math.min(maxMs, step * (1 + Math.random()));
}

interface AckState {
  peer: string;
  incarnation: string;
  acked: number;
}

export class PeerShipper extends EventEmitter<ShipperEvents> {
  readonly peer: string;
  /** Highest LSN of ours the peer has applied (its watermark for our incarnation). */
  acked = 0;
  state: ShipperState = "starting";
  /** The last failure, while failing (shown by status). */
  lastError: string | undefined;
  private readonly o: PeerShipperOptions;
  private readonly pool: Pool;
  private readonly abort = (() => {
    const ac = new AbortController();
    // Every in-flight request listens on it: a window of them is expected, not a leak.
    setMaxListeners(0, ac.signal);
    return ac;
  })();
  private loop: Promise<void> | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private persisted = -1;
  private failingReason: string | undefined;
  private readonly nowMs: () => number;

  constructor(o: PeerShipperOptions) {
    super();
    this.o = o;
    this.peer = o.peer;
    this.nowMs = o.nowMs ?? Date.now;
    this.pool = new Pool(new URL(o.url).origin, {
      connections: 1,
      pipelining: Math.max(1, o.inflightBatchesMax),
      connectTimeout: o.connectTimeoutMs,
      headersTimeout: o.requestTimeoutMs,
      bodyTimeout: o.requestTimeoutMs,
      keepAliveTimeout: 4000,
    });
    this.acked = this.readAckState();
  }

  start(): void {
    this.loop = this.run().catch((err: unknown) => {
      if (!this.abort.signal.aborted)
        this.o.log.error({ peer: this.peer, err }, "shipper stopped on an unexpected error");
    });
    this.persistTimer = setInterval(() => void this.persistAck(), this.o.ackPersistIntervalMs);
    this.persistTimer.unref();
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error("shipper stopped"));
    clearInterval(this.persistTimer);
    await this.loop;
    await this.persistAck();
    this.state = "stopped";
    await this.pool.close().catch(() => undefined);
  }

  /** Wall-clock ms of the oldest durable record the peer has not acknowledged; undefined when caught up. */
  async oldestUnackedWallMs(): Promise<number | undefined> {
    if (this.acked >= this.o.wal.durableLsn) return undefined;
    const lsn = Math.max(this.acked + 1, this.o.wal.firstLsn);
    const chunk = await this.o.wal.read(lsn, { bytesMax: 1, recordsMax: 1 }).catch(() => undefined);
    return chunk ? chunk.frames.readUIntLE(16, 6) : undefined;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let next = (await this.askPeerWatermark()) + 1;
    let skipGap = false;
    let failures = 0;
    // Batches in flight, in LSN order, on one pipelined connection: the peer applies them in
    // the order sent, so the window hides the round trip on a long link.
    let inflight: Array<Promise<SendOutcome>> = [];
    while (!signal.aborted) {
      if (inflight.length < this.o.inflightBatchesMax) {
        let chunk: WalChunk | undefined;
        try {
          chunk = await this.o.wal.read(next, {
            bytesMax: this.o.batchBytesMax,
            recordsMax: this.o.batchRecordsMax,
          });
        } catch (err) {
          if (!(err instanceof WalLsnUnavailableError)) throw err;
          // Only reachable when the peer lost data it had acknowledged (restored from an old
          // backup) after we dropped those segments: say so loudly, then resend what we have.
          this.o.log.error(
            { peer: this.peer, from: next, to: err.firstAvailableLsn - 1 },
            "peer needs LSNs the WAL no longer holds; they cannot be re-shipped",
          );
          this.emit("failure", "retention_gap", err);
          next = err.firstAvailableLsn;
          skipGap = true;
          continue;
        }
        if (chunk) {
          this.state = "shipping";
          inflight.push(this.send(chunk, skipGap));
          skipGap = false;
          next = chunk.lastLsn + 1;
          continue;
        }
        if (inflight.length === 0) {
          this.state = "caught-up";
          try {
            await this.o.wal.waitForDurable(next - 1, signal);
          } catch {
            return;
          }
          if (this.o.lingerMs > 0) await sleep(this.o.lingerMs, signal);
          continue;
        }
        // Room in the window but nothing new yet: send new records as soon as they are durable,
        // without waiting for the oldest answer first (that would add a round trip of lag).
        const stopWaiting = new AbortController();
        const more = this.o.wal.waitForDurable(next - 1, AbortSignal.any([signal, stopWaiting.signal])).then(
          () => "more" as const,
          () => "stopped" as const,
        );
        const first = await Promise.race([inflight[0]!.then(() => "answer" as const), more]);
        stopWaiting.abort();
        if (first === "more") continue;
        if (signal.aborted) break;
      }
      // The window is full, or nothing new is durable: settle the oldest batch.
      const outcome = await inflight.shift()!;
      if (outcome.kind === "ok") {
        failures = 0;
        this.noteRecovered();
        this.advance(outcome.watermark, outcome.chunk);
        continue;
      }
      // A refusal, a gap or a lost connection: what was sent after it is settled too (some
      // may have landed), then shipping resumes right after what the peer has.
      for (const later of await Promise.all(inflight)) {
        if (later.kind === "ok") this.advance(later.watermark, later.chunk);
      }
      inflight = [];
      if (signal.aborted) return;
      if (outcome.kind === "gap") {
        this.o.log.warn(
          { peer: this.peer, sent: outcome.chunk.firstLsn, peerWatermark: outcome.watermark },
          "peer asked to rewind",
        );
        this.acked = outcome.watermark;
      } else {
        this.noteFailure(outcome.error);
        failures++;
        await sleep(backoffMs(failures, this.o.retryDelayMsMin, this.o.retryDelayMsMax), signal);
      }
      next = this.acked + 1;
    }
    await Promise.all(inflight);
  }

  private advance(watermark: number, chunk: WalChunk): void {
    if (watermark > this.acked) {
      const records = watermark - Math.max(this.acked, chunk.firstLsn - 1);
      this.acked = watermark;
      this.emit("ack", watermark, records);
    }
  }

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

  /** Send one batch once; the outcome never rejects (retries are the run loop's). */
  private send(chunk: WalChunk, skipGap: boolean): Promise<SendOutcome> {
    const { frames, count } = this.select(chunk);
    const header = {
      origin: this.o.region,
      incarnation: chunk.incarnation,
      firstLsn: chunk.firstLsn,
      lastLsn: chunk.lastLsn,
      recordCount: count,
      flags: skipGap ? BATCH_FLAG_SKIP_GAP : 0,
    };
    return this.post(encodeBatch(header, frames)).then(
      (r) => ({ ...r, chunk }),
      (error: unknown) => ({
        kind: "error" as const,
        error: error instanceof Error ? error : new Error(String(error)),
        chunk,
      }),
    );
  }

  private async post(
    body: Buffer,
  ): Promise<{ kind: "ok"; watermark: number } | { kind: "gap"; watermark: number }> {
    const path = "/v1/replicate";
    const headers = {
      "content-type": "application/octet-stream",
      ...signRequest({
        secret: this.o.secret,
        method: "POST",
        path,
        body,
        region: this.o.region,
        nowMs: this.nowMs(),
      }),
    };
    let res;
    try {
      // idempotent: replaying a batch is harmless (the peer's watermark makes it a no-op), and
      // undici only pipelines requests marked so.
      res = await this.pool.request({
        method: "POST",
        path,
        headers,
        body,
        signal: this.abort.signal,
        idempotent: true,
      });
    } catch (err) {
      throw new ShipError(classify(err), `POST ${this.o.url}${path}: ${(err as Error).message}`, err);
    }
    const text = await res.body.text().catch((err: unknown) => {
      throw new ShipError(
        classify(err),
        `reading the answer of ${this.o.url}${path}: ${(err as Error).message}`,
        err,
      );
    });
    const answer = parseJson(text);
    if (res.statusCode === 200 && typeof answer?.watermark === "number")
      return { kind: "ok", watermark: answer.watermark };
    if (res.statusCode === 409 && typeof answer?.watermark === "number")
      return { kind: "gap", watermark: answer.watermark };
    const code = typeof answer?.code === "string" ? answer.code : `http_${res.statusCode}`;
    throw new ShipError(
      code,
      `peer ${this.peer} refused a batch (${res.statusCode} ${code}): ${String(answer?.message ?? text).slice(0, 300)}`,
    );
  }

  /** The peer's watermark for our stream (0 when it holds another incarnation of us, or nothing). */
  private async askPeerWatermark(): Promise<number> {
    const path = "/v1/watermarks";
    const incarnation = this.o.wal.incarnation;
    const ask = async () => {
      let res;
      try {
        const headers = signRequest({
          secret: this.o.secret,
          method: "GET",
          path,
          body: "",
          region: this.o.region,
          nowMs: this.nowMs(),
        });
        res = await this.pool.request({ method: "GET", path, headers, signal: this.abort.signal });
      } catch (err) {
        throw new ShipError(classify(err), `GET ${this.o.url}${path}: ${(err as Error).message}`, err);
      }
      const answer = parseJson(await res.body.text());
      if (res.statusCode !== 200 || !answer)
        throw new ShipError(`http_${res.statusCode}`, `GET ${this.o.url}${path} answered ${res.statusCode}`);
      const streams = (answer.streams ?? []) as Array<{ origin: string; incarnation: string; lsn: number }>;
      return streams.find((s) => s.origin === this.o.region && s.incarnation === incarnation)?.lsn ?? 0;
    };
    const lsn = await pRetry(ask, {
      retries: Infinity,
      factor: 2,
      minTimeout: this.o.retryDelayMsMin,
      maxTimeout: this.o.retryDelayMsMax,
      randomize: true,
      signal: this.abort.signal,
      onFailedAttempt: ({ error }) => this.noteFailure(error),
    }).catch((err: unknown) => {
      if (this.abort.signal.aborted) return this.acked;
      throw err;
    });
    this.noteRecovered();
    if (lsn > this.o.wal.durableLsn) {
      this.o.log.error(
        { peer: this.peer, peerWatermark: lsn, durableLsn: this.o.wal.durableLsn },
        "peer has applied more of this incarnation than the WAL holds: was this data directory restored from an old copy?",
      );
    }
    this.acked = lsn;
    return lsn;
  }

  /** Count every failure; log only when the reason changes (not once per retry). */
  private noteFailure(error: Error): void {
    const reason = error instanceof ShipError ? error.reason : "unknown";
    this.emit("failure", reason, error);
    this.state = "failing";
    this.lastError = error.message;
    if (this.failingReason !== reason) {
      this.failingReason = reason;
      this.o.log.warn(
        { peer: this.peer, reason, err: error.message },
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

  private readAckState(): number {
    try {
      const s = JSON.parse(fs.readFileSync(this.o.stateFile, "utf8")) as AckState;
      return s.peer === this.peer && s.incarnation === this.o.wal.incarnation ? s.acked : 0;
    } catch {
      return 0;
    }
  }

  private async persistAck(): Promise<void> {
    if (this.acked === this.persisted) return;
    const acked = this.acked;
    const state: AckState = { peer: this.peer, incarnation: this.o.wal.incarnation, acked };
    try {
      await writeFileDurable(this.o.stateFile, `${JSON.stringify(state)}\n`);
      this.persisted = acked;
    } catch (err) {
      this.o.log.warn(
        { peer: this.peer, err: (err as Error).message },
        "could not persist the acknowledged LSN",
      );
    }
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
