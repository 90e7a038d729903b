/**
 * One region's engine, wired together: the inbox WAL, the dedup store, a PeerLink and a
 * shipper per peer, the reader, the audit log, the divergence monitor, metrics and peer
 * health. The sidecar (`crr serve`) and the embedded library (`openRegion`) both run it.
 * This file is the lifecycle; each concern lives in its own file:
 *
 *   parts.ts     open:  lock → store → evidence (store, saved acks, peers) → WAL recovery
 *                       with it → audit log
 *   replay.ts    the store catches up with the WAL (and peers below it)
 *   wiring.ts    reader, shippers, divergence monitor
 *   append-path.ts, local-applier.ts   appends; audit-pump.ts, repair.ts   the audit trail
 *   status.ts    status, lag, readiness;  retention.ts   WAL segments nobody needs
 *   start: health probes, then the startup checks (another node with this region's name,
 *          peers' clocks, a bootstrap when the region has no state); once admitted:
 *          appends, shippers, divergence scans, retention
 */
import { EventEmitter } from "node:events";
import path from "node:path";
import { RequestTally, type ArchiveFollower, type Archiver } from "../archive/index.js";
import type { AuditLog } from "../audit/index.js";
import type { HybridClock } from "../clock/index.js";
import {
  replicationPolicy,
  type Credentials,
  type NodeConfig,
  type ReplicationPolicy,
} from "../config/index.js";
import type { DivergenceMonitor, ScanReport } from "../divergence/index.js";
import type { PeerLink, WatermarksView } from "../link/index.js";
import { silentLogger, type Logger } from "../log.js";
import { RequestVerifier } from "../protocol/index.js";
import type { Reader } from "../reader/index.js";
import { realRuntime, type Runtime, type Timer } from "../runtime/index.js";
import type { PeerShipper } from "../shipper/index.js";
import type { ApplyResult, Conflict, DedupStore, StoredRecord } from "../store/index.js";
import type { FileOps } from "../util/file-ops.js";
import type { RecordInput, Wal } from "../wal/index.js";
import {
  AppendPath,
  DrainingError,
  UnavailableError,
  type AppendOptions,
  type AppendResult,
} from "./append-path.js";
import { AuditPump } from "./audit-pump.js";
import { DiskState } from "./disk.js";
import type { Evidence } from "./evidence.js";
import { HealthProber } from "./health.js";
import type { IncarnationTracker } from "./incarnations.js";
import type { LinkFactory } from "./links.js";
import { LocalApplier } from "./local-applier.js";
import type { DataDirLock } from "./lock.js";
import type { RegionMetrics } from "./metrics.js";
import { NodeLeftError } from "../errors.js";
import type { FellowWatch } from "./fellow-wait.js";
import {
  StuckClaims,
  claimsOf,
  fellowWatchOf,
  membershipOf,
  releaseOwnClaims,
  type Membership,
} from "./fellows.js";
import { fellowIncarnations, openParts, storeIdMeta, type Parts, type StoreHooks } from "./parts.js";
import { OwnRecordsUndecidedError, replayLocal, replayLocalWhenAnswered } from "./replay.js";
import { ReplayFloorFile } from "./replay-floor.js";
import type { TlsFiles } from "./tls.js";
import {
  allowSkip,
  repairFromPeer,
  repairVersions,
  restoreOwnFromWal,
  restoreStreamsFromPeers,
  walRecords,
} from "./repair.js";
import { retain } from "./retention.js";
import { StartupChecks } from "./startup.js";
import {
  lagSeconds,
  readiness,
  regionStatus,
  watermarksView,
  type Readiness,
  type RegionStatus,
} from "./status.js";
import { archiveSeedOf, archiverOf, followersOf, monitorOf, readerOf, shippersOf } from "./wiring.js";
import { abandonedAudited } from "./wal-open.js";

export { mergeRuleOf } from "./parts.js";
export { DrainingError, OverloadedError, UnavailableError, WaitTimeoutError } from "./append-path.js";
export type { AppendOptions, AppendResult } from "./append-path.js";
export type { PeerStatus, Readiness, RegionStatus } from "./status.js";

/**
 * What `crr verify` reports: the divergence scan, and with a full scrub the versions put
 * back first (missing from the store, removed outside the engine): own records from the WAL,
 * the rest from the peers' copies.
 */
export interface VerifyReport extends ScanReport {
  restored?: { fromWal: number; fromPeers: number };
}

export interface RegionOptions {
  log?: Logger;
  /** Time, timers and randomness (default: the real ones; the simulator passes its own). */
  runtime?: Runtime;
  /** The WAL's file operations (default: node:fs; the simulator passes a disk that can lose unsynced writes). */
  fileOps?: FileOps;
  /** Store hooks for the simulator: no checkpoint thread, a callback after each synced commit, a wrapper. */
  store?: StoreHooks;
  /** How to reach each other region (default: HTTP to its configured URL). */
  links?: LinkFactory;
  /** Move the WAL aside and start as a new incarnation (an operator accepting the loss of what it held). */
  acceptWalLoss?: boolean;
  /** Serve a region without state without asking its peers (overrides recovery.startAlone). */
  startAlone?: boolean;
}

export class Region {
  readonly name: string;
  readonly config: NodeConfig;
  readonly clock: HybridClock;
  readonly wal: Wal;
  readonly store: DedupStore;
  readonly policy: ReplicationPolicy;
  readonly reader: Reader;
  readonly shippers: ReadonlyMap<string, PeerShipper>;
  readonly links: ReadonlyMap<string, PeerLink>;
  readonly metrics: RegionMetrics;
  readonly log: Logger;
  readonly audit: AuditLog;
  readonly auditPump: AuditPump;
  /** The S3 archive of this region's WAL (archive.s3), if configured: retention waits for its verified copies. */
  readonly archiver: Archiver | undefined;
  /** Followers of the archives of peers reached `via: s3` (S3 as a transport). */
  readonly followers: ArchiveFollower[];
  /** Every S3 request of the archive and the followers, for what they cost. */
  readonly s3Requests: RequestTally;
  readonly divergence: DivergenceMonitor;
  readonly disk: DiskState;
  readonly startup: StartupChecks;
  /** Open could not finish the store's catch-up with the WAL (a peer that may hold lost records did not answer): the startup checks retry it. */
  private catchUpPending = false;
  readonly incarnations: IncarnationTracker;
  /** This node's process id (a new one at each start; peers tell processes apart by it). */
  readonly boot: string;

  /** The store's identity now (parts.ts): a comparison across two stores is not one view. */
  async storeId(): Promise<string | undefined> {
    return this.store.getMeta(storeIdMeta);
  }
  /** Verifies every signed request (replication, divergence, admin, probes): one replay window. */
  readonly verifier: RequestVerifier;
  /** This region's signer and every region's keys. */
  readonly credentials: Credentials;
  /** The TLS material (listen.tls), reloaded when its files change. */
  readonly tls: TlsFiles | undefined;
  /** Replay protection across restarts (auth-floor.json). */
  readonly replayFloor: ReplayFloorFile;
  /**
   * "applied" (origin, incarnation, lsn, carried): a peer batch was applied here, the stream's
   * watermark is now `lsn`, and `carried` says whether the batch held the record at `lsn`
   * (a selective or skip batch moves the watermark past records it does not carry). The
   * benchmark harness and the simulator listen.
   */
  readonly events = new EventEmitter<{
    applied: [origin: string, incarnation: string, lsn: number, carried: boolean];
  }>();
  /** Resolves once appends are admitted; rejects when the startup checks refuse. */
  admitted: Promise<void> = Promise.resolve();
  /** Why this region stopped taking appends for its own safety (an LSN would be reused), if it did. */
  stopped: string | undefined;
  readonly nowMs: () => number;
  readonly runtime: Runtime;
  private readonly appendPath: AppendPath;
  readonly applier: LocalApplier;
  private readonly health: HealthProber;
  private readonly lock: DataDirLock;
  private readonly evidence: Evidence;
  private draining = false;
  private retentionTimer: Timer | undefined;
  private closed = false;
  /** This data directory's id when the region's nodes share the store. */
  readonly nodeId: string | undefined;
  /** This node's heartbeat among the region's nodes on a shared store. */
  readonly membership: Membership | undefined;
  /** Claims whose answer was lost and could not be ended yet (ended after a good heartbeat). */
  readonly stuckClaims: StuckClaims;
  /** The region's nodes as this data directory remembers them, against a store that forgets. */
  readonly fellowWatch: FellowWatch | undefined;

  private constructor(
    config: NodeConfig,
    p: Parts,
    o: {
      log: Logger;
      runtime: Runtime;
      startAlone: boolean;
      acceptWalLoss: boolean;
      fileOps: FileOps | undefined;
    },
  ) {
    const { log, runtime } = o;
    this.name = config.region;
    this.config = config;
    this.log = log;
    this.runtime = runtime;
    const nowMs = (this.nowMs = () => runtime.nowMs());
    ({ wal: this.wal, store: this.store, clock: this.clock, metrics: this.metrics, lock: this.lock } = p);
    ({ audit: this.audit, links: this.links, evidence: this.evidence, incarnations: this.incarnations } = p);
    this.boot = p.boot;
    this.policy = replicationPolicy(config);
    this.credentials = p.credentials;
    this.tls = p.tls;
    this.replayFloor = new ReplayFloorFile(
      path.join(config.dataDir, "auth-floor.json"),
      nowMs(),
      log,
      o.fileOps,
    );
    this.verifier = new RequestVerifier({
      self: config.region,
      keys: this.credentials.ring,
      windowMs: config.auth.windowMs,
      nowMs,
      floor: this.replayFloor,
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
      notes: this.store,
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
    this.nodeId = p.nodeId;
    this.reader = readerOf(this);
    this.shippers = shippersOf(this, o.fileOps);
    this.s3Requests = new RequestTally(nowMs());
    this.archiver = archiverOf(this);
    this.followers = followersOf(this);
    this.appendPath = new AppendPath({
      region: this.name,
      policy: this.policy,
      admit: () => this.admit(),
      lookup: (key) => this.store.get(key),
      claims: claimsOf(this.store, this.wal.incarnation, p.nodeId, config.append.claimWaitMs),
      walAppend: (rec) => this.wal.appendPrepared(rec),
      localApply: (rec) => this.applier.apply(rec),
      shippers: this.shippers,
      waitTimeoutMsDefault: config.append.waitTimeoutMs,
      pendingMax: config.append.pendingMax,
      queueDelayMaxMs: config.append.queueDelayMaxMs,
      batchRecordsMax: config.append.batchRecordsMax,
      onShed: (n, reason) => this.metrics.appendsShed.inc({ reason }, n),
      runtime,
      onDuplicate: (origin) => this.metrics.duplicates.inc({ origin }),
      onClaimStuck: (key, err, end) => {
        this.log.error(
          { key, err: (err as Error).message },
          "a claim whose answer was lost could not be ended: the key stays claimed by this node until the store answers again (tried after each heartbeat), it appends the key again, or it restarts",
        );
        this.stuckClaims.add(key, end);
      },
      onError: (err) => {
        this.disk.note(err);
        // Marked left by `crr leave --node-id`: the store refuses this node; say so everywhere.
        if (err instanceof NodeLeftError) this.stop(err.message);
      },
    });
    this.divergence = monitorOf(this);
    this.stuckClaims = new StuckClaims(this.log);
    this.fellowWatch = fellowWatchOf(this, p, o.fileOps);
    this.membership = membershipOf(this);
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
    this.metrics.walBytesMax.set(config.wal.bytesMax);
    this.startup = new StartupChecks({
      region: this.name,
      incarnation: this.wal.incarnation,
      empty: p.empty,
      links: [...this.links.values()],
      views: () => this.evidence.peerViews(),
      catchUp: async ({ untilMs, onWait }) => {
        if (!this.catchUpPending) return;
        await replayLocalWhenAnswered(this, this.evidence, { untilMs, retryMs: 1000, onWait });
        this.catchUpPending = false;
        await this.fellowWatch?.replayed();
        await this.noteStoreHolds();
      },
      store: this.store,
      clock: this.clock,
      accepts: (origin, tenant) => this.policy.accepts(origin, tenant),
      aliveMs: 3 * config.health.probeIntervalMs,
      probeIntervalMs: config.health.probeIntervalMs,
      boot: p.boot,
      previousBoot: p.lock.previousBoot,
      fellows: async () =>
        new Set([
          ...(await fellowIncarnations(this.store, this.nodeId)),
          ...(this.fellowWatch?.rememberedFellows() ?? []),
        ]),
      // After the WAL is in the store and after the twin check: a copy of this data directory
      // started beside it must be refused before it can end the running node's claims.
      beforeAdmit: () => releaseOwnClaims(this),
      fellowsReplayed: this.fellowWatch && ((w) => this.fellowWatch!.waitForFellows(w)),
      bootstrapWaitMs: config.recovery.bootstrapWaitMs,
      startAlone: o.startAlone,
      acceptWalLoss: o.acceptWalLoss,
      log,
      runtime,
      fromArchive: archiveSeedOf(this),
      audit: (entry) => this.auditPump.record(entry),
    });
  }

  static async open(config: NodeConfig, options: RegionOptions = {}): Promise<Region> {
    const log = options.log ?? silentLogger();
    const runtime = options.runtime ?? realRuntime;
    const built: { region?: Region } = {};
    const parts = await openParts(config, {
      log,
      runtime,
      fileOps: options.fileOps,
      store: options.store,
      links: options.links,
      acceptWalLoss: options.acceptWalLoss ?? false,
      region: () => built.region,
    });
    const startAlone = options.startAlone ?? config.recovery.startAlone;
    const region = (built.region = new Region(config, parts, {
      log,
      runtime,
      startAlone,
      acceptWalLoss: options.acceptWalLoss ?? false,
      fileOps: options.fileOps,
    }));
    try {
      for (const entry of parts.abandoned) await region.auditPump.record({ kind: "wal-abandoned", ...entry });
      if (parts.abandoned.length > 0) await abandonedAudited(parts.store);
      try {
        await replayLocal(region, parts.evidence);
        await region.fellowWatch?.replayed();
      } catch (err) {
        if (!(err instanceof OwnRecordsUndecidedError)) throw err;
        // Serve the peers and ask them again from start(): they may be waiting for us too.
        log.warn(
          { err: err.message },
          "recovery: waiting for peers that may hold own records the store lost",
        );
        region.catchUpPending = true;
      }
      await region.noteStoreHolds();
      await region.auditPump.pump();
      return region;
    } catch (err) {
      await region.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Probe peers, then run the startup checks; once they admit appends, start shipping,
   * divergence scans and retention. `admitted` settles when the checks end.
   */
  start(): void {
    this.health.start();
    this.membership?.start();
    this.admitted = this.startup.run().then(() => {
      if (this.closed) return;
      // The archive's audience before shipping (the archiver's pass puts it too, before its
      // first object): a restart may have narrowed the policy, and followers go by the last one
      // published. After the startup checks: a twin refused by them must not publish its own.
      this.archiver
        ?.publish()
        .catch((err: Error) =>
          this.log.warn(
            { err: err.message },
            "archive audience not published yet; the archive's pass tries again",
          ),
        );
      for (const s of this.shippers.values()) s.start();
      this.divergence.start();
      this.archiver?.start();
      for (const f of this.followers) f.start();
      this.retentionTimer = this.runtime.every(this.config.wal.retentionIntervalMs, () => void this.retain());
      this.log.info({ incarnation: this.wal.incarnation }, "appends admitted");
    });
    this.admitted.catch((err: unknown) => this.log.error({ err: (err as Error).message }, "startup refused"));
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

  /** Count what an apply did; conflicts go to the log and the audit pump. */
  /** How far the store holds this node's current stream (what a node sharing its store may ship). */
  private async noteStoreHolds(): Promise<void> {
    this.applier.noteApplied(await this.store.watermark(this.name, this.wal.incarnation));
  }

  /** Each peer's acknowledged LSN of this region's stream and when it last answered a batch (metrics). */
  peerAcks(): Array<{ peer: string; ackedLsn: number; lastAckMs: number }> {
    return [...this.shippers.values()].map((s) => ({
      peer: s.peer,
      ackedLsn: s.acked,
      lastAckMs: s.lastAckAtMs,
    }));
  }

  /**
   * A winner changed outside the engine lost to a newer decision: the store did not keep its
   * changed copy as the loser, and noted it in the same transaction for the audit pump (an
   * audit entry with the copy as found, written even after a crash); logged.
   */
  private noteDamagedLoser(c: Conflict): void {
    this.log.error(
      {
        key: c.key,
        winner: { origin: c.winner.origin, lsn: c.winner.lsn },
        loser: { origin: c.loser.origin, lsn: c.loser.lsn },
      },
      "a winner changed outside the engine lost to a newer decision: its changed copy is not kept as the loser; crr verify puts an intact one back from its origin's WAL or a peer",
    );
  }

  countApplied(origin: string, result: ApplyResult): void {
    if (result.status !== "applied") return;
    this.metrics.appliedRecords.inc({ origin }, result.applied);
    if (result.duplicates > 0) this.metrics.duplicates.inc({ origin }, result.duplicates);
    if (result.conflicts.length === 0) return;
    this.metrics.conflicts.inc(result.conflicts.length);
    void this.auditPump.pump();
    for (const c of result.conflicts) {
      if (c.loserDamaged) this.noteDamagedLoser(c);
      else
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
  walRecords(lsns: readonly number[]): Promise<StoredRecord[]> {
    return walRecords(this, lsns);
  }

  /** Write versions a reconcile established, with an audit entry per changed key. */
  repair(versions: readonly StoredRecord[], requestedBy: string): Promise<string[]> {
    return repairVersions(this, versions, requestedBy);
  }

  /** Write versions a peer's reconcile sent, once checked (limits, policy, this detector's own findings). */
  repairFromPeer(versions: readonly StoredRecord[], sender: string): Promise<string[]> {
    return repairFromPeer(this, versions, sender);
  }

  /** An operator allows `peer`'s shipper to skip LSNs nobody holds, up to `throughLsn`: audited. */
  skipGap(peer: string, throughLsn: number, requestedBy: string): Promise<void> {
    return allowSkip(this, peer, throughLsn, requestedBy);
  }

  /**
   * Run the divergence check now (what `crr verify` asks for). With a full scrub, this
   * region's own records are first checked against its WAL (restoreOwnFromWal), and every
   * stream below its watermark against the peers' copies (restoreStreamsFromPeers).
   */
  async verify(options: { fullScrub?: boolean } = {}): Promise<VerifyReport> {
    if (!options.fullScrub) return this.divergence.scan(options);
    const own = await restoreOwnFromWal(this);
    const peers = await restoreStreamsFromPeers(this);
    const report = await this.divergence.scan(options);
    const scanned = new Set(report.errors.map((e) => e.peer));
    return {
      ...report,
      errors: [...report.errors, ...peers.failed.filter((e) => !scanned.has(e.peer))],
      restored: { fromWal: own.restored, fromPeers: peers.restored },
    };
  }

  append(input: RecordInput, options: AppendOptions = {}): Promise<AppendResult> {
    return this.appendPath.append(input, options);
  }

  /**
   * Append many records at once (one group commit when the WAL is idle), each answered on its
   * own in order: fulfilled with what append() answers, or rejected with why that record was
   * refused. Throws (nothing written) when the region does not admit appends or is overloaded.
   */
  appendMany(
    inputs: readonly RecordInput[],
    options: AppendOptions = {},
  ): Promise<Array<PromiseSettledResult<AppendResult>>> {
    return this.appendPath.appendMany(inputs, options);
  }

  /** Throw now what an append would be refused with (draining, starting, overload), before its body is read. */
  refuseEarly(): void {
    this.appendPath.refuseEarly();
  }

  /** Throw the refusal of an HTTP append made while the event loop lags `delayMs`. */
  refuseUnderPressure(delayMs: number): never {
    return this.appendPath.refuseUnderPressure(delayMs, this.config.append.eventLoopDelayMaxMs);
  }

  /** Records admitted and not yet answered. */
  get appendsPending(): number {
    return this.appendPath.pending;
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    this.refuseWhileCatchingUp();
    return this.store.get(key);
  }

  /**
   * While the store lacks own records it acknowledged (the catch-up waits for peers), what it
   * would answer about winners may be wrong: reads and the divergence routes that export
   * winners are refused (503) instead. Evidence routes (watermarks, streams, WAL) still answer.
   */
  refuseWhileCatchingUp(): void {
    if (this.catchUpPending)
      throw new UnavailableError(
        "catching_up",
        `region ${this.name} is catching its store up with its own acknowledged records (${this.startup.detail}): not answering from it yet`,
        1,
      );
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

  /**
   * A new instance of `peer` spoke (it restarted, or another node of it started): its store
   * may hold less of our stream than it acknowledged (restored from an older copy). The
   * shipper to it, idle as it may be, starts a new session, which reads what the peer holds
   * now and ships again from there (found by review: a caught-up shipper waited for our
   * next append, and reported the peer caught up meanwhile).
   */
  peerRestarted(peer: string): void {
    const shipper = this.shippers.get(peer);
    if (!shipper) return;
    this.log.info({ peer }, "a new instance of the peer spoke; the shipper to it checks what it holds");
    shipper.peerRestarted();
  }

  /** GET /v1/watermarks: what this region applied, its rule and format, its clock, and whom it heard from. */
  watermarksView(): Promise<WatermarksView> {
    return watermarksView(this);
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
    await this.membership?.stop();
    this.divergence.stop();
    this.disk.stop();
    await this.appendPath.inProgress();
    await Promise.all([...this.shippers.values()].map((s) => s.stop()));
    await this.archiver?.stop();
    await Promise.all(this.followers.map((f) => f.stop()));
    await this.wal.close();
    await this.applier.idle();
    await this.auditPump.stop();
    await this.audit.close();
    await this.store.close();
    for (const l of this.links.values()) await l.close();
    this.lock.release();
  }
}
