/**
 * One region's engine, wired together: the inbox WAL, the dedup store, a PeerLink and a
 * shipper per peer, the reader, the audit log, the divergence monitor, metrics and peer
 * health. The sidecar (`crr serve`) and the embedded library (`openRegion`) both run it.
 * Each concern lives in its own file; this one opens, starts and closes them in order:
 *
 *   open:  lock → store → evidence (store, saved acks, peers) → WAL recovery with it →
 *          audit log → replay the WAL past the store → pump conflicts to the audit log
 *   start: health probes, then the startup checks (another node with this region's name,
 *          peers' clocks, a bootstrap when the region has no state); once admitted:
 *          appends, shippers, divergence scans, retention
 */
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { AuditLog, type AuditAppend } from "../audit/index.js";
import { HybridClock } from "../clock/index.js";
import { replicationPolicy, type NodeConfig, type ReplicationPolicy } from "../config/index.js";
import { DivergenceDetector, DivergenceMonitor, type Finding, type ScanReport } from "../divergence/index.js";
import type { PeerLink } from "../link/index.js";
import { silentLogger, type Logger } from "../log.js";
import { RequestVerifier, formatVersion } from "../protocol/index.js";
import { Reader } from "../reader/index.js";
import { realRuntime, type Runtime, type Timer } from "../runtime/index.js";
import type { FileOps } from "../util/file-ops.js";
import { PeerShipper } from "../shipper/index.js";
import {
  SqliteStore,
  ruleName,
  type ApplyResult,
  type MergeRule,
  type StoredRecord,
} from "../store/index.js";
import { Wal, decodeFrames, type RecordInput } from "../wal/index.js";
import {
  AppendPath,
  DrainingError,
  UnavailableError,
  type AppendOptions,
  type AppendResult,
} from "./append-path.js";
import { AuditPump } from "./audit-pump.js";
import { DiskState } from "./disk.js";
import { Evidence } from "./evidence.js";
import { HealthProber } from "./health.js";
import { IncarnationTracker } from "./incarnations.js";
import { httpLinks, otherRegions, type LinkFactory } from "./links.js";
import { LocalApplier, applyWalRange } from "./local-applier.js";
import { lockDataDir, type DataDirLock } from "./lock.js";
import { RegionMetrics } from "./metrics.js";
import { retain } from "./retention.js";
import { StartupChecks } from "./startup.js";
import { needsBootstrap, openRegionWal } from "./wal-open.js";
import { regionStatus, readiness, lagSeconds, type Readiness, type RegionStatus } from "./status.js";

export { DrainingError, UnavailableError, WaitTimeoutError } from "./append-path.js";
export type { AppendOptions, AppendResult } from "./append-path.js";
export type { PeerStatus, Readiness, RegionStatus } from "./status.js";

export interface RegionOptions {
  log?: Logger;
  /** Time, timers and randomness (default: the real ones; the simulator passes its own). */
  runtime?: Runtime;
  /** The WAL's file operations (default: node:fs; the simulator passes a disk that can lose unsynced writes). */
  fileOps?: FileOps;
  /** Store hooks for the simulator: no checkpoint thread, a callback after each synced commit. */
  store?: { checkpointer?: boolean; onSyncedCommit?: (store: SqliteStore) => void };
  /** How to reach each other region (default: HTTP to its configured URL). */
  links?: LinkFactory;
  /** Move the WAL aside and start as a new incarnation (an operator accepting the loss of what it held). */
  acceptWalLoss?: boolean;
  /** Serve a region without state without asking its peers (overrides recovery.startAlone). */
  startAlone?: boolean;
}

export function mergeRuleOf(config: NodeConfig): MergeRule {
  const rule = config.crr.conflictRule;
  return rule === "primary-wins" ? { kind: rule, priority: config.crr.regionPriority } : { kind: rule };
}

interface Parts {
  wal: Wal;
  store: SqliteStore;
  clock: HybridClock;
  metrics: RegionMetrics;
  lock: DataDirLock;
  audit: AuditLog;
  links: Map<string, PeerLink>;
  evidence: Evidence;
  incarnations: IncarnationTracker;
  boot: string;
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
  readonly links: ReadonlyMap<string, PeerLink>;
  readonly metrics: RegionMetrics;
  readonly log: Logger;
  readonly audit: AuditLog;
  readonly auditPump: AuditPump;
  readonly divergence: DivergenceMonitor;
  readonly disk: DiskState;
  readonly startup: StartupChecks;
  readonly incarnations: IncarnationTracker;
  /** Verifies every signed peer request (replication, divergence, admin): one replay window. */
  readonly verifier: RequestVerifier;
  /** "applied" (origin, incarnation, lsn): a peer batch was applied here (the benchmark harness listens). */
  readonly events = new EventEmitter<{ applied: [origin: string, incarnation: string, lsn: number] }>();
  /** Resolves once appends are admitted; rejects when the startup checks refuse. */
  admitted: Promise<void> = Promise.resolve();
  /** Why this region stopped taking appends for its own safety (an LSN would be reused), if it did. */
  stopped: string | undefined;
  readonly nowMs: () => number;
  readonly runtime: Runtime;
  private readonly fileOps: FileOps | undefined;
  private readonly appendPath: AppendPath;
  private readonly applier: LocalApplier;
  private readonly health: HealthProber;
  private readonly lock: DataDirLock;
  private readonly evidence: Evidence;
  private draining = false;
  private retentionTimer: Timer | undefined;
  private closed = false;

  private constructor(
    config: NodeConfig,
    p: Parts,
    log: Logger,
    runtime: Runtime,
    startAlone: boolean,
    empty: boolean,
    fileOps: FileOps | undefined,
  ) {
    this.name = config.region;
    this.config = config;
    this.log = log;
    this.runtime = runtime;
    this.fileOps = fileOps;
    const nowMs = (this.nowMs = () => runtime.nowMs());
    ({ wal: this.wal, store: this.store, clock: this.clock, metrics: this.metrics, lock: this.lock } = p);
    ({ audit: this.audit, links: this.links, evidence: this.evidence, incarnations: this.incarnations } = p);
    this.policy = replicationPolicy(config);
    this.verifier = new RequestVerifier({
      secret: config.auth.peerSecret,
      windowMs: config.auth.windowMs,
      nowMs,
    });
    this.disk = new DiskState(
      config.dataDir,
      config.health.diskProbeIntervalMs,
      log,
      (full) => this.metrics.diskFull.set(full ? 1 : 0),
      runtime,
    );
    this.auditPump = new AuditPump({
      conflicts: (o) => this.store.conflicts(o),
      audit: this.audit,
      log,
      runtime,
      retryDelayMsMin: config.shipper.retryDelayMsMin,
      retryDelayMsMax: config.shipper.retryDelayMsMax,
      onFailure: (err) => {
        this.metrics.auditErrors.inc();
        this.disk.note(err);
      },
    });
    this.applier = new LocalApplier(
      this.store,
      this.wal,
      config.region,
      (r) => this.countApplied(config.region, r),
      (err) => this.stop(err.message),
      runtime,
    );
    this.reader = this.makeReader();
    this.shippers = this.makeShippers();
    this.appendPath = new AppendPath({
      region: this.name,
      incarnation: () => this.wal.incarnation,
      policy: this.policy,
      admit: () => this.admit(),
      getSync: (key) => this.store.getSync(key),
      walAppend: (rec) => this.wal.appendPrepared(rec),
      localApply: (rec) => this.applier.apply(rec),
      shippers: this.shippers,
      waitTimeoutMsDefault: config.append.waitTimeoutMs,
      runtime,
      onDuplicate: (origin) => this.metrics.duplicates.inc({ origin }),
      onError: (err) => this.disk.note(err),
    });
    this.divergence = this.makeMonitor();
    this.health = new HealthProber({
      links: [...this.links.values()],
      intervalMs: config.health.probeIntervalMs,
      timeoutMs: config.health.probeTimeoutMs,
      runtime,
      onChange: (region, healthy) => {
        this.metrics.regionHealth.set({ region }, healthy ? 1 : 0);
        this.log.info({ region, healthy }, "peer region health changed");
      },
    });
    this.metrics.regionHealth.set({ region: config.region }, 1);
    this.startup = new StartupChecks({
      region: this.name,
      incarnation: this.wal.incarnation,
      empty,
      links: [...this.links.values()],
      views: () => this.evidence.peerViews(),
      store: this.store,
      clock: this.clock,
      accepts: (origin, tenant) => this.policy.accepts(origin, tenant),
      aliveMs: 3 * config.health.probeIntervalMs,
      probeIntervalMs: config.health.probeIntervalMs,
      boot: p.boot,
      previousBoot: p.lock.previousBoot,
      bootstrapWaitMs: config.recovery.bootstrapWaitMs,
      startAlone,
      log,
      runtime,
      audit: (entry) => this.auditPump.record(entry),
    });
  }

  static async open(config: NodeConfig, options: RegionOptions = {}): Promise<Region> {
    const log = options.log ?? silentLogger();
    const runtime = options.runtime ?? realRuntime;
    const nowMs = () => runtime.nowMs();
    // This process's boot id: peers tell two processes serving one region apart by it.
    const boot = runtime.randomBytes(8).toString("hex");
    const lock = lockDataDir(config.dataDir, boot);
    if (lock.tookOver)
      log.warn({ previous: lock.tookOver }, "took over the lock of a node that is no longer running");
    let region: Region | undefined;
    const opened: { store?: SqliteStore; wal?: Wal; links?: Map<string, PeerLink> } = {};
    try {
      fs.mkdirSync(path.join(config.dataDir, "shipper"), { recursive: true });
      const clock = new HybridClock({ wallClock: nowMs, maxSkewMs: config.hlc.maxSkewMs });
      const metrics = new RegionMetrics(() => region);
      const store = (opened.store = new SqliteStore({
        path: path.join(config.dataDir, "store.sqlite"),
        rule: mergeRuleOf(config),
        nowMs,
        checkpointer: options.store?.checkpointer,
        onSyncedCommit: options.store?.onSyncedCommit && (() => options.store!.onSyncedCommit!(store)),
        onCheckpointError: (message) => log.error({ message }, "SQLite checkpoint failed"),
      }));
      const incarnations = new IncarnationTracker(3 * config.health.probeIntervalMs);
      const makeLink = options.links ?? httpLinks(config, runtime);
      const identity = { incarnation: () => opened.wal?.incarnation, boot, rule: ruleName(store.rule) };
      const links = (opened.links = new Map(otherRegions(config).map((r) => [r, makeLink(r, identity)])));
      const evidence = new Evidence({
        region: config.region,
        store,
        shipperDir: path.join(config.dataDir, "shipper"),
        links: [...links.values()],
        peerWaitMs: config.recovery.peerWaitMs,
        runtime,
        log,
      });
      const empty = needsBootstrap(store);
      const abandoned: Array<Record<string, unknown>> = [];
      const wal = (opened.wal = await openRegionWal({
        region: config.region,
        dir: path.join(config.dataDir, "wal"),
        store,
        clock,
        acceptWalLoss: options.acceptWalLoss ?? false,
        log,
        open: () => openWal(config, clock, { runtime, fileOps: options.fileOps }, metrics, evidence, log),
        onAbandoned: (entry) => abandoned.push(entry),
      }));
      const audit = AuditLog.open({
        dir: path.join(config.dataDir, "audit"),
        region: config.region,
        fileBytesMax: config.audit.fileBytesMax,
        runtime,
        onTornTail: (file, bytes) =>
          log.warn({ file, bytes }, "audit log: cut an unfinished last line (never acknowledged)"),
      });
      // A store lost or rolled back numbers its conflicts from where it restarted: above what the log holds.
      store.reserveConflictIds(audit.current.conflictMark);
      const parts = { wal, store, clock, metrics, lock, audit, links, evidence, incarnations, boot };
      region = new Region(
        config,
        parts,
        log,
        runtime,
        options.startAlone ?? config.recovery.startAlone,
        empty,
        options.fileOps,
      );
      for (const entry of abandoned) await region.auditPump.record({ kind: "wal-abandoned", ...entry });
      await region.replayLocal();
      await region.auditPump.pump();
      return region;
    } catch (err) {
      if (region) await region.close().catch(() => undefined);
      else {
        await opened.wal?.close().catch(() => undefined);
        await opened.store?.close().catch(() => undefined);
        for (const l of opened.links?.values() ?? []) await l.close();
        lock.release();
      }
      throw err;
    }
  }

  /**
   * Probe peers, then run the startup checks; once they admit appends, start shipping,
   * divergence scans and retention. `admitted` settles when the checks end.
   */
  start(): void {
    this.health.start();
    this.admitted = this.startup.run().then(() => {
      if (this.closed) return;
      for (const s of this.shippers.values()) s.start();
      this.divergence.start();
      this.retentionTimer = this.runtime.every(this.config.wal.retentionIntervalMs, () => void this.retain());
      this.log.info({ incarnation: this.wal.incarnation }, "appends admitted");
    });
    this.admitted.catch((err: unknown) => this.log.error({ err: (err as Error).message }, "startup refused"));
  }

  private makeReader(): Reader {
    return new Reader({
      self: this.name,
      regions: Object.keys(this.config.regions),
      store: this.store,
      clock: this.clock,
      policy: this.policy,
      rule: `${ruleName(this.store.rule)}/${formatVersion}`,
      incarnations: this.incarnations,
      nowMs: this.nowMs,
      verifier: new RequestVerifier({
        secret: this.config.auth.peerSecret,
        windowMs: this.config.auth.windowMs,
        nowMs: this.nowMs,
      }),
      log: this.log,
      onApplied: (batch, result) => {
        this.countApplied(batch.origin, result);
        this.events.emit("applied", batch.origin, batch.incarnation, result.watermark);
      },
      onSkipped: (origin, incarnation, skipped) =>
        this.auditPump.record({
          kind: "gap-skipped",
          origin,
          incarnation,
          from: skipped.from,
          to: skipped.to,
          by: origin,
        }),
      onRefused: (reason) => this.metrics.refusals.inc({ reason }),
      onError: (err) => this.disk.note(err),
    });
  }

  private makeShippers(): Map<string, PeerShipper> {
    const shippers = new Map<string, PeerShipper>();
    for (const peer of this.policy.peers) {
      const tenants = this.policy.filtersTenants
        ? this.config.crr.policies.filter((p) => p.targetRegions.includes(peer)).map((p) => p.tenantID)
        : undefined;
      const s = new PeerShipper({
        region: this.name,
        link: this.links.get(peer)!,
        wal: this.wal,
        own: {
          range: async (incarnation, from, to, limit) =>
            this.store
              .streamVersions(this.name, incarnation, from, to, limit)
              .filter((v) => v.intact)
              .map((v) => ({ ...v, flags: 0 })),
          streams: async () =>
            (await this.store.watermarks())
              .filter((w) => w.origin === this.name)
              .map((w) => ({ incarnation: w.incarnation, lsn: w.lsn })),
        },
        sendsTenant: this.policy.filtersTenants ? (tenant) => this.policy.sendsTo(peer, tenant) : undefined,
        tenants,
        rule: ruleName(this.store.rule),
        formatVersion,
        ...this.config.shipper,
        stateFile: path.join(this.config.dataDir, "shipper", `${peer}.json`),
        fileOps: this.fileOps,
        log: this.log,
        runtime: this.runtime,
        reportLost: (incarnation, ranges) =>
          this.auditPump.record({ kind: "records-lost", origin: this.name, incarnation, peer, ranges }),
      });
      s.on("ack", (_lsn, records) => this.metrics.shippedRecords.inc({ peer }, records));
      s.on("failure", (reason) => {
        this.metrics.shipErrors.inc({ peer, reason });
        if (reason === "duplicate_region")
          this.stop(`peer ${peer} refuses this node: another node serves region ${this.name}`);
      });
      s.on("peerAhead", (peerLsn, durable) =>
        this.stop(
          `peer ${peer} holds LSN ${peerLsn} of this incarnation but the WAL ends at ${durable}: an LSN would be issued twice`,
        ),
      );
      s.on("fallback", (err) =>
        this.log.warn({ peer, err: err.message }, "WAL cannot serve this range; shipping it from the store"),
      );
      shippers.set(peer, s);
    }
    return shippers;
  }

  private makeMonitor(): DivergenceMonitor {
    const c = this.config;
    return new DivergenceMonitor({
      detector: new DivergenceDetector({
        region: c.region,
        incarnation: () => this.wal.incarnation,
        selectivePolicies: c.crr.replicationMode === "selective" ? c.crr.policies : undefined,
        store: this.store,
        remote: (peer) => this.links.get(peer)!,
        inFlightMsMax: c.divergence.inFlightMsMax,
        runtime: this.runtime,
        log: this.log,
      }),
      store: this.store,
      peers: this.policy.peers,
      intervalMs: c.divergence.intervalMs,
      scrubIntervalMs: c.divergence.scrubIntervalMs,
      scrubBucketsPerTick: c.divergence.scrubBucketsPerTick,
      log: this.log,
      runtime: this.runtime,
      onScan: (report, seconds) => {
        this.metrics.divergenceScans.inc();
        this.metrics.divergenceScanSeconds.observe(seconds);
        this.metrics.divergenceCount.set(report.findings.length);
      },
      onNewFinding: async (f) => void this.auditPump.record(findingEntry(f)),
      onScanError: (peer) => this.metrics.divergenceScanErrors.inc({ peer }),
    });
  }

  /** Stop taking appends for the region's own safety (never undone by itself: an operator restarts it). */
  stop(reason: string): void {
    if (this.stopped !== undefined) return;
    this.stopped = reason;
    this.metrics.stopped.set(1);
    this.log.error({ reason }, "appends stopped: this region would acknowledge records it cannot serve");
  }

  private admit(): void {
    if (this.draining || this.closed) throw new DrainingError(this.name);
    if (this.stopped !== undefined)
      throw new UnavailableError(
        "region_stopped",
        `region ${this.name} stopped taking appends: ${this.stopped}`,
        30,
      );
    if (this.startup.state !== "admitted")
      throw new UnavailableError(
        "starting",
        `region ${this.name} is not admitting appends yet: ${this.startup.detail}`,
        1,
      );
    if (this.disk.full !== undefined)
      throw new UnavailableError("disk_full", `region ${this.name}: disk full (${this.disk.full})`, 5);
  }

  /** Apply to the store what it lacks of this incarnation: from peers below the WAL, then from the WAL. */
  private async replayLocal(): Promise<void> {
    const incarnation = this.wal.incarnation;
    const watermark = this.store.watermarkSync(this.name, incarnation);
    const from = watermark + 1;
    if (from < this.wal.firstLsn) await this.refillBelowWal(incarnation, from, this.wal.firstLsn - 1);
    const next = Math.max(from, this.wal.firstLsn);
    if (next > this.wal.durableLsn) return;
    await applyWalRange(this.wal, this.store, this.name, next, this.wal.durableLsn, (r) =>
      this.countApplied(this.name, r),
    );
    this.log.info({ from: next, to: this.wal.durableLsn }, "replayed local WAL records into the store");
  }

  /** Own records below the WAL's oldest segment that the store lost: from the peers; what nobody holds is audited as lost. */
  private async refillBelowWal(incarnation: string, from: number, to: number): Promise<void> {
    const records = await this.evidence.records(incarnation, from, to);
    const lost = to - from + 1 - records.length;
    if (lost > 0) {
      const held = new Set(records.map((r) => r.lsn));
      const missing: number[] = [];
      for (let l = from; l <= to && missing.length < 1000; l++) if (!held.has(l)) missing.push(l);
      this.log.error(
        { from, to, lost, missing: missing.slice(0, 20) },
        "own records held by nobody (the store and the WAL lost them, no peer has them)",
      );
      // Audited before the watermark moves past them: a crash in between cannot lose the entry.
      await this.auditPump.record({
        kind: "records-lost",
        origin: this.name,
        incarnation,
        from,
        to,
        lost,
        missing,
      });
    } else {
      this.log.warn({ from, to }, "own records the store lacked below the WAL were copied back from peers");
    }
    this.store.applySync({ origin: this.name, incarnation, firstLsn: from, lastLsn: to, records });
  }

  private countApplied(origin: string, result: ApplyResult): void {
    if (result.status !== "applied") return;
    this.metrics.appliedRecords.inc({ origin }, result.applied);
    if (result.duplicates > 0) this.metrics.duplicates.inc({ origin }, result.duplicates);
    if (result.conflicts.length === 0) return;
    this.metrics.conflicts.inc(result.conflicts.length);
    void this.auditPump.pump();
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

  /** Records of this region's own WAL by LSN (reconcile asks the origin: its WAL is the truth). */
  async walRecords(lsns: readonly number[]): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for (const lsn of lsns) {
      if (lsn < this.wal.firstLsn || lsn > this.wal.durableLsn) continue;
      const chunk = await this.wal.read(lsn, { bytesMax: 1, recordsMax: 1 }).catch(() => undefined);
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
      void this.auditPump.record({
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
    await this.auditPump.pump();
    return changed;
  }

  /** An operator allows `peer`'s shipper to skip LSNs nobody holds, up to `throughLsn`: audited. */
  async skipGap(peer: string, throughLsn: number, requestedBy: string): Promise<void> {
    const s = this.shippers.get(peer);
    if (!s) throw new UnavailableError("unknown_peer", `region ${this.name} does not ship to '${peer}'`, 0);
    await this.auditPump.record({
      kind: "gap-skip-allowed",
      peer,
      incarnation: this.wal.incarnation,
      throughLsn,
      requestedBy,
    });
    s.allowSkip(throughLsn);
    this.log.warn({ peer, throughLsn, requestedBy }, "operator allowed skipping LSNs nobody holds (audited)");
  }

  /** Run the divergence check now (what `crr verify` asks for). */
  verify(options: { fullScrub?: boolean } = {}): Promise<ScanReport> {
    return this.divergence.scan(options);
  }

  append(input: RecordInput, options: AppendOptions = {}): Promise<AppendResult> {
    return this.appendPath.append(input, options);
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

  /** GET /v1/watermarks: what this region applied, its rule and format, its clock, and whom it heard from. */
  async watermarksView(): Promise<import("../link/index.js").WatermarksView> {
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
      rule: ruleName(this.store.rule),
      formatVersion,
      clock: this.clock.peek(),
      seen: this.incarnations.recent(this.nowMs()),
    };
  }

  lagSeconds(): Promise<Array<[string, number]>> {
    return lagSeconds(this.shippers.values(), this.nowMs());
  }

  status(): Promise<RegionStatus> {
    return regionStatus(this);
  }

  readiness(): Readiness {
    return readiness(this);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  healthSnapshot() {
    return this.health.snapshot();
  }

  /** Remove WAL segments every peer (and the local store) has durably applied. */
  retain(): Promise<number> {
    return retain(this);
  }

  /** Refuse new appends, let in-flight ones finish, stop shipping, close WAL and store, release the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.retentionTimer?.cancel();
    this.health.stop();
    this.divergence.stop();
    this.disk.stop();
    await this.appendPath.inProgress();
    await Promise.all([...this.shippers.values()].map((s) => s.stop()));
    await this.wal.close();
    await this.applier.idle();
    await this.auditPump.stop();
    await this.audit.close();
    await this.store.close();
    for (const l of this.links.values()) await l.close();
    this.lock.release();
  }
}

async function openWal(
  config: NodeConfig,
  clock: HybridClock,
  io: { runtime: Runtime; fileOps: FileOps | undefined },
  metrics: RegionMetrics,
  evidence: Evidence,
  log: Logger,
): Promise<Wal> {
  const wal = await Wal.open({
    dir: path.join(config.dataDir, "wal"),
    region: config.region,
    clock,
    runtime: io.runtime,
    fileOps: io.fileOps,
    segmentBytesMax: config.wal.segmentBytesMax,
    segmentAgeMsMax: config.wal.segmentAgeMsMax,
    queueBytesMax: config.wal.queueBytesMax,
    onFsync: (seconds) => metrics.walFsyncSeconds.observe(seconds),
    evidence,
  });
  const r = wal.recovery;
  if (r.truncatedBytes > 0)
    log.warn(
      {
        bytes: r.truncatedBytes,
        reason: r.tornReason,
        acknowledgedLsn: r.acknowledgedLsn,
        evidence: evidence.source,
      },
      "WAL recovery cut a torn tail (never acknowledged)",
    );
  if (r.restored)
    log.error(
      { lsns: r.restored.lsns, reason: r.restored.reason, evidence: evidence.source },
      "WAL recovery restored acknowledged records it had lost or damaged",
    );
  return wal;
}

function findingEntry(f: Finding): AuditAppend {
  return {
    kind: "divergence",
    finding: f.kind,
    key: f.key,
    peer: f.remote,
    missingIn: f.missingIn,
    reason: f.reason,
    local: f.localVersion ?? null,
    remote: f.remoteVersion ?? null,
    watermarks: f.watermarks,
  };
}
