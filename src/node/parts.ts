/**
 * Opening a region's parts in order, before anything runs: the data directory's lock, the
 * store, a PeerLink per other region, the evidence recovery uses (store, saved acks,
 * peers), the WAL recovered with it, and the audit log. What was opened is closed again
 * when a later step fails.
 */
import fs from "node:fs";
import path from "node:path";
import { ArchiveEvidence, archiveCursorLsn, s3ArchiveStore, type ArchiveStore } from "../archive/index.js";
import { AuditLog } from "../audit/index.js";
import { HybridClock } from "../clock/index.js";
import { credentialsOf, type Credentials, type NodeConfig } from "../config/index.js";
import type { PeerLink } from "../link/index.js";
import type { Logger } from "../log.js";
import type { Runtime } from "../runtime/index.js";
import { PostgresStore, SqliteStore, ruleName, type DedupStore, type MergeRule } from "../store/index.js";
import type { FileOps } from "../util/file-ops.js";
import { Wal } from "../wal/index.js";
import { Evidence } from "./evidence.js";
import type { FellowMemory } from "./fellow-memory.js";
import { forgottenAtOpen, readFellowMemory } from "./fellow-wait.js";
import { IncarnationTracker } from "./incarnations.js";
import { httpLinks, otherRegions, type LinkFactory } from "./links.js";
import { lockDataDir, type DataDirLock } from "./lock.js";
import { RegionMetrics } from "./metrics.js";
import { TlsFiles } from "./tls.js";
import type { Region } from "./region.js";
import { nodeIdOf } from "./node-id.js";
import { notePolicy } from "./policy-memory.js";
import { StartupRefusedError } from "./startup.js";
import { bootstrapRunning, needsBootstrap, openRegionWal } from "./wal-open.js";

/** Store hooks for the simulator. */
export interface StoreHooks {
  /** SQLite: run a checkpoint thread (default true). */
  checkpointer?: boolean;
  /** SQLite: called after each synced commit (the simulator keeps what a power loss leaves). */
  onSyncedCommit?: (store: SqliteStore) => void;
  /** PostgreSQL: the open (connect, migrate) as the simulator waits for it. */
  opening?: (open: Promise<DedupStore>) => Promise<DedupStore>;
  /** The store the region uses, given the one opened (the simulator waits for PostgreSQL's answers). */
  wrap?: (store: DedupStore) => DedupStore;
}

export interface PartsOptions {
  log: Logger;
  runtime: Runtime;
  fileOps: FileOps | undefined;
  store: StoreHooks | undefined;
  links: LinkFactory | undefined;
  acceptWalLoss: boolean;
  /** The region once built (metrics read it lazily). */
  region: () => Region | undefined;
}

export interface Parts {
  wal: Wal;
  store: DedupStore;
  clock: HybridClock;
  metrics: RegionMetrics;
  lock: DataDirLock;
  audit: AuditLog;
  links: Map<string, PeerLink>;
  evidence: Evidence;
  incarnations: IncarnationTracker;
  /** This process's boot id: peers tell two processes serving one region apart by it. */
  boot: string;
  /** The store held nothing at open: the region must bootstrap from its peers. */
  empty: boolean;
  /** WAL streams given up with --accept-wal-loss, to audit once the audit pump runs. */
  abandoned: Array<Record<string, unknown>>;
  credentials: Credentials;
  /** The TLS material when `listen.tls` is set. */
  tls: TlsFiles | undefined;
  /** This data directory's id when the store is shared by the region's nodes (`node-id`). */
  nodeId: string | undefined;
  /** What this data directory remembers of its region's nodes (`fellows.json`), if anything. */
  memory: FellowMemory | undefined;
  /** What the shared store had forgotten of that memory at open (lost, or restored from a backup). */
  forgotten: string[];
}

/** A node that left its region (crr leave) never serves it again from that data directory. */
async function refuseIfLeft(
  store: Pick<DedupStore, "shared">,
  nodeId: string,
  config: NodeConfig,
): Promise<void> {
  const left = (await store.shared!.regionNodes()).find(
    (n) => n.nodeId === nodeId && n.leftAtMs !== undefined,
  );
  if (left)
    throw new StartupRefusedError(
      `this data directory's node (node-id ${nodeId}) left region ${config.region} (crr leave, ${new Date(left.leftAtMs!).toISOString()}); nothing was changed. To serve the region again, start a node with a new, empty data directory`,
    );
}

/** The incarnations of the region's other nodes, live only or also those marked left (none without a shared store). */
async function othersIncarnations(
  store: Pick<DedupStore, "shared">,
  nodeId: string | undefined,
  withLeft: boolean,
): Promise<Set<string>> {
  if (!store.shared || !nodeId) return new Set();
  const nodes = await store.shared.regionNodes();
  return new Set(
    nodes
      .filter((n) => n.nodeId !== nodeId && (withLeft || n.leftAtMs === undefined))
      .map((n) => n.incarnation),
  );
}

/** The incarnations of the region's other live nodes: their streams are theirs to ship. */
export function fellowIncarnations(store: Pick<DedupStore, "shared">, nodeId: string | undefined) {
  return othersIncarnations(store, nodeId, false);
}

/**
 * Every incarnation another node of the region ever had, live or marked left: none of them is
 * this node's WAL's to answer for (a node that replaces a left one starts on a new, empty
 * data directory while the store still holds the left node's stream).
 */
export function otherNodesIncarnations(store: Pick<DedupStore, "shared">, nodeId: string | undefined) {
  return othersIncarnations(store, nodeId, true);
}

export function mergeRuleOf(config: NodeConfig): MergeRule {
  const rule = config.crr.conflictRule;
  return rule === "primary-wins" ? { kind: rule, priority: config.crr.regionPriority } : { kind: rule };
}

/** Open every part; on failure close what was opened (and release the lock) and throw. */
export async function openParts(config: NodeConfig, o: PartsOptions): Promise<Parts> {
  const boot = o.runtime.randomBytes(8).toString("hex");
  const lock = lockDataDir(config.dataDir, boot, o.runtime.nowMs());
  if (lock.tookOver)
    o.log.warn({ previous: lock.tookOver }, "took over the lock of a node that is no longer running");
  const opened: { store?: DedupStore; wal?: Wal; links?: Map<string, PeerLink> } = {};
  try {
    return await openInOrder(config, o, boot, lock, opened);
  } catch (err) {
    await opened.wal?.close().catch(() => undefined);
    await opened.store?.close().catch(() => undefined);
    for (const l of opened.links?.values() ?? []) await l.close();
    lock.release();
    throw err;
  }
}

async function openInOrder(
  config: NodeConfig,
  o: PartsOptions,
  boot: string,
  lock: DataDirLock,
  opened: { store?: DedupStore; wal?: Wal; links?: Map<string, PeerLink> },
): Promise<Parts> {
  const { log, runtime } = o;
  const nowMs = () => runtime.nowMs();
  fs.mkdirSync(path.join(config.dataDir, "shipper"), { recursive: true });
  const clock = new HybridClock({ wallClock: nowMs, maxSkewMs: config.hlc.maxSkewMs });
  const metrics = new RegionMetrics(o.region);
  const raw = (opened.store = await openStore(config, o, nowMs));
  const store = (opened.store = o.store?.wrap ? o.store.wrap(raw) : raw);
  const incarnations = new IncarnationTracker(
    3 * config.health.probeIntervalMs,
    (region) => config.regions[region]?.nodes === "several",
  );
  const credentials = credentialsOf(config);
  const tls = config.listen.tls ? new TlsFiles(config.listen.tls, log) : undefined;
  const makeLink =
    o.links ??
    httpLinks(config, runtime, tls?.client, (peer, bytes, wireBytes) => {
      metrics.shippedBytes.inc({ peer, form: "batch" }, bytes);
      metrics.shippedBytes.inc({ peer, form: "wire" }, wireBytes);
    });
  const identity = {
    incarnation: () => opened.wal?.incarnation,
    boot,
    rule: ruleName(store.rule),
    credentials,
  };
  const links = (opened.links = new Map(otherRegions(config).map((r) => [r, makeLink(r, identity)])));
  const evidence = new Evidence({
    region: config.region,
    store,
    shipperDir: path.join(config.dataDir, "shipper"),
    links: [...links.values()],
    peerWaitMs: config.recovery.peerWaitMs,
    runtime,
    log,
    archive: archiveEvidenceOf(config, credentials, runtime),
  });
  let empty = await needsBootstrap(store);
  await ensureStoreId(store, boot);
  await notePolicy(store, config, runtime.nowMs());
  // Several nodes of this region on one store: this data directory's id, and the fellow nodes' streams.
  const several = store.shared !== undefined && config.regions[config.region]?.nodes === "several";
  const nodeId = several ? await nodeIdOf(config.dataDir, runtime, o.fileOps) : undefined;
  if (nodeId) await refuseIfLeft(store, nodeId, config);
  // Read before this node joins or replays its WAL: what the store forgot of the region.
  const memory = nodeId ? readFellowMemory(config.dataDir) : undefined;
  const forgotten = await forgottenAtOpen(store, memory, config.region);
  const others = await otherNodesIncarnations(store, nodeId);
  const abandoned: Array<Record<string, unknown>> = [];
  const wal = (opened.wal = await openRegionWal({
    region: config.region,
    dir: path.join(config.dataDir, "wal"),
    store,
    clock,
    acceptWalLoss: o.acceptWalLoss,
    log,
    open: () => openWal(config, clock, { runtime, fileOps: o.fileOps }, metrics, evidence, log),
    onAbandoned: (entry) => abandoned.push(entry),
    isOwn: (incarnation) => !others.has(incarnation),
    nowMs: runtime.nowMs,
    // One node on its store, SQLite or PostgreSQL alike (a PostgreSQL store always offers
    // sharing: keyed on it, a single node's lost WAL went unchecked, found by review).
    bootstrapAfterLoss: !several,
  }));
  // An accepted WAL loss marked the store bootstrapping (wal-open.ts): records the abandoned
  // WAL's damaged frames held and the store lacked (commits a power loss undid) may be held
  // by peers, so the region copies what the mesh decided before it answers, as a region that
  // lost its state does (the simulator, seed 306: salvaging the intact frames alone lost two
  // acknowledged records a peer held, then skipped them for the others).
  empty ||= await bootstrapRunning(store);
  if (nodeId) await store.shared!.joinRegion({ incarnation: wal.incarnation, nodeId, boot });
  const audit = AuditLog.open({
    dir: path.join(config.dataDir, "audit"),
    region: config.region,
    fileBytesMax: config.audit.fileBytesMax,
    runtime,
    onTornTail: (file, bytes) =>
      log.warn({ file, bytes }, "audit log: cut an unfinished last line (never acknowledged)"),
    onWritten: (kind) => metrics.auditEntries.inc({ kind }),
  });
  // A store lost or rolled back numbers its conflicts from where it restarted: above what the log holds.
  await store.reserveConflictIds(audit.current.conflictMark);
  return {
    ...{ wal, store, clock, metrics, lock, audit, links, evidence, incarnations, boot, empty, abandoned },
    ...{ credentials, tls, nodeId, memory, forgotten },
  };
}

/** The meta name of the store's identity (status.ts): a lost, rebuilt or new store gets a new one. */
export const storeIdMeta = "store_id";

/** Give a store without an identity one, kept in the store itself: the boot of the process that found it without. */
async function ensureStoreId(store: DedupStore, boot: string): Promise<void> {
  if ((await store.getMeta(storeIdMeta)) === undefined) await store.setMeta(storeIdMeta, boot);
}

/** The region's dedup store as configured: SQLite in the data directory, or PostgreSQL at store.url. */
async function openStore(config: NodeConfig, o: PartsOptions, nowMs: () => number): Promise<DedupStore> {
  if (config.store.kind === "postgres") {
    const opening = PostgresStore.open({
      url: config.store.url!,
      rule: mergeRuleOf(config),
      poolSize: config.store.poolSize,
      nowMs,
      onPoolError: (message) =>
        o.log.error({ message }, "PostgreSQL: an idle connection failed (the pool replaces it)"),
    });
    const pg = await (o.store?.opening ? o.store.opening(opening) : opening);
    o.log.info({ store: pg.description }, "dedup store: PostgreSQL");
    return pg;
  }
  const store: SqliteStore = new SqliteStore({
    path: path.join(config.dataDir, "store.sqlite"),
    rule: mergeRuleOf(config),
    nowMs,
    checkpointer: o.store?.checkpointer,
    checkpointIntervalMs: config.store.checkpointIntervalMs,
    fileOps: o.fileOps,
    onSyncedCommit: o.store?.onSyncedCommit && (() => o.store!.onSyncedCommit!(store)),
    onCheckpointError: (message) => o.log.error({ message }, "SQLite checkpoint failed"),
  });
  return store;
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

/** With an archive: recovery also asks it (a client per question: recovery asks rarely). */
function archiveEvidenceOf(
  config: NodeConfig,
  credentials: Credentials,
  runtime: Runtime,
): Pick<ArchiveEvidence, "highestLsn" | "records" | "cursor" | "refused"> | undefined {
  const a = config.archive;
  if (!a.s3) return undefined;
  const s3 = a.s3;
  const evidenceOf = (store: ArchiveStore) =>
    new ArchiveEvidence({
      store,
      prefix: s3.prefix,
      region: config.region,
      keys: credentials.ring,
      objectBytesMax: a.objectBytesMax,
      cursorFile: path.join(config.dataDir, "archive.json"),
    });
  const refused: string[] = [];
  const ask = async <T>(question: (e: ArchiveEvidence) => Promise<T>): Promise<T> => {
    const store = s3ArchiveStore({
      s3,
      attempts: a.requestAttempts,
      requestTimeoutMs: a.requestTimeoutMs,
      runtime,
      onRequest: () => undefined,
    });
    const e = evidenceOf(store);
    try {
      return await question(e);
    } finally {
      refused.push(...e.refused);
      store.close();
    }
  };
  return {
    highestLsn: (incarnation) => ask((e) => e.highestLsn(incarnation)),
    records: (incarnation, fromLsn, toLsn) => ask((e) => e.records(incarnation, fromLsn, toLsn)),
    cursor: (incarnation) => archiveCursorLsn(path.join(config.dataDir, "archive.json"), incarnation),
    refused,
  };
}
