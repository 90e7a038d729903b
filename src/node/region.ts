/**
 * One region's engine: the inbox WAL, the dedup store, a shipper per peer and the reader,
 * wired together. The sidecar (`crr serve`) and the embedded library both run this class.
 *
 * Local append: dedup check -> WAL (fdatasync) -> store (batched per turn, with this region's
 * watermark) -> answer. A crash between the WAL and the store is repaired on open by
 * replaying the WAL past the store's watermark for this region.
 */
import fs from "node:fs";
import path from "node:path";
import { HybridClock, formatHlc } from "../clock/index.js";
import { replicationPolicy, type NodeConfig, type ReplicationPolicy } from "../config/index.js";
import { CrrError, RecordInvalidError } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import { RequestVerifier } from "../protocol/index.js";
import { Reader } from "../reader/index.js";
import { PeerShipper } from "../shipper/index.js";
import { SqliteStore, type MergeRule, type StoredRecord } from "../store/index.js";
import { Wal, decodeFrames, prepareRecord, type RecordInput, type WalRecord } from "../wal/index.js";
import { LocalApplier } from "./local-applier.js";

export interface AppendOptions {
  /** Resolve only once this many peers (that the record's tenant targets) applied it. */
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

export interface RegionStatus {
  region: string;
  incarnation: string;
  draining: boolean;
  ready: boolean;
  wal: ReturnType<Wal["stats"]>;
  store: { records: number; conflicts: number; digest: string };
  peers: Array<{
    peer: string;
    url: string;
    state: string;
    ackedLsn: number;
    behindRecords: number;
    lagSeconds: number;
    lastError: string | undefined;
  }>;
  watermarks: Record<string, number>;
}

export interface RegionOptions {
  log?: Logger;
  nowMs?: () => number;
}

export function mergeRuleOf(config: NodeConfig): MergeRule {
  const rule = config.crr.conflictRule;
  return rule === "primary-wins" ? { kind: rule, priority: config.crr.regionPriority } : { kind: rule };
}

export class Region {
  readonly name: string;
  readonly config: NodeConfig;
  readonly clock: HybridClock;
  readonly wal: Wal;
  readonly store: SqliteStore;
  readonly policy: ReplicationPolicy;
  readonly reader: Reader;
  readonly shippers: ReadonlyMap<string, PeerShipper>;
  readonly log: Logger;
  draining = false;
  private readonly applier: LocalApplier;
  private readonly pendingKeys = new Map<string, Promise<AppendResult>>();
  private retentionTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    config: NodeConfig,
    wal: Wal,
    store: SqliteStore,
    clock: HybridClock,
    log: Logger,
    nowMs: () => number,
  ) {
    this.name = config.region;
    this.config = config;
    this.clock = clock;
    this.wal = wal;
    this.store = store;
    this.log = log;
    this.policy = replicationPolicy(config);
    this.applier = new LocalApplier(store, wal, config.region);
    this.reader = new Reader({
      self: config.region,
      regions: Object.keys(config.regions),
      store,
      clock,
      policy: this.policy,
      verifier: new RequestVerifier({
        secret: config.auth.peerSecret,
        windowMs: config.auth.windowMs,
        nowMs,
      }),
      log,
    });
    const shippers = new Map<string, PeerShipper>();
    for (const peer of this.policy.peers) {
      shippers.set(
        peer,
        new PeerShipper({
          region: config.region,
          peer,
          url: config.regions[peer]!.url,
          wal,
          secret: config.auth.peerSecret,
          sendsTenant: this.policy.filtersTenants ? (tenant) => this.policy.sendsTo(peer, tenant) : undefined,
          ...config.shipper,
          stateFile: path.join(config.dataDir, "shipper", `${peer}.json`),
          log,
          nowMs,
        }),
      );
    }
    this.shippers = shippers;
  }

  static async open(config: NodeConfig, options: RegionOptions = {}): Promise<Region> {
    const log = options.log ?? silentLogger();
    const nowMs = options.nowMs ?? Date.now;
    fs.mkdirSync(path.join(config.dataDir, "shipper"), { recursive: true });
    const clock = new HybridClock({ wallClock: nowMs, maxSkewMs: config.hlc.maxSkewMs });
    const wal = await Wal.open({
      dir: path.join(config.dataDir, "wal"),
      region: config.region,
      clock,
      nowMs,
      segmentBytesMax: config.wal.segmentBytesMax,
      segmentAgeMsMax: config.wal.segmentAgeMsMax,
      queueBytesMax: config.wal.queueBytesMax,
    });
    if (wal.recovery.truncatedBytes > 0) {
      log.warn(
        { bytes: wal.recovery.truncatedBytes, reason: wal.recovery.tornReason },
        "WAL recovery cut a torn tail",
      );
    }
    let store: SqliteStore;
    try {
      store = new SqliteStore({
        path: path.join(config.dataDir, "store.sqlite"),
        rule: mergeRuleOf(config),
        nowMs,
      });
    } catch (err) {
      await wal.close();
      throw err;
    }
    const region = new Region(config, wal, store, clock, log, nowMs);
    await region.replayLocal();
    return region;
  }

  /** Start shipping and background upkeep (the store and WAL are ready before this). */
  start(): void {
    for (const s of this.shippers.values()) s.start();
    this.retentionTimer = setInterval(() => void this.retain(), this.config.wal.retentionIntervalMs);
    this.retentionTimer.unref();
  }

  /** Apply to the store what the WAL holds beyond the store's watermark for this region. */
  private async replayLocal(): Promise<void> {
    let next = (await this.store.watermark(this.name, this.wal.incarnation)) + 1;
    const from = next;
    while (next <= this.wal.durableLsn) {
      const chunk = await this.wal.read(next, { bytesMax: 4 * 1024 * 1024, recordsMax: 10_000 });
      if (!chunk) break;
      const records = decodeFrames(chunk.frames, {
        source: chunk.segment,
        baseOffset: chunk.offset,
        firstLsn: next,
      });
      this.store.applySync({
        origin: this.name,
        incarnation: this.wal.incarnation,
        firstLsn: next,
        lastLsn: chunk.lastLsn,
        records,
      });
      next = chunk.lastLsn + 1;
    }
    if (next > from) this.log.info({ from, to: next - 1 }, "replayed local WAL records into the store");
  }

  async append(input: RecordInput, options: AppendOptions = {}): Promise<AppendResult> {
    if (this.draining || this.closed) throw new DrainingError(this.name);
    const rec = prepareRecord(input);
    const wait = options.waitPeers ?? 0;
    if (wait > 0) {
      const targeted = this.policy.peersFor(rec.tenant).length;
      if (!Number.isInteger(wait) || wait > targeted) {
        throw new RecordInvalidError(
          "wait",
          `cannot wait for ${wait} peers: tenant '${rec.tenant}' is replicated to ${targeted}`,
        );
      }
    }
    const existing = this.store.getSync(rec.key);
    if (existing) return this.answer(existing, true);
    const inflight = this.pendingKeys.get(rec.key);
    if (inflight) return { ...(await inflight), duplicate: true };
    const p = this.appendNew(rec);
    this.pendingKeys.set(rec.key, p);
    let result: AppendResult;
    try {
      result = await p;
    } finally {
      this.pendingKeys.delete(rec.key);
    }
    if (wait > 0 && !result.duplicate)
      await this.waitForPeers(
        result,
        rec.tenant,
        wait,
        options.waitTimeoutMs ?? this.config.append.waitTimeoutMs,
      );
    return result;
  }

  private async appendNew(rec: ReturnType<typeof prepareRecord>): Promise<AppendResult> {
    const ack = await this.wal.appendPrepared(rec);
    const walRecord: WalRecord = { ...rec, lsn: ack.lsn, hlc: ack.hlc, flags: 0 };
    await this.applier.apply(walRecord);
    const winner = this.store.getSync(rec.key);
    // A remote record for the same key may have been applied meanwhile and won (a conflict).
    if (
      winner &&
      !(winner.origin === this.name && winner.lsn === ack.lsn && winner.incarnation === this.wal.incarnation)
    ) {
      return this.answer(winner, true);
    }
    return {
      key: rec.key,
      outcome: rec.outcome,
      duplicate: false,
      origin: this.name,
      lsn: ack.lsn,
      hlc: formatHlc(ack.hlc),
    };
  }

  private answer(r: StoredRecord, duplicate: boolean): AppendResult {
    return { key: r.key, outcome: r.outcome, duplicate, origin: r.origin, lsn: r.lsn, hlc: formatHlc(r.hlc) };
  }

  private waitForPeers(
    result: AppendResult,
    tenant: string,
    wanted: number,
    timeoutMs: number,
  ): Promise<void> {
    const peers = this.policy.peersFor(tenant).map((p) => this.shippers.get(p)!);
    const count = () => peers.filter((s) => s.acked >= result.lsn).length;
    if (count() >= wanted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAck = () => {
        if (count() < wanted) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new WaitTimeoutError(result, count(), wanted, timeoutMs));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        for (const s of peers) s.off("ack", onAck);
      };
      for (const s of peers) s.on("ack", onAck);
    });
  }

  /** GET /v1/watermarks: the applied LSN per origin (its newest incarnation), and every stream in detail. */
  async watermarksView(): Promise<{
    region: string;
    incarnation: string;
    watermarks: Record<string, number>;
    streams: Array<{ origin: string; incarnation: string; lsn: number; updatedAtMs: number }>;
  }> {
    const streams = await this.store.watermarks();
    const newest = new Map<string, (typeof streams)[number]>();
    for (const w of streams) {
      const seen = newest.get(w.origin);
      if (!seen || w.updatedAtMs >= seen.updatedAtMs) newest.set(w.origin, w);
    }
    return {
      region: this.name,
      incarnation: this.wal.incarnation,
      watermarks: Object.fromEntries([...newest].map(([o, w]) => [o, w.lsn])),
      streams,
    };
  }

  /** Everything `crr status` shows: WAL, store, peers with their acknowledged LSN and lag. */
  async status(): Promise<RegionStatus> {
    const now = Date.now();
    const peers = await Promise.all(
      [...this.shippers.values()].map(async (s) => {
        const oldest = await s.oldestUnackedWallMs();
        return {
          peer: s.peer,
          url: this.config.regions[s.peer]!.url,
          state: s.state,
          ackedLsn: s.acked,
          behindRecords: Math.max(0, this.wal.durableLsn - s.acked),
          lagSeconds: oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000),
          lastError: s.lastError,
        };
      }),
    );
    return {
      region: this.name,
      incarnation: this.wal.incarnation,
      draining: this.draining,
      ready: this.readiness().ready,
      wal: this.wal.stats(),
      store: { ...(await this.store.stats()), digest: await this.store.rootDigest() },
      peers,
      watermarks: (await this.watermarksView()).watermarks,
    };
  }

  /** Readiness never depends on peers: a region serves its own appends while every peer is down. */
  readiness(): {
    ready: boolean;
    region: string;
    draining: boolean;
    walWritable: boolean;
    storeOpen: boolean;
  } {
    const walWritable = !this.closed && this.wal.writable;
    const storeOpen = !this.closed && this.store.isOpen;
    return {
      ready: walWritable && storeOpen && !this.draining,
      region: this.name,
      draining: this.draining,
      walWritable,
      storeOpen,
    };
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    return this.store.get(key);
  }

  /** Remove WAL segments every peer (and the local store) has applied. */
  async retain(): Promise<number> {
    let needed = (await this.store.watermark(this.name, this.wal.incarnation)) + 1;
    for (const s of this.shippers.values()) needed = Math.min(needed, s.acked + 1);
    const removed = await this.wal.removeBelow(needed).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message }, "WAL retention failed");
      return 0;
    });
    const bytes = this.wal.stats().bytes;
    if (bytes > this.config.wal.bytesMax) {
      this.log.error(
        { walBytes: bytes, walBytesMax: this.config.wal.bytesMax, lowestNeededLsn: needed },
        "WAL is over its size limit because a peer has not acknowledged; nothing is deleted",
      );
    }
    return removed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.retentionTimer);
    await Promise.allSettled([...this.pendingKeys.values()]);
    await Promise.all([...this.shippers.values()].map((s) => s.stop()));
    await this.wal.close();
    await this.applier.idle();
    await this.store.close();
  }
}
