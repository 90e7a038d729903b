/**
 * What operators watch: `crr status` (and GET /v1/status), readiness (/readyz) and the lag
 * per peer. Every failure shows here the moment it exists: a shipper failing, a startup
 * check waiting or refusing, a full disk, an audit log that cannot write, a region stopped
 * for its own safety.
 */
import type { WatermarksView } from "../link/index.js";
import { formatVersion } from "../protocol/index.js";
import type { PeerShipper } from "../shipper/index.js";
import { ruleName } from "../store/index.js";
import type { ArchiveStatus, FollowerStatus } from "../archive/index.js";
import type { Region } from "./region.js";
import { fellowIncarnations } from "./parts.js";
import { bootstrapRunning } from "./wal-open.js";
import { readWidening } from "./policy-memory.js";

export interface PeerStatus {
  peer: string;
  url: string;
  state: string;
  healthy: boolean;
  ackedLsn: number;
  behindRecords: number;
  lagSeconds: number;
  lastError: string | undefined;
  /** A new instance of the peer spoke and no session has read what it holds since (ackedLsn was its predecessor's). */
  ackInDoubt?: true;
}

export interface NodeStatus {
  nodeId: string;
  incarnation: string;
  self: boolean;
  seenAgoMs: number;
  left: boolean;
  /** The highest LSN of this node's stream the shared store holds (decided in the region). */
  storedLsn: number;
}

export interface Readiness {
  ready: boolean;
  region: string;
  draining: boolean;
  walWritable: boolean;
  storeOpen: boolean;
  /** checking | bootstrapping | admitted | refused: the startup checks. */
  startup: string;
  diskFull: boolean;
  /**
   * Whether the store shared by the region's nodes answers: false from the first heartbeat
   * in it that fails until one succeeds (a node cut off from it cannot append; the other
   * nodes can take its traffic). True with a store of the node's own.
   */
  storeAnswering: boolean;
  /** Why appends are refused, when they are. */
  reason: string | undefined;
}

export interface RegionStatus {
  region: string;
  incarnation: string;
  draining: boolean;
  ready: boolean;
  readiness: Readiness;
  /** Every peer acknowledged everything durable here. */
  caughtUp: boolean;
  wal: ReturnType<Region["wal"]["stats"]>;
  store: { engine: string; records: number; conflicts: number; digest: string };
  /**
   * The region's nodes on a shared store (regions.X.nodes: several): each incarnation, whether
   * it is this one, how long ago it last beat, and whether it left; absent otherwise.
   */
  nodes?: NodeStatus[];
  peers: PeerStatus[];
  watermarks: Record<string, number>;
  /** Peers the last scan could not compare with (their findings are unknown), and why. */
  divergence: {
    findings: number;
    lastScanAt: string | undefined;
    errors: Array<{ peer: string; error: string }>;
  };
  /** The audit log's head (compare with `crr audit verify --expect-head`), and whether writes are failing. */
  audit: {
    file: string;
    seq: number;
    hash: string;
    conflictMark: number;
    failing: string | undefined;
    pending: number;
  };
  startup: { state: string; detail: string };
  /** The S3 archive (when configured): verified LSN, lag, last error. */
  archive?: ArchiveStatus & {
    /** S3 requests of this node (archive and followers) since its start, and per hour. */
    s3: { requests: Record<string, number>; perHour: Record<string, number> | undefined };
  };
  /** Peers' archives followed (`regions.X.via: s3`). */
  following?: FollowerStatus[];
  /** Why the region stopped taking appends for its own safety, if it did. */
  stopped: string | undefined;
  diskFull: string | undefined;
}

/** Per peer: age in seconds of the oldest record it has not acknowledged (0 when caught up). */
export async function lagSeconds(
  shippers: Iterable<PeerShipper>,
  nowMs: number,
): Promise<Array<[string, number]>> {
  return Promise.all(
    [...shippers].map(async (s): Promise<[string, number]> => {
      const oldest = await s.oldestUnackedWallMs();
      return [s.peer, oldest === undefined ? 0 : Math.max(0, (nowMs - oldest) / 1000)];
    }),
  );
}

export function readiness(r: Region): Readiness {
  const walWritable = !r.isClosed && r.wal.writable;
  const storeOpen = !r.isClosed && r.store.isOpen;
  const diskFull = r.disk.full !== undefined;
  const heartbeatsFailed = r.membership?.failures ?? 0;
  const reason = !walWritable
    ? "the WAL cannot write"
    : !storeOpen
      ? "the store is closed"
      : r.isDraining
        ? "draining"
        : r.stopped !== undefined
          ? `stopped: ${r.stopped}`
          : r.startup.state !== "admitted"
            ? `${r.startup.state}: ${r.startup.detail}`
            : diskFull
              ? `disk full: ${r.disk.full}`
              : heartbeatsFailed > 0
                ? `the store shared by the region's nodes does not answer (${heartbeatsFailed} heartbeats in a row failed)`
                : undefined;
  return {
    ready: reason === undefined,
    region: r.name,
    draining: r.isDraining,
    walWritable,
    storeOpen,
    startup: r.startup.state,
    diskFull,
    storeAnswering: heartbeatsFailed === 0,
    reason,
  };
}

/**
 * Every peer acknowledged every durable record (what `crr drain` waits for), and the
 * acknowledgement is of the instance it has now: one a restarted peer's predecessor gave is
 * in doubt until a session read what the new one holds.
 */
export function allCaughtUp(peers: ReadonlyArray<Pick<PeerStatus, "behindRecords" | "ackInDoubt">>): boolean {
  return peers.every((p) => p.behindRecords === 0 && !p.ackInDoubt);
}

export async function regionStatus(r: Region): Promise<RegionStatus> {
  const lag = new Map(await r.lagSeconds());
  const health = new Map(r.healthSnapshot().map((h) => [h.region, h]));
  const durable = r.wal.durableLsn;
  const peers = [...r.shippers.values()].map((s) => ({
    peer: s.peer,
    url: r.config.regions[s.peer]!.url,
    state: s.state,
    healthy: health.get(s.peer)?.healthy ?? false,
    ackedLsn: s.acked,
    behindRecords: Math.max(0, durable - s.acked),
    lagSeconds: lag.get(s.peer) ?? 0,
    lastError: s.lastError,
    ...(s.ackInDoubt ? { ackInDoubt: true as const } : {}),
  }));
  const ready = readiness(r);
  return {
    region: r.name,
    incarnation: r.wal.incarnation,
    draining: r.isDraining,
    ready: ready.ready,
    readiness: ready,
    caughtUp: allCaughtUp(peers),
    wal: r.wal.stats(),
    store: { engine: r.store.description, ...(await r.store.stats()), digest: await r.store.rootDigest() },
    ...(r.store.shared && r.nodeId ? { nodes: await nodesStatus(r) } : {}),
    peers,
    watermarks: (await r.watermarksView()).watermarks,
    divergence: {
      findings: r.divergence.findings.length,
      lastScanAt: r.divergence.last?.at,
      errors: r.divergence.errors,
    },
    audit: {
      file: r.audit.currentFile,
      ...r.audit.current,
      failing: r.auditPump.failing,
      pending: r.auditPump.backlog,
    },
    startup: { state: r.startup.state, detail: r.startup.detail },
    ...(r.archiver ? { archive: { ...r.archiver.status(), s3: r.s3Requests.snapshot(r.nowMs()) } } : {}),
    ...(r.followers.length > 0 ? { following: r.followers.map((f) => f.status()) } : {}),
    stopped: r.stopped,
    diskFull: r.disk.full,
  };
}

/** GET /v1/watermarks: what this region applied, its rule and format, its clock, and whom it heard from. */
export async function watermarksView(r: Region): Promise<WatermarksView> {
  const streams = await r.store.watermarks();
  const newest = new Map<string, (typeof streams)[number]>();
  for (const w of streams) {
    const seen = newest.get(w.origin);
    if (!seen || w.updatedAtMs >= seen.updatedAtMs) newest.set(w.origin, w);
  }
  const widened = await readWidening(r.store);
  return {
    region: r.name,
    incarnation: r.wal.incarnation,
    watermarks: Object.fromEntries([...newest].map(([o, w]) => [o, w.lsn])),
    streams,
    rule: ruleName(r.store.rule),
    formatVersion,
    clock: r.clock.peek(),
    seen: r.incarnations.recent(r.nowMs()),
    boot: r.boot,
    storeId: await r.storeId(),
    ...((await bootstrapRunning(r.store)) ? { bootstrapping: true } : {}),
    ...(widened ? { policyWidened: widened } : {}),
    ...(r.nodeId
      ? { incarnations: [r.wal.incarnation, ...(await fellowIncarnations(r.store, r.nodeId))] }
      : {}),
  };
}

async function nodesStatus(r: Region): Promise<NodeStatus[]> {
  const stored = new Map(
    (await r.store.watermarks()).filter((w) => w.origin === r.name).map((w) => [w.incarnation, w.lsn]),
  );
  return (await r.store.shared!.regionNodes()).map((n) => ({
    nodeId: n.nodeId,
    incarnation: n.incarnation,
    self: n.incarnation === r.wal.incarnation,
    seenAgoMs: n.seenAgoMs,
    left: n.leftAtMs !== undefined,
    storedLsn: stored.get(n.incarnation) ?? 0,
  }));
}
