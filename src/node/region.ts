/**
 * One region's engine: the inbox WAL, the dedup store, a shipper per peer and the reader,
 * wired together with metrics and peer health. The sidecar (`crr serve`) and the embedded
 * library (`openRegion`) both run this class.
 *
 * Local append: dedup check -> WAL (fdatasync) -> store (batched per turn, with this region's
 * watermark) -> answer. A crash between the WAL and the store is repaired on open by
 * replaying the WAL past the store's watermark for this region.
 */
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { HybridClock, formatHlc } from "../clock/index.js";
import { replicationPolicy, type NodeConfig, type ReplicationPolicy } from "../config/index.js";
import { CrrError, RecordInvalidError } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import { RequestVerifier } from "../protocol/index.js";
import { Reader } from "../reader/index.js";
import { PeerShipper } from "../shipper/index.js";
import {
  SqliteStore,
  ruleName,
  type ApplyResult,
  type MergeRule,
  type StoredRecord,
} from "../store/index.js";
import {
  Wal,
  decodeFrames,
  prepareRecord,
  type PreparedRecord,
  type RecordInput,
  type WalRecord,
} from "../wal/index.js";
import { AuditLog } from "../audit/index.js";
import {
  DivergenceDetector,
  DivergenceMonitor,
  PeerClient,
  httpRemote,
  type Finding,
  type ScanReport,
} from "../divergence/index.js";
import { HealthProber, type PeerHealth } from "./health.js";
import { LocalApplier } from "./local-applier.js";
import { lockDataDir, type DataDirLock } from "./lock.js";
import { RegionMetrics } from "./metrics.js";

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

export interface RegionOptions {
  log?: Logger;
  nowMs?: () => number;
}

export interface PeerStatus {
  peer: string;
  url: string;
  state: string;
  healthy: boolean;
  ackedLsn: number;
  behindRecords: number;
  lagSeconds: number;
  lastError: string | undefined;
}

export interface RegionStatus {
  region: string;
  incarnation: string;
  draining: boolean;
  ready: boolean;
  /** Every peer acknowledged everything durable here. */
  caughtUp: boolean;
  wal: ReturnType<Wal["stats"]>;
  store: { records: number; conflicts: number; digest: string };
  peers: PeerStatus[];
  watermarks: Record<string, number>;
  divergence: { findings: number; lastScanAt: string | undefined };
  /** The audit log's head: compare with `crr audit verify --expect-head` to detect removed entries. */
  audit: { file: string; seq: number; hash: string; conflictMark: number };
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
  readonly metrics: RegionMetrics;
  readonly log: Logger;
  readonly audit: AuditLog;
  readonly divergence: DivergenceMonitor;
  /** Verifies every signed peer request (replication, divergence, admin): one replay window. */
  readonly verifier: RequestVerifier;
  readonly peerClient: PeerClient;
  private draining = false;
  /** "applied" (origin, incarnation, lsn): a peer batch was applied here (the benchmark harness listens). */
  readonly events = new EventEmitter<{ applied: [origin: string, incarnation: string, lsn: number] }>();
  private readonly applier: LocalApplier;
  private readonly health: HealthProber;
  private readonly lock: DataDirLock;
  private readonly pendingKeys = new Map<string, Promise<AppendResult>>();
  private retentionTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    config: NodeConfig,
    parts: {
      wal: Wal;
      store: SqliteStore;
      clock: HybridClock;
      metrics: RegionMetrics;
      lock: DataDirLock;
      audit: AuditLog;
    },
    log: Logger,
    nowMs: () => number,
  ) {
    this.name = config.region;
    this.config = config;
    ({
      wal: this.wal,
      store: this.store,
      clock: this.clock,
      metrics: this.metrics,
      lock: this.lock,
      audit: this.audit,
    } = parts);
    this.verifier = new RequestVerifier({
      secret: config.auth.peerSecret,
      windowMs: config.auth.windowMs,
      nowMs,
    });
    this.peerClient = new PeerClient(config.region, config.auth.peerSecret, config.shipper.requestTimeoutMs);
    this.log = log;
    this.policy = replicationPolicy(config);
    this.applier = new LocalApplier(this.store, this.wal, config.region, (r) =>
      this.countApplied(config.region, r),
    );
    this.reader = new Reader({
      self: config.region,
      regions: Object.keys(config.regions),
      store: this.store,
      clock: this.clock,
      policy: this.policy,
      verifier: new RequestVerifier({
        secret: config.auth.peerSecret,
        windowMs: config.auth.windowMs,
        nowMs,
      }),
      log,
      onApplied: (batch, result) => {
        this.countApplied(batch.origin, result);
        this.events.emit("applied", batch.origin, batch.incarnation, result.watermark);
      },
      onRefused: (reason) => this.metrics.refusals.inc({ reason }),
    });
    const shippers = new Map<string, PeerShipper>();
    for (const peer of this.policy.peers) {
      const s = new PeerShipper({
        region: config.region,
        peer,
        url: config.regions[peer]!.url,
        wal: this.wal,
        secret: config.auth.peerSecret,
        sendsTenant: this.policy.filtersTenants ? (tenant) => this.policy.sendsTo(peer, tenant) : undefined,
        ...config.shipper,
        stateFile: path.join(config.dataDir, "shipper", `${peer}.json`),
        log,
        nowMs,
      });
      s.on("ack", (_lsn, records) => this.metrics.shippedRecords.inc({ peer }, records));
      s.on("failure", (reason) => this.metrics.shipErrors.inc({ peer, reason }));
      shippers.set(peer, s);
    }
    this.shippers = shippers;
    const others = Object.fromEntries(
      Object.entries(config.regions)
        .filter(([r]) => r !== config.region)
        .map(([r, v]) => [r, v.url]),
    );
    this.metrics.regionHealth.set({ region: config.region }, 1);
    this.divergence = new DivergenceMonitor({
      detector: new DivergenceDetector({
        region: config.region,
        selectivePolicies: config.crr.replicationMode === "selective" ? config.crr.policies : undefined,
        store: this.store,
        remote: (peer) => httpRemote(this.peerClient, config.regions[peer]!.url),
        log,
      }),
      store: this.store,
      peers: this.policy.peers,
      intervalMs: config.divergence.intervalMs,
      scrubIntervalMs: config.divergence.scrubIntervalMs,
      scrubBucketsPerTick: config.divergence.scrubBucketsPerTick,
      log,
      onScan: (report, seconds) => {
        this.metrics.divergenceScans.inc();
        this.metrics.divergenceScanSeconds.observe(seconds);
        this.metrics.divergenceCount.set(report.findings.length);
      },
      onNewFinding: (f) => this.auditFinding(f),
    });
    this.health = new HealthProber(
      others,
      config.health.probeIntervalMs,
      config.health.probeTimeoutMs,
      (region, healthy) => {
        this.metrics.regionHealth.set({ region }, healthy ? 1 : 0);
        this.log.info({ region, healthy }, "peer region health changed");
      },
    );
  }

  static async open(config: NodeConfig, options: RegionOptions = {}): Promise<Region> {
    const log = options.log ?? silentLogger();
    const nowMs = options.nowMs ?? Date.now;
    const lock = lockDataDir(config.dataDir);
    if (lock.tookOver)
      log.warn({ previous: lock.tookOver }, "took over the lock of a node that is no longer running");
    let region: Region | undefined;
    const metrics = new RegionMetrics({
      lagSeconds: () => region?.lagSeconds() ?? Promise.resolve([]),
      watermarks: async () => (region ? (await region.watermarksView()).watermarks : {}),
      wal: () => region?.wal.stats() ?? { bytes: 0, segments: 0, durableLsn: 0 },
      draining: () => region?.draining ?? false,
      skewRejections: () => region?.clock.skewRejections ?? 0,
    });
    let wal: Wal | undefined;
    try {
      fs.mkdirSync(path.join(config.dataDir, "shipper"), { recursive: true });
      const clock = new HybridClock({ wallClock: nowMs, maxSkewMs: config.hlc.maxSkewMs });
      wal = await Wal.open({
        dir: path.join(config.dataDir, "wal"),
        region: config.region,
        clock,
        nowMs,
        segmentBytesMax: config.wal.segmentBytesMax,
        segmentAgeMsMax: config.wal.segmentAgeMsMax,
        queueBytesMax: config.wal.queueBytesMax,
        onFsync: (seconds) => metrics.walFsyncSeconds.observe(seconds),
      });
      if (wal.recovery.truncatedBytes > 0) {
        log.warn(
          { bytes: wal.recovery.truncatedBytes, reason: wal.recovery.tornReason },
          "WAL recovery cut a torn tail",
        );
      }
      const store = new SqliteStore({
        path: path.join(config.dataDir, "store.sqlite"),
        rule: mergeRuleOf(config),
        nowMs,
        onCheckpointError: (message) => log.error({ message }, "SQLite checkpoint failed"),
      });
      const audit = AuditLog.open({
        dir: path.join(config.dataDir, "audit"),
        region: config.region,
        fileBytesMax: config.audit.fileBytesMax,
        nowMs,
        onTornTail: (file, bytes) =>
          log.warn({ file, bytes }, "audit log: cut an unfinished last line (never acknowledged)"),
      });
      region = new Region(config, { wal, store, clock, metrics, lock, audit }, log, nowMs);
      await region.replayLocal();
      await region.auditConflicts();
      return region;
    } catch (err) {
      await region?.close().catch(() => undefined);
      if (!region) {
        await wal?.close().catch(() => undefined);
        lock.release();
      }
      throw err;
    }
  }

  /** Start shipping, peer health probes and WAL retention (the store and WAL are ready before this). */
  start(): void {
    for (const s of this.shippers.values()) s.start();
    this.health.start();
    this.divergence.start();
    this.retentionTimer = setInterval(() => void this.retain(), this.config.wal.retentionIntervalMs);
    this.retentionTimer.unref();
  }

  /** Apply to the store what the WAL holds beyond the store's watermark for this region. */
  private async replayLocal(): Promise<void> {
    const watermark = await this.store.watermark(this.name, this.wal.incarnation);
    let next = Math.max(watermark + 1, this.wal.firstLsn);
    if (next > watermark + 1) {
      // Retention removed segments the store never applied (only after a rebuild or a lost store).
      this.log.warn(
        { from: watermark + 1, to: next - 1 },
        "own records below the WAL's oldest segment are not replayed; `crr rebuild` pulls them from peers",
      );
    }
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
        skipGap: next === from,
      });
      next = chunk.lastLsn + 1;
    }
    if (next > from) this.log.info({ from, to: next - 1 }, "replayed local WAL records into the store");
  }

  private countApplied(origin: string, result: ApplyResult): void {
    if (result.status !== "applied") return;
    this.metrics.appliedRecords.inc({ origin }, result.applied);
    if (result.duplicates > 0) this.metrics.duplicates.inc({ origin }, result.duplicates);
    if (result.conflicts.length > 0) {
      this.metrics.conflicts.inc(result.conflicts.length);
      void this.auditConflicts();
      for (const c of result.conflicts) {
        this.log.info(
          {
            key: c.key,
            rule: c.rule,
            winner: { origin: c.winner.origin, lsn: c.winner.lsn, outcome: c.winner.outcome },
            loser: { origin: c.loser.origin, lsn: c.loser.lsn, outcome: c.loser.outcome },
          },
          "conflict: two regions decided the same key",
        );
      }
    }
  }

  private auditing: Promise<void> | undefined;
  private auditAgain = false;

  /**
   * Write every conflict the store holds beyond the audit log's mark. Driven by the conflicts
   * table (not by apply results), so a crash between the store commit and the audit append
   * loses nothing: the next open writes what is missing.
   */
  auditConflicts(): Promise<void> {
    if (this.auditing) {
      this.auditAgain = true;
      return this.auditing;
    }
    this.auditing = (async () => {
      do {
        this.auditAgain = false;
        for (;;) {
          const rows = await this.store.conflicts({ afterId: this.audit.current.conflictMark, limit: 500 });
          if (rows.length === 0) break;
          await Promise.all(
            rows.map((c) =>
              this.audit.append({
                kind: "conflict",
                conflictMark: c.id,
                key: c.key,
                rule: c.rule,
                winner: c.winner,
                loser: c.loser,
                detectedAtMs: c.detectedAtMs,
              }),
            ),
          );
        }
      } while (this.auditAgain);
    })()
      .catch((err: unknown) => this.log.error({ err: (err as Error).message }, "audit log write failed"))
      .finally(() => (this.auditing = undefined));
    return this.auditing;
  }

  private async auditFinding(f: Finding): Promise<void> {
    await this.audit
      .append({
        kind: "divergence",
        finding: f.kind,
        key: f.key,
        peer: f.remote,
        missingIn: f.missingIn,
        local: f.localVersion ?? null,
        remote: f.remoteVersion ?? null,
        watermarks: f.watermarks,
      })
      .catch((err: unknown) => this.log.error({ err: (err as Error).message }, "audit log write failed"));
  }

  /** Records of this region's own WAL by LSN (reconcile asks the origin: its WAL is the truth). */
  async walRecords(lsns: readonly number[]): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for (const lsn of lsns) {
      if (lsn < this.wal.firstLsn || lsn > this.wal.durableLsn) continue;
      const chunk = await this.wal.read(lsn, { bytesMax: 1, recordsMax: 1 });
      if (!chunk) continue;
      const [r] = decodeFrames(chunk.frames, {
        source: chunk.segment,
        baseOffset: chunk.offset,
        firstLsn: lsn,
      });
      if (r) out.push({ ...r, origin: this.name, incarnation: this.wal.incarnation });
    }
    return out;
  }

  /** Write versions a reconcile established, with an audit entry per changed key. */
  async repair(versions: readonly StoredRecord[], requestedBy: string): Promise<string[]> {
    const changed = this.store.repair(versions);
    for (const key of changed) {
      const v = versions.find((x) => x.key === key)!;
      await this.audit.append({
        kind: "repair",
        key,
        requestedBy,
        written: v,
        rule: ruleName(this.store.rule),
      });
    }
    if (changed.length > 0)
      this.log.warn(
        { keys: changed.slice(0, 20), count: changed.length, requestedBy },
        "reconcile repaired keys",
      );
    await this.auditConflicts();
    return changed;
  }

  /** Run the divergence check now (what `crr verify` asks for). */
  verify(options: { fullScrub?: boolean } = {}): Promise<ScanReport> {
    return this.divergence.scan(options);
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
    if (existing) {
      this.metrics.duplicates.inc({ origin: existing.origin });
      return this.answer(existing, true);
    }
    const inflight = this.pendingKeys.get(rec.key);
    if (inflight) {
      this.metrics.duplicates.inc({ origin: this.name });
      return { ...(await inflight), duplicate: true };
    }
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

  private async appendNew(rec: PreparedRecord): Promise<AppendResult> {
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

  async get(key: string): Promise<StoredRecord | undefined> {
    return this.store.get(key);
  }

  /** Refuse appends (503 with Retry-After over HTTP) until undrain(); replication goes on. */
  drain(): void {
    if (!this.draining) this.log.info("draining: appends refused until undrain");
    this.draining = true;
  }

  undrain(): void {
    if (this.draining) this.log.info("undrained: accepting appends");
    this.draining = false;
  }

  get isDraining(): boolean {
    return this.draining;
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

  /** Per peer: age in seconds of the oldest record it has not acknowledged (0 when caught up). */
  async lagSeconds(): Promise<Array<[string, number]>> {
    const now = Date.now();
    return Promise.all(
      [...this.shippers.values()].map(async (s): Promise<[string, number]> => {
        const oldest = await s.oldestUnackedWallMs();
        return [s.peer, oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000)];
      }),
    );
  }

  /** Everything `crr status` shows. */
  async status(): Promise<RegionStatus> {
    const lag = new Map(await this.lagSeconds());
    const health = new Map(this.health.snapshot().map((h: PeerHealth) => [h.region, h]));
    const durable = this.wal.durableLsn;
    const peers = [...this.shippers.values()].map((s) => ({
      peer: s.peer,
      url: this.config.regions[s.peer]!.url,
      state: s.state,
      healthy: health.get(s.peer)?.healthy ?? false,
      ackedLsn: s.acked,
      behindRecords: Math.max(0, durable - s.acked),
      lagSeconds: lag.get(s.peer) ?? 0,
      lastError: s.lastError,
    }));
    return {
      region: this.name,
      incarnation: this.wal.incarnation,
      draining: this.draining,
      ready: this.readiness().ready,
      caughtUp: peers.every((p) => p.behindRecords === 0),
      wal: this.wal.stats(),
      store: { ...(await this.store.stats()), digest: await this.store.rootDigest() },
      peers,
      watermarks: (await this.watermarksView()).watermarks,
      divergence: { findings: this.divergence.findings.length, lastScanAt: this.divergence.last?.at },
      audit: { file: this.audit.currentFile, ...this.audit.current },
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

  /** Remove WAL segments every peer (and the local store) has applied. */
  async retain(): Promise<number> {
    let needed = (await this.store.watermark(this.name, this.wal.incarnation)) + 1;
    for (const s of this.shippers.values()) needed = Math.min(needed, s.acked + 1);
    const removed = await this.wal.removeBelow(needed).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message }, "WAL retention failed");
      return 0;
    });
    const bytes = this.wal.stats().bytes;
    const over = bytes > this.config.wal.bytesMax;
    this.metrics.walOverLimit.set(over ? 1 : 0);
    if (over) {
      this.log.error(
        { walBytes: bytes, walBytesMax: this.config.wal.bytesMax, lowestNeededLsn: needed },
        "WAL is over its size limit because a peer has not acknowledged; nothing is deleted",
      );
    }
    return removed;
  }

  /** Refuse new appends, let in-flight ones finish, stop shipping, close WAL and store, release the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.retentionTimer);
    this.health.stop();
    this.divergence.stop();
    await Promise.allSettled([...this.pendingKeys.values()]);
    await Promise.all([...this.shippers.values()].map((s) => s.stop()));
    await this.wal.close();
    await this.applier.idle();
    await this.auditing;
    await this.audit.close();
    await this.store.close();
    this.lock.release();
  }
}
