/**
 * The append path of a region: admission (draining, starting, a full disk, a region stopped
 * for its own safety all refuse at once with 503; more records pending than
 * `append.pendingMax` with 429), the dedup check, the WAL (fdatasync), the local apply, and
 * the semi-synchronous wait for peers. A batch is its records appended side by side: they
 * share the WAL's group commit, and each gets its own answer (one refused record refuses
 * nothing else).
 */
import { formatHlc } from "../clock/index.js";
import type { ReplicationPolicy } from "../config/index.js";
import { CrrError, RecordInvalidError, WalBusyError, WalClosedError } from "../errors.js";
import { sleep, type Runtime } from "../runtime/index.js";
import type { PeerShipper } from "../shipper/index.js";
import type { StoredRecord } from "../store/index.js";
import {
  prepareRecord,
  type AppendAck,
  type PreparedRecord,
  type RecordInput,
  type WalRecord,
} from "../wal/index.js";

export interface AppendOptions {
  /** Resolve only once this many peers (that the record's tenant targets) durably applied it. */
  waitPeers?: number;
  waitTimeoutMs?: number;
}

export interface AppendResult {
  key: string;
  outcome: string;
  /** True when the key was already decided (by this region or another): the stored outcome is answered. */
  duplicate: boolean;
  origin: string;
  lsn: number;
  hlc: string;
}

export class DrainingError extends CrrError {
  constructor(region: string) {
    super("draining", `region ${region} is draining and does not accept appends`);
  }
}

/** The region cannot take appends now (starting, disk full, stopped for safety): 503 with Retry-After. */
export class UnavailableError extends CrrError {
  constructor(
    code: string,
    message: string,
    readonly retryAfterS: number,
  ) {
    super(code, message);
  }
}

/** Why an append was shed: too many records pending, or the oldest waited too long for the WAL. */
export type ShedReason = "pending" | "queue_delay" | "event_loop";

/** More load than the node admits: refused at once (429 with Retry-After), nothing written. */
export class OverloadedError extends CrrError {
  readonly retryAfterS = 1;
  constructor(
    readonly reason: ShedReason,
    message: string,
  ) {
    super("overloaded", `${message}: retry later`);
  }
}

export class WaitTimeoutError extends CrrError {
  constructor(
    readonly result: AppendResult,
    readonly acked: number,
    readonly wanted: number,
    timeoutMs: number,
  ) {
    super(
      "wait_timeout",
      `record LSN ${result.lsn} is durable in ${result.origin} but only ${acked} of ${wanted} peers acknowledged it within ${timeoutMs} ms`,
    );
  }
}

export interface AppendPathDeps {
  region: string;
  policy: ReplicationPolicy;
  /** Throws DrainingError or UnavailableError when appends are not admitted now. */
  admit: () => void;
  /** The stored winner of `key` (the dedup check). */
  lookup: (key: string) => Promise<StoredRecord | undefined>;
  /**
   * With a store the region's nodes share: take `key` before appending it (only one node
   * appends a key), give back one found decided after taking it, and how long to wait for
   * a key another node holds (its record, or its claim released).
   */
  claims?: {
    /** `attempt` names this append attempt (kept with a claim it creates). */
    claim(
      key: string,
      attempt: string,
    ): Promise<{ taken: true; fresh: boolean } | { taken: false; holder: string }>;
    release(key: string): Promise<void>;
    /** End the claim `attempt` created, if it did (its claim failed without an answer); whether it did. */
    releaseLost(key: string, attempt: string): Promise<boolean>;
    waitMs: number;
  };
  /**
   * A claim whose answer was lost could not be ended either: the key stays claimed by this
   * node (other nodes answer key_claimed) until `end` passes (tried again once the store
   * answers), the node appends the key again, or it restarts.
   */
  onClaimStuck?: (key: string, err: unknown, end: () => Promise<boolean>) => void;
  walAppend: (rec: PreparedRecord) => Promise<AppendAck>;
  /** Resolves with the version that beat `rec` when it was applied, undefined when `rec` won. */
  localApply: (rec: WalRecord) => Promise<StoredRecord | undefined>;
  shippers: ReadonlyMap<string, PeerShipper>;
  waitTimeoutMsDefault: number;
  /** Records admitted and not yet answered, at most (append.pendingMax). */
  pendingMax: number;
  /**
   * New appends are refused while the oldest one waiting for the WAL and the local apply has
   * waited longer than this (append.queueDelayMaxMs; 0: no bound): accepted appends keep a
   * bounded latency whatever the disk and CPU can do, without a count tuned to the machine.
   */
  queueDelayMaxMs: number;
  /** Records in one appendMany (append.batchRecordsMax). */
  batchRecordsMax: number;
  /** An append refused for load (counted). */
  onShed: (records: number, reason: ShedReason) => void;
  runtime: Runtime;
  onDuplicate: (origin: string) => void;
  /** Every failed append (a full disk is noticed here). */
  onError: (err: unknown) => void;
}

export class AppendPath {
  private readonly pendingKeys = new Map<string, Promise<AppendResult>>();
  /** Records admitted and not yet answered. */
  private pendingRecords = 0;
  /** Appends waiting for the WAL and the local apply, oldest first; answered ones leave from the head lazily. */
  private readonly durableQueue: Array<{ sinceMs: number; done: boolean }> = [];
  private durableHead = 0;

  constructor(private readonly d: AppendPathDeps) {}

  get pending(): number {
    return this.pendingRecords;
  }

  async append(input: RecordInput, options: AppendOptions = {}): Promise<AppendResult> {
    this.admit(1);
    try {
      return await this.appendAdmitted(input, options);
    } finally {
      this.pendingRecords -= 1;
    }
  }

  /**
   * Append `inputs` side by side (one group commit when the WAL is idle), each answered on
   * its own, in order: a record refused (invalid, a wait that timed out) refuses nothing else.
   * Admission (draining, overload, too many records) is for the whole batch and throws.
   */
  async appendMany(
    inputs: readonly RecordInput[],
    options: AppendOptions = {},
  ): Promise<Array<PromiseSettledResult<AppendResult>>> {
    if (inputs.length > this.d.batchRecordsMax)
      throw new RecordInvalidError(
        "records",
        `${inputs.length} records exceed append.batchRecordsMax (${this.d.batchRecordsMax})`,
      );
    this.admit(inputs.length);
    try {
      return await Promise.allSettled(inputs.map((input) => this.appendAdmitted(input, options)));
    } finally {
      this.pendingRecords -= inputs.length;
    }
  }

  /**
   * Refuse at once when not admitting, when `n` more records would exceed the bound (a lone
   * batch always fits), or when the oldest append waiting for the WAL waited too long.
   */
  private admit(n: number): void {
    this.refuseIfFull(n);
    this.pendingRecords += n;
  }

  /**
   * Refuse now what admission would refuse for one more record: the HTTP append routes call it
   * before reading a request's body, so a shed request costs no parsing (a batch's size is not
   * known yet: it counts as one record shed; once parsed, admission counts all of it).
   */
  refuseEarly(): void {
    this.refuseIfFull(1);
  }

  /**
   * Refuse one HTTP append because the event loop lags `delayMs` (append.eventLoopDelayMaxMs):
   * counted and answered like every shed append.
   */
  refuseUnderPressure(delayMs: number, maxMs: number): never {
    // A node that takes no appends at all (draining, stopped, starting) says so, with its own
    // Retry-After, rather than "overloaded, retry in a second" (found by review).
    this.d.admit();
    const lag = Number.isFinite(delayMs) ? `${Math.round(delayMs)} ms` : "for the whole last sample";
    this.shed(1, "event_loop", `the event loop lags ${lag}, beyond append.eventLoopDelayMaxMs (${maxMs})`);
  }

  private refuseIfFull(n: number): void {
    this.d.admit();
    if (this.pendingRecords > 0 && this.pendingRecords + n > this.d.pendingMax)
      this.shed(
        n,
        "pending",
        `${this.pendingRecords} records are pending and ${n} more would exceed append.pendingMax (${this.d.pendingMax})`,
      );
    const waitedMs = this.oldestDurableWaitMs();
    if (this.d.queueDelayMaxMs > 0 && waitedMs > this.d.queueDelayMaxMs)
      this.shed(
        n,
        "queue_delay",
        `the oldest pending append has waited ${Math.round(waitedMs)} ms for the WAL, beyond append.queueDelayMaxMs (${this.d.queueDelayMaxMs})`,
      );
  }

  private shed(n: number, reason: ShedReason, message: string): never {
    this.d.onShed(n, reason);
    throw new OverloadedError(reason, message);
  }

  /** How long the oldest append still waiting for the WAL and the local apply has waited (0: none). */
  private oldestDurableWaitMs(): number {
    const q = this.durableQueue;
    while (this.durableHead < q.length && q[this.durableHead]!.done) this.durableHead++;
    if (this.durableHead === q.length) {
      q.length = 0;
      this.durableHead = 0;
      return 0;
    }
    if (this.durableHead >= 1024) {
      q.splice(0, this.durableHead);
      this.durableHead = 0;
    }
    return this.d.runtime.monoMs() - q[this.durableHead]!.sinceMs;
  }

  private async appendAdmitted(input: RecordInput, options: AppendOptions): Promise<AppendResult> {
    const rec = prepareRecord(input);
    const wait = options.waitPeers ?? 0;
    if (wait > 0) this.checkWait(rec.tenant, wait);
    // The key is registered before the store is asked: an append of the same key arriving
    // while the lookup is under way joins this one instead of appending a second version.
    const inflight = this.pendingKeys.get(rec.key);
    if (inflight) {
      this.d.onDuplicate(this.d.region);
      return { ...(await inflight), duplicate: true };
    }
    // Waiting from admission: the store's lookup counts toward append.queueDelayMaxMs too.
    const waiting = this.queued();
    const p = this.decide(rec, waiting).finally(() => (waiting.entry.done = true));
    this.pendingKeys.set(rec.key, p);
    let result: AppendResult;
    try {
      result = await p;
    } catch (err) {
      this.d.onError(err);
      throw err;
    } finally {
      this.pendingKeys.delete(rec.key);
    }
    if (wait > 0 && !result.duplicate)
      await this.waitForPeers(result, rec.tenant, wait, options.waitTimeoutMs ?? this.d.waitTimeoutMsDefault);
    return result;
  }

  /** The stored winner's answer when the key is decided, else the append of `rec`. */
  /** An entry in the queue append.queueDelayMaxMs measures, from now; `entry` may be replaced (see decide). */
  private queued(): { entry: { sinceMs: number; done: boolean } } {
    const entry = { sinceMs: this.d.runtime.monoMs(), done: false };
    this.durableQueue.push(entry);
    return { entry };
  }

  private async decide(
    rec: PreparedRecord,
    waiting: { entry: { sinceMs: number; done: boolean } },
  ): Promise<AppendResult> {
    const existing = await this.d.lookup(rec.key);
    if (existing) return this.duplicateOf(existing);
    const claims = this.d.claims;
    if (!claims) return this.appendNew(rec);
    const deadline = this.d.runtime.monoMs() + claims.waitMs;
    const attempt = this.d.runtime.randomBytes(8).toString("hex");
    for (;;) {
      const c = await claims.claim(rec.key, attempt).catch(async (err: unknown) => {
        // The claim may have committed and only its answer been lost (the connection cut):
        // nothing was written, so a claim this attempt created ends now, not at this node's
        // restart. Here, not later: a later append of the key by this node re-takes it.
        const end = () => claims.releaseLost(rec.key, attempt);
        await end().catch((e: unknown) => this.d.onClaimStuck?.(rec.key, e, end));
        throw err;
      });
      if (c.taken && waiting.entry.done) waiting.entry = this.queued().entry; // back in the queue, from now
      if (c.taken) {
        // The holder's record and the end of its claim commit together: a claim taken after
        // that finds the record now.
        // Only a claim this append created is given back on a failure: one this node held
        // already belongs to an earlier append whose record may be in the WAL, unapplied.
        const unclaim = c.fresh ? () => claims.release(rec.key) : undefined;
        const decided = await this.d.lookup(rec.key).catch(async (err: unknown) => {
          await unclaim?.().catch(() => undefined); // nothing written: the claim ends
          throw err;
        });
        if (!decided) return this.appendNew(rec, unclaim);
        await claims.release(rec.key);
        return this.duplicateOf(decided);
      }
      if (this.d.runtime.monoMs() >= deadline)
        throw new UnavailableError(
          "key_claimed",
          `key ${rec.key} is being appended by another node of region ${this.d.region} (incarnation ${c.holder}), which has not finished within ${claims.waitMs} ms; nothing was written here`,
          1,
        );
      // Waiting for another node's key is not waiting for this node's disk: out of the queue
      // append.queueDelayMaxMs measures, or one held key would shed every append here.
      waiting.entry.done = true;
      await sleep(this.d.runtime, 5);
      const now = await this.d.lookup(rec.key);
      if (now) return this.duplicateOf(now);
    }
  }

  private duplicateOf(existing: StoredRecord): AppendResult {
    this.d.onDuplicate(existing.origin);
    return answer(existing, true);
  }

  /** Appends in progress (close waits for them). */
  inProgress(): Promise<unknown> {
    return Promise.allSettled([...this.pendingKeys.values()]);
  }

  private checkWait(tenant: string, wait: number): void {
    const targeted = this.d.policy.peersFor(tenant).length;
    if (!Number.isInteger(wait) || wait > targeted) {
      throw new RecordInvalidError(
        "wait",
        `cannot wait for ${wait} peers: tenant '${tenant}' is replicated to ${targeted}`,
      );
    }
  }

  /** Append `rec` to the WAL and apply it; `unclaim` ends its claim when the WAL refused it unwritten. */
  private async appendNew(rec: PreparedRecord, unclaim?: () => Promise<void>): Promise<AppendResult> {
    let ack: AppendAck;
    try {
      ack = await this.d.walAppend(rec);
    } catch (err) {
      // Refused before a byte was written (too large, the WAL closing or full): nothing of the
      // key exists, so its claim ends now rather than at this node's restart. After a failed
      // write the claim stays: the record may be durable, and the restart's replay decides.
      if (unclaim && refusedUnwritten(err)) await unclaim().catch(() => undefined);
      throw err;
    }
    // A remote record for the same key may have been applied since the dedup check and won
    // (a conflict): the answer is what the store decided in the record's own transaction.
    const beatenBy = await this.d.localApply({ ...rec, lsn: ack.lsn, hlc: ack.hlc, flags: 0 });
    if (beatenBy) return answer(beatenBy, true);
    return {
      key: rec.key,
      outcome: rec.outcome,
      duplicate: false,
      origin: this.d.region,
      lsn: ack.lsn,
      hlc: formatHlc(ack.hlc),
    };
  }

  private waitForPeers(
    result: AppendResult,
    tenant: string,
    wanted: number,
    timeoutMs: number,
  ): Promise<void> {
    const peers = this.d.policy.peersFor(tenant).map((p) => this.d.shippers.get(p)!);
    const count = () => peers.filter((s) => s.acked >= result.lsn).length;
    if (count() >= wanted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAck = () => {
        if (count() < wanted) return;
        done();
        resolve();
      };
      const timer = this.d.runtime.after(timeoutMs, () => {
        done();
        reject(new WaitTimeoutError(result, count(), wanted, timeoutMs));
      });
      const done = () => {
        timer.cancel();
        for (const s of peers) s.off("ack", onAck);
      };
      for (const s of peers) s.on("ack", onAck);
    });
  }
}

function answer(r: StoredRecord, duplicate: boolean): AppendResult {
  return { key: r.key, outcome: r.outcome, duplicate, origin: r.origin, lsn: r.lsn, hlc: formatHlc(r.hlc) };
}

/** Errors of a WAL append that wrote nothing (the record was refused before its write). */
function refusedUnwritten(err: unknown): boolean {
  return err instanceof RecordInvalidError || err instanceof WalBusyError || err instanceof WalClosedError;
}
