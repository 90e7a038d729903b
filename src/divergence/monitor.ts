/**
 * Runs the divergence detector on an interval against every peer, scrubs the store a slice
 * at a time (so changes made outside the engine show up in the digests), keeps the current
 * findings, and reports each new one once (log, audit log, metric).
 */
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";
import type { DigestStore } from "../store/index.js";
import { bucketCount } from "../store/index.js";
import type { Finding } from "./classify.js";
import type { DivergenceDetector, PeerScan } from "./detector.js";

export interface ScanReport {
  at: string;
  peers: PeerScan[];
  findings: Finding[];
  /** Peers that could not be compared this time (down, refusing). */
  errors: Array<{ peer: string; error: string }>;
  durationMs: number;
}

export interface MonitorOptions {
  detector: DivergenceDetector;
  store: Pick<DigestStore, "scrub">;
  peers: readonly string[];
  intervalMs: number;
  scrubIntervalMs: number;
  scrubBucketsPerTick: number;
  log: Logger;
  runtime: Runtime;
  onScan: (report: ScanReport, seconds: number) => void;
  onNewFinding: (f: Finding) => Promise<void>;
  /** A peer could not be compared (metrics); it is logged when the error changes. */
  onScanError?: (peer: string, error: string) => void;
}

export const findingId = (f: Finding) => `${f.kind}|${f.remote}|${f.key}`;

export class DivergenceMonitor {
  private scanTimer: Timer | undefined;
  private scrubTimer: Timer | undefined;
  private scrubNext = 0;
  private current = new Map<string, Finding>();
  private running: Promise<ScanReport> | undefined;
  private readonly lastErrors = new Map<string, string>();
  last: ScanReport | undefined;

  constructor(private readonly o: MonitorOptions) {}

  start(): void {
    const rt = this.o.runtime;
    this.scanTimer = rt.every(this.o.intervalMs, () => void this.scan().catch(() => undefined));
    this.scrubTimer = rt.every(this.o.scrubIntervalMs, () => void this.scrubTick());
  }

  stop(): void {
    this.scanTimer?.cancel();
    this.scrubTimer?.cancel();
  }

  /** The detector's findings for `keys` alone against `peer`, now (not recorded as a scan). */
  checkKeys(peer: string, keys: readonly string[]): Promise<Finding[]> {
    return this.o.detector.checkKeys(peer, keys);
  }

  get findings(): Finding[] {
    return [...this.current.values()];
  }

  private scrubbing = false;

  /** One timer's slice; a slice still running is not doubled, and a failure is logged every time. */
  private async scrubTick(): Promise<void> {
    if (this.scrubbing) return;
    this.scrubbing = true;
    try {
      await this.scrubSlice(this.o.scrubBucketsPerTick);
    } catch (err) {
      this.o.log.error({ err: (err as Error).message, fromBucket: this.scrubNext }, "scrub failed");
    } finally {
      this.scrubbing = false;
    }
  }

  /** Recompute `count` buckets from content; returns how many were wrong. */
  async scrubSlice(count: number): Promise<number> {
    const wrong = await this.o.store.scrub(this.scrubNext, count);
    this.scrubNext = (this.scrubNext + count) % bucketCount;
    if (wrong.length > 0) {
      this.o.log.error(
        { buckets: wrong.slice(0, 20), count: wrong.length },
        "store content changed outside the engine; digests corrected so the detector sees it",
      );
    }
    return wrong.length;
  }

  /**
   * One scan of every peer (a running scan is joined, not doubled). A scan asked to scrub
   * everything first waits for a running one and then runs its own, so the scrub happens.
   */
  scan(options: { fullScrub?: boolean } = {}): Promise<ScanReport> {
    if (options.fullScrub && this.running) {
      const after = this.running.catch(() => undefined).then(() => this.scan(options));
      return after;
    }
    this.running ??= this.scanOnce(options.fullScrub ?? false).finally(() => (this.running = undefined));
    return this.running;
  }

  /** Peers that could not be compared by the last scan, and why (status). */
  get errors(): ScanReport["errors"] {
    return this.last?.errors ?? [];
  }

  private async scanOnce(fullScrub: boolean): Promise<ScanReport> {
    const started = this.o.runtime.monoMs();
    if (fullScrub) await this.scrubSlice(bucketCount);
    const peers: PeerScan[] = [];
    const errors: ScanReport["errors"] = [];
    for (const peer of this.o.peers) {
      try {
        peers.push(await this.o.detector.scanPeer(peer));
      } catch (err) {
        const error = (err as Error).message;
        errors.push({ peer, error });
        this.o.onScanError?.(peer, error);
        if (this.lastErrors.get(peer) !== error)
          this.o.log.error({ peer, err: error }, "divergence scan could not compare with a peer");
        this.lastErrors.set(peer, error);
        continue;
      }
      if (this.lastErrors.delete(peer))
        this.o.log.info({ peer }, "divergence scan compares with the peer again");
    }
    const findings = peers.flatMap((p) => p.findings);
    const next = new Map(findings.map((f) => [findingId(f), f]));
    // Peers that could not be compared keep their previous findings.
    for (const [id, f] of this.current)
      if (errors.some((e) => e.peer === f.remote) && !next.has(id)) next.set(id, f);
    for (const [id, f] of next) {
      if (this.current.has(id)) continue;
      this.o.log.error(
        {
          kind: f.kind,
          key: f.key,
          peer: f.remote,
          missingIn: f.missingIn,
          local: f.localVersion,
          remote: f.remoteVersion,
          watermarks: f.watermarks,
        },
        "divergence found",
      );
      await this.o.onNewFinding(f);
    }
    this.current = next;
    const report: ScanReport = {
      at: new Date(this.o.runtime.nowMs()).toISOString(),
      peers,
      findings: [...next.values()],
      errors,
      durationMs: this.o.runtime.monoMs() - started,
    };
    this.last = report;
    this.o.onScan(report, report.durationMs / 1000);
    return report;
  }
}
