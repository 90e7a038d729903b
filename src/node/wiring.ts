/**
 * The parts a region builds from its configuration once its store, WAL and links are
 * open: the reader that applies peers' batches, a supervised shipper per peer, and the
 * divergence monitor, the S3 archive when configured. Each reports through the region's
 * metrics, log and audit pump.
 */
import path from "node:path";
import {
  ArchiveFollower,
  Archiver,
  AuditArchiver,
  audienceOf,
  s3ArchiveStore,
  seedFromArchive,
  type ArchiveSeed,
  type ArchiveStore,
} from "../archive/index.js";
import type { AuditAppend } from "../audit/index.js";
import { DivergenceDetector, DivergenceMonitor, type Finding } from "../divergence/index.js";
import { formatVersion } from "../protocol/index.js";
import { Reader } from "../reader/index.js";
import { PeerShipper } from "../shipper/index.js";
import { ruleName } from "../store/index.js";
import type { FileOps } from "../util/file-ops.js";
import type { Region } from "./region.js";
import { shippedWal } from "./applied-wal.js";
import { fellowIncarnations } from "./parts.js";
import { readWidening } from "./policy-memory.js";

export function readerOf(r: Region): Reader {
  const c = r.config;
  return new Reader({
    self: r.name,
    regions: Object.keys(c.regions),
    store: r.store,
    clock: r.clock,
    policy: r.policy,
    rule: `${ruleName(r.store.rule)}/${formatVersion}`,
    incarnations: r.incarnations,
    nowMs: r.nowMs,
    log: r.log,
    onApplied: (batch, result) => {
      r.countApplied(batch.origin, result);
      const nowMs = r.nowMs();
      const latency = r.metrics.commitToApplySeconds.labels({ origin: batch.origin });
      let carried = false; // whether the batch held the record at its new watermark (one pass)
      for (const rec of batch.records) {
        latency.observe(Math.max(0, nowMs - rec.hlc.wallMs) / 1000);
        if (rec.lsn === result.watermark) carried = true;
      }
      r.events.emit("applied", batch.origin, batch.incarnation, result.watermark, carried);
    },
    onSkipped: (origin, incarnation, skipped) =>
      r.auditPump.record({
        kind: "gap-skipped",
        origin,
        incarnation,
        from: skipped.from,
        to: skipped.to,
        by: origin,
      }),
    onRefused: (reason) => r.metrics.refusals.inc({ reason }),
    onError: (err) => r.disk.note(err),
  });
}

export function shippersOf(r: Region, fileOps: FileOps | undefined): Map<string, PeerShipper> {
  return new Map(r.policy.peers.map((peer) => [peer, shipperTo(r, peer, fileOps)]));
}

/** This region's own records of `incarnation` from the store (when the WAL no longer holds them). */
function ownFromStore(r: Region) {
  return {
    range: async (incarnation: string, from: number, to: number, limit: number) =>
      (await r.store.streamVersions(r.name, incarnation, from, to, limit))
        .filter((v) => v.intact)
        .map((v) => ({ ...v, flags: 0 })),
    // Not a fellow node's live stream on a shared store: that node ships its own.
    streams: async () => {
      const fellows = await fellowIncarnations(r.store, r.nodeId);
      return (await r.store.watermarks())
        .filter((w) => w.origin === r.name && !fellows.has(w.incarnation))
        .map((w) => ({ incarnation: w.incarnation, lsn: w.lsn }));
    },
  };
}

function shipperTo(r: Region, peer: string, fileOps: FileOps | undefined): PeerShipper {
  const c = r.config;
  const tenants = r.policy.filtersTenants
    ? c.crr.policies.filter((p) => p.targetRegions.includes(peer)).map((p) => p.tenantID)
    : undefined;
  const s = new PeerShipper({
    region: r.name,
    link: r.links.get(peer)!,
    // Several nodes on one store: ship only what the store holds (appliedOnly's comment).
    wal: shippedWal(r),
    own: ownFromStore(r),
    sendsTenant: r.policy.filtersTenants ? (tenant) => r.policy.sendsTo(peer, tenant) : undefined,
    tenants,
    rule: ruleName(r.store.rule),
    formatVersion,
    ...c.shipper,
    stateFile: path.join(c.dataDir, "shipper", `${peer}.json`),
    fileOps,
    log: r.log,
    runtime: r.runtime,
    reportLost: (incarnation, ranges) =>
      r.auditPump.record({ kind: "records-lost", origin: r.name, incarnation, peer, ranges }),
  });
  s.on("ack", (_lsn, records) => r.metrics.shippedRecords.inc({ peer }, records));
  s.on("failure", (reason) => {
    r.metrics.shipErrors.inc({ peer, reason });
    if (reason === "duplicate_region")
      r.stop(`peer ${peer} refuses this node: another node serves region ${r.name}`);
  });
  s.on("peerAhead", (peerLsn, durable) =>
    r.stop(
      `peer ${peer} holds LSN ${peerLsn} of this incarnation but the WAL ends at ${durable}: an LSN would be issued twice`,
    ),
  );
  s.on("fallback", (err) =>
    r.log.warn({ peer, err: err.message }, "WAL cannot serve this range; shipping it from the store"),
  );
  return s;
}

export function monitorOf(r: Region): DivergenceMonitor {
  const c = r.config;
  return new DivergenceMonitor({
    detector: new DivergenceDetector({
      region: c.region,
      incarnation: () => r.wal.incarnation,
      fellows: () => fellowIncarnations(r.store, r.nodeId),
      severalNodes: {
        regions: new Set(Object.keys(c.regions).filter((name) => c.regions[name]?.nodes === "several")),
        heard: () => r.incarnations.recent(r.runtime.nowMs()),
      },
      selectivePolicies: c.crr.replicationMode === "selective" ? c.crr.policies : undefined,
      policyWidened: () => readWidening(r.store),
      store: r.store,
      remote: (peer) => r.links.get(peer)!,
      inFlightMsMax: c.divergence.inFlightMsMax,
      maxSkewMs: c.hlc.maxSkewMs,
      runtime: r.runtime,
      log: r.log,
    }),
    store: r.store,
    peers: r.policy.peers,
    intervalMs: c.divergence.intervalMs,
    scrubIntervalMs: c.divergence.scrubIntervalMs,
    scrubBucketsPerTick: c.divergence.scrubBucketsPerTick,
    log: r.log,
    runtime: r.runtime,
    onScan: (report, seconds) => {
      r.metrics.divergenceScans.inc();
      r.metrics.divergenceScanSeconds.observe(seconds);
      r.metrics.divergenceCount.set(report.findings.length);
    },
    onNewFinding: async (f) => void r.auditPump.record(findingEntry(f)),
    onScanError: (peer) => r.metrics.divergenceScanErrors.inc({ peer }),
  });
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

/** The S3 archive of this region's WAL, when `archive.s3` is configured. */
function archiveStoreOf(r: Region): ArchiveStore | undefined {
  const a = r.config.archive;
  if (!a.s3) return undefined;
  return s3ArchiveStore({
    s3: a.s3,
    attempts: a.requestAttempts,
    requestTimeoutMs: a.requestTimeoutMs,
    runtime: r.runtime,
    onRequest: (op, outcome, bytes) => {
      r.s3Requests.add(op);
      r.metrics.archiveRequests.inc({ op, outcome });
      if (bytes > 0) r.metrics.archiveBytes.inc({ op }, bytes);
    },
  });
}

/** A follower of each peer's archive reached `via: s3`. */
export function followersOf(r: Region): ArchiveFollower[] {
  const a = r.config.archive;
  return Object.entries(r.config.regions)
    .filter(([name, peer]) => name !== r.name && peer.via === "s3" && a.s3)
    .map(
      ([origin]) =>
        new ArchiveFollower({
          origin,
          self: r.name,
          store: archiveStoreOf(r)!,
          prefix: a.s3!.prefix.replace(/^\/+|\/+$/g, ""),
          reader: r.reader,
          keys: r.credentials.ring,
          objectBytesMax: a.objectBytesMax,
          applied: (origin, incarnation) => r.store.watermark(origin, incarnation),
          pollMs: a.pollMs,
          runtime: r.runtime,
          log: r.log,
          onError: () => r.metrics.archiveErrors.inc({ stage: "follow" }),
        }),
    );
}

export function archiverOf(r: Region): Archiver | undefined {
  const a = r.config.archive;
  const store = archiveStoreOf(r);
  if (!a.s3 || !store) return undefined;
  const where = `${a.s3.endpoint ?? `s3.${a.s3.region}`} ${a.s3.bucket} ${a.s3.prefix}`;
  const keys = { signer: r.credentials.signer, keys: r.credentials.ring, objectBytesMax: a.objectBytesMax };
  return new Archiver({
    wal: r.wal,
    region: r.name,
    store,
    audit: new AuditArchiver({
      region: r.name,
      store,
      prefix: a.s3.prefix,
      where,
      auditDir: path.join(r.config.dataDir, "audit"),
      currentFile: () => r.audit.currentFile,
      lockDays: a.auditLockDays,
      ...keys,
      dataDir: r.config.dataDir,
      runtime: r.runtime,
    }),
    ...keys,
    verify: { sampleEvery: a.verify === "sampled" ? a.verifySampleEvery : 1 },
    audience: audienceOf(r.config, r.runtime.nowMs()),
    prefix: a.s3.prefix,
    where,
    intervalMs: a.intervalMs,
    dataDir: r.config.dataDir,
    runtime: r.runtime,
    log: r.log,
    onError: (stage) => r.metrics.archiveErrors.inc({ stage }),
  });
}

/** With `archive.bootstrap`: how an empty region fills its store from the archive before asking its peers. */
export function archiveSeedOf(r: Region, always = false): (() => Promise<ArchiveSeed>) | undefined {
  const a = r.config.archive;
  if (!a.s3 || (!a.bootstrap && !always)) return undefined;
  const s3 = a.s3;
  return async () => {
    const store = archiveStoreOf(r)!;
    try {
      // Another region's objects only when its published policy sends this one everything
      // (an object holds every tenant its origin wrote): the peers give the rest, withholding
      // what is not for us.
      // Another region's stream only when its audience sends this one everything (seedFromArchive).
      return await seedFromArchive({
        store,
        prefix: s3.prefix,
        origins: Object.keys(r.config.regions),
        into: r.store,
        policy: r.policy,
        self: r.name,
        keys: r.credentials.ring,
        objectBytesMax: a.objectBytesMax,
      });
    } finally {
      store.close();
    }
  };
}
