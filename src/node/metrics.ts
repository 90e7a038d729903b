/**
 * Prometheus metrics of one region (prom-client, a registry per Region so several regions in
 * one process never share counters). Names are part of the outside contract.
 */
import client from "prom-client";

/** What the metrics read from the region when scraped. */
export interface MetricsSource {
  lagSeconds(): Promise<Array<[peer: string, seconds: number]>>;
  watermarksView(): Promise<{ watermarks: Record<string, number> }>;
  wal: { stats(): { bytes: number; segments: number; durableLsn: number } };
  readonly isDraining: boolean;
  clock: { skewRejections: number };
  readiness(): { ready: boolean };
  auditPump: { backlog: number };
  readonly appendsPending: number;
  /** Each peer's acknowledged LSN of this region's stream, and when it last acknowledged (ms; 0: never). */
  peerAcks(): Array<{ peer: string; ackedLsn: number; lastAckMs: number }>;
  /** The S3 archive, when one is configured. */
  readonly archiver?: { status(): { verifiedLsn: number; lagSeconds: number } };
}

/**
 * The process's own metrics (CPU, memory, event loop, GC), collected once per process:
 * prom-client's collectors observe the process for good (a PerformanceObserver never
 * disconnected), so collecting them per region kept every closed region reachable (an
 * embedded service opening regions again and again grew without bound; found by the
 * simulator's memory). Every region's /metrics shows them with its own.
 */
let processRegistry: client.Registry | undefined;
function processMetrics(): client.Registry {
  if (!processRegistry) {
    processRegistry = new client.Registry();
    client.collectDefaultMetrics({ register: processRegistry, prefix: "crr_" });
    // Gauges named like counters (promtool check metrics flags them): the same counts are
    // crr_nodejs_active_{handles,requests,resources} by type.
    for (const what of ["handles", "requests", "resources"])
      processRegistry.removeSingleMetric(`crr_nodejs_active_${what}_total`);
  }
  return processRegistry;
}

export class RegionMetrics {
  readonly registry = new client.Registry();

  /** The exposition text for /metrics: this region's metrics, then the process's. */
  async text(): Promise<string> {
    return `${await this.registry.metrics()}${await processMetrics().metrics()}`;
  }
  readonly walFsyncSeconds = new client.Histogram({
    name: "crr_wal_fsync_seconds",
    help: "Duration of each WAL fdatasync",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly shippedRecords = new client.Counter({
    name: "crr_shipped_records_total",
    help: "Records acknowledged by each peer",
    labelNames: ["peer"],
    registers: [this.registry],
  });
  readonly shippedBytes = new client.Counter({
    name: "crr_shipped_bytes_total",
    help: "Bytes of batches sent to each peer: as encoded (form batch), and on the wire (form wire, after shipper.compression's coding)",
    labelNames: ["peer", "form"],
    registers: [this.registry],
  });
  readonly shipErrors = new client.Counter({
    name: "crr_ship_errors_total",
    help: "Failed sends to a peer, by reason",
    labelNames: ["peer", "reason"],
    registers: [this.registry],
  });
  readonly appliedRecords = new client.Counter({
    name: "crr_applied_records_total",
    help: "Records applied to this region's store, by origin region",
    labelNames: ["origin"],
    registers: [this.registry],
  });
  readonly appendsShed = new client.Counter({
    name: "crr_appends_shed_total",
    help: "Records refused at once (429): reason pending (append.pendingMax records were pending) queue_delay (the oldest pending append waited beyond append.queueDelayMaxMs) or event_loop (the event loop lagged beyond append.eventLoopDelayMaxMs)",
    labelNames: ["reason"],
    registers: [this.registry],
  });

  readonly duplicates = new client.Counter({
    name: "crr_duplicates_total",
    help: "Records or appends that were already known, by origin region",
    labelNames: ["origin"],
    registers: [this.registry],
  });
  readonly conflicts = new client.Counter({
    name: "crr_conflicts_total",
    help: "Versions that lost to another version of the same key (kept, not dropped)",
    registers: [this.registry],
  });
  readonly divergenceCount = new client.Gauge({
    name: "crr_divergence_count",
    help: "Keys the divergence detector currently reports as divergent or missing",
    registers: [this.registry],
  });
  readonly divergenceScans = new client.Counter({
    name: "crr_divergence_scans_total",
    help: "Divergence scans run (against all peers)",
    registers: [this.registry],
  });
  readonly divergenceScanSeconds = new client.Histogram({
    name: "crr_divergence_scan_seconds",
    help: "Duration of one divergence scan",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly regionHealth = new client.Gauge({
    name: "crr_region_health_status",
    help: "1 if the region's node answers /healthz, else 0",
    labelNames: ["region"],
    registers: [this.registry],
  });
  readonly refusals = new client.Counter({
    name: "crr_reader_refusals_total",
    help: "Batches the peer API refused, by reason",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly peerRequests = new client.Gauge({
    name: "crr_peer_requests",
    help: "Authenticated peer requests being served (state=active, at most server.peerRequestsMax) or waiting for a slot, body unread (state=waiting)",
    labelNames: ["state"],
    registers: [this.registry],
  });
  readonly archiveRequests = new client.Counter({
    name: "crr_archive_requests_total",
    help: "S3 requests of the archive, by operation (put, get, list) and outcome (ok, error)",
    labelNames: ["op", "outcome"],
    registers: [this.registry],
  });
  readonly archiveBytes = new client.Counter({
    name: "crr_archive_bytes_total",
    help: "Bytes the archive moved, by operation (put: uploaded, get: read back to verify)",
    labelNames: ["op"],
    registers: [this.registry],
  });
  readonly archiveErrors = new client.Counter({
    name: "crr_archive_errors_total",
    help: "Archive passes that failed (the cursor stays; the next pass tries again), by stage",
    labelNames: ["stage"],
    registers: [this.registry],
  });
  readonly walBytesMax = new client.Gauge({
    name: "crr_wal_bytes_max",
    help: "wal.bytesMax: the WAL size beyond which crr_wal_over_limit is 1 (a backlog alert compares crr_wal_bytes with it)",
    registers: [this.registry],
  });
  readonly walOverLimit = new client.Gauge({
    name: "crr_wal_over_limit",
    help: "1 while the WAL is larger than wal.bytesMax because a peer has not acknowledged (nothing is deleted)",
    registers: [this.registry],
  });

  readonly divergenceScanErrors = new client.Counter({
    name: "crr_divergence_scan_errors_total",
    help: "Divergence scans that could not compare with a peer (its findings are unknown meanwhile)",
    labelNames: ["peer"],
    registers: [this.registry],
  });
  readonly retentionRuns = new client.Counter({
    name: "crr_retention_runs_total",
    help: "WAL retention passes (each removes whole segments nobody needs any more)",
    registers: [this.registry],
  });
  readonly retentionErrors = new client.Counter({
    name: "crr_retention_errors_total",
    help: "WAL retention runs that failed (segments stay; the WAL grows)",
    registers: [this.registry],
  });
  readonly diskFull = new client.Gauge({
    name: "crr_disk_full",
    help: "1 while a write failed for lack of space and no probe has succeeded since (appends refused, not ready)",
    registers: [this.registry],
  });
  readonly auditErrors = new client.Counter({
    name: "crr_audit_errors_total",
    help: "Audit log writes that failed (each is retried until it succeeds)",
    registers: [this.registry],
  });
  readonly auditEntries = new client.Counter({
    name: "crr_audit_entries_total",
    help: "Audit entries written and synced, by kind; records-lost, gap-skipped and wal-abandoned are acknowledged records given up (for want of any copy, or by the operator's command)",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly heartbeatErrors = new client.Counter({
    name: "crr_heartbeat_errors_total",
    help: "Heartbeats of this node in the shared store that failed (several nodes per region); a node not seen for 10 heartbeats may be declared lost",
    registers: [this.registry],
  });
  readonly commitToApplySeconds = new client.Histogram({
    name: "crr_commit_to_apply_seconds",
    help: "From a record's commit in its origin (its HLC wall time) to its apply here, per origin region (clock offset between regions included)",
    labelNames: ["origin"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly stopped = new client.Gauge({
    name: "crr_appends_stopped",
    help: "1 when the region stopped taking appends for its own safety (an LSN would be issued twice, or another node serves this region)",
    registers: [this.registry],
  });

  constructor(region: () => MetricsSource | undefined) {
    processMetrics();
    const collectors = {
      lagSeconds: async () => (await region()?.lagSeconds()) ?? [],
      watermarks: async () => (region() ? (await region()!.watermarksView()).watermarks : {}),
      wal: () => region()?.wal.stats() ?? { bytes: 0, segments: 0, durableLsn: 0 },
      draining: () => region()?.isDraining ?? false,
      skewRejections: () => region()?.clock.skewRejections ?? 0,
      ready: () => region()?.readiness().ready ?? false,
      auditPending: () => region()?.auditPump.backlog ?? 0,
      appendsPending: () => region()?.appendsPending ?? 0,
      archive: () => region()?.archiver?.status(),
      peerAcks: () => region()?.peerAcks() ?? [],
    };
    new client.Gauge({
      name: "crr_peer_acked_lsn",
      help: "Highest LSN of this region's current stream the peer acknowledged (stalled: it stops while crr_wal_durable_lsn moves)",
      labelNames: ["peer"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const a of collectors.peerAcks()) this.set({ peer: a.peer }, a.ackedLsn);
      },
    });
    new client.Gauge({
      name: "crr_peer_last_ack_timestamp_seconds",
      help: "Unix time of the peer's last acknowledgment of a batch (absent before the first): a stall shows as time() minus this",
      labelNames: ["peer"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const a of collectors.peerAcks())
          if (a.lastAckMs > 0) this.set({ peer: a.peer }, a.lastAckMs / 1000);
      },
    });
    new client.Gauge({
      name: "crr_archive_lag_seconds",
      help: "Age of the oldest durable record whose archived copy is not verified yet; 0 when the archive has everything (absent without an archive)",
      registers: [this.registry],
      collect() {
        const a = collectors.archive();
        if (a) this.set(a.lagSeconds);
      },
    });
    new client.Gauge({
      name: "crr_archive_verified_lsn",
      help: "Highest LSN of this region's stream whose archived copy was read back and verified (retention keeps everything above it)",
      registers: [this.registry],
      collect() {
        const a = collectors.archive();
        if (a) this.set(a.verifiedLsn);
      },
    });
    new client.Gauge({
      name: "crr_appends_pending",
      help: "Records admitted and not yet answered (bounded by append.pendingMax)",
      registers: [this.registry],
      collect() {
        this.set(collectors.appendsPending());
      },
    });
    new client.Gauge({
      name: "crr_ready",
      help: "1 when the region admits appends (what /readyz answers)",
      registers: [this.registry],
      collect() {
        this.set(collectors.ready() ? 1 : 0);
      },
    });
    new client.Gauge({
      name: "crr_audit_pending",
      help: "Audit entries waiting to be written (a failing audit log)",
      registers: [this.registry],
      collect() {
        this.set(collectors.auditPending());
      },
    });
    new client.Gauge({
      name: "crr_lag_seconds",
      help: "Age of the oldest record not yet acknowledged by the peer; 0 when caught up",
      labelNames: ["peer"],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [peer, seconds] of await collectors.lagSeconds()) this.set({ peer }, seconds);
      },
    });
    new client.Gauge({
      name: "crr_watermark_lsn",
      help: "Highest LSN applied in this region, per origin region",
      labelNames: ["origin"],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [origin, lsn] of Object.entries(await collectors.watermarks())) this.set({ origin }, lsn);
      },
    });
    new client.Gauge({
      name: "crr_wal_bytes",
      help: "Bytes of WAL segments on disk",
      registers: [this.registry],
      collect() {
        this.set(collectors.wal().bytes);
      },
    });
    new client.Gauge({
      name: "crr_wal_segments",
      help: "WAL segment files on disk",
      registers: [this.registry],
      collect() {
        this.set(collectors.wal().segments);
      },
    });
    new client.Gauge({
      name: "crr_wal_durable_lsn",
      help: "Highest LSN of this region that is fdatasync'ed",
      registers: [this.registry],
      collect() {
        this.set(collectors.wal().durableLsn);
      },
    });
    new client.Gauge({
      name: "crr_draining",
      help: "1 while the region refuses appends (drain)",
      registers: [this.registry],
      collect() {
        this.set(collectors.draining() ? 1 : 0);
      },
    });
    new client.Counter({
      name: "crr_hlc_skew_rejections_total",
      help: "Remote timestamps refused for being too far ahead of this region's clock",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(collectors.skewRejections());
      },
    });
    this.divergenceCount.set(0);
    this.walOverLimit.set(0);
    this.diskFull.set(0);
    this.stopped.set(0);
  }
}
