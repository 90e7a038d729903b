/**
 * Probes every other region's /healthz on an interval and keeps the answer (for
 * crr_region_health_status and `crr status`). Never feeds readiness: a region serves its own
 * appends while every peer is down.
 */
import { request } from "undici";

export interface PeerHealth {
  region: string;
  healthy: boolean;
  checkedAtMs: number | undefined;
  error: string | undefined;
}

export class HealthProber {
  private readonly state = new Map<string, PeerHealth>();
  private timer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly peers: Record<string, string>,
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly onChange: (region: string, healthy: boolean) => void,
  ) {
    for (const region of Object.keys(peers)) {
      this.state.set(region, { region, healthy: false, checkedAtMs: undefined, error: "not checked yet" });
    }
  }

  start(): void {
    void this.probeAll();
    this.timer = setInterval(() => void this.probeAll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.abort.abort();
  }

  snapshot(): PeerHealth[] {
    return [...this.state.values()].map((s) => ({ ...s }));
  }

  private async probeAll(): Promise<void> {
    await Promise.all(Object.entries(this.peers).map(([region, url]) => this.probe(region, url)));
  }

  private async probe(region: string, url: string): Promise<void> {
    let healthy = false;
    let error: string | undefined;
    try {
      const res = await request(`${url}/healthz`, {
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.timeoutMs)]),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      await res.body.dump();
      healthy = res.statusCode === 200;
      if (!healthy) error = `HTTP ${res.statusCode}`;
    } catch (err) {
      if (this.abort.signal.aborted) return;
      error = (err as Error).message;
    }
    const before = this.state.get(region);
    this.state.set(region, { region, healthy, checkedAtMs: Date.now(), error });
    if (before?.healthy !== healthy || before.checkedAtMs === undefined) this.onChange(region, healthy);
  }
}
