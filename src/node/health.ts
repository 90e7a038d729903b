/**
 * Probes every other region through its PeerLink on an interval and keeps the answer (for
 * crr_region_health_status and `crr status`). The probe is a signed request carrying this
 * node's incarnation, so peers also learn that this incarnation is alive (two nodes with
 * one region name are told apart that way). Never feeds readiness: a region serves its own
 * appends while every peer is down.
 */
import type { PeerLink } from "../link/index.js";
import { anySignal, timeoutSignal, type Runtime, type Timer } from "../runtime/index.js";

export interface PeerHealth {
  region: string;
  healthy: boolean;
  checkedAtMs: number | undefined;
  error: string | undefined;
}

export interface HealthProberOptions {
  links: readonly PeerLink[];
  intervalMs: number;
  timeoutMs: number;
  runtime: Runtime;
  onChange: (region: string, healthy: boolean) => void;
}

export class HealthProber {
  private readonly state = new Map<string, PeerHealth>();
  private timer: Timer | undefined;
  private readonly abort = new AbortController();

  constructor(private readonly o: HealthProberOptions) {
    for (const l of o.links) {
      this.state.set(l.peer, {
        region: l.peer,
        healthy: false,
        checkedAtMs: undefined,
        error: "not checked yet",
      });
    }
  }

  start(): void {
    void this.probeAll();
    this.timer = this.o.runtime.every(this.o.intervalMs, () => void this.probeAll());
  }

  stop(): void {
    this.timer?.cancel();
    this.abort.abort();
  }

  snapshot(): PeerHealth[] {
    return [...this.state.values()].map((s) => ({ ...s }));
  }

  private async probeAll(): Promise<void> {
    await Promise.all(this.o.links.map((l) => this.probe(l)));
  }

  private async probe(link: PeerLink): Promise<void> {
    let healthy = false;
    let error: string | undefined;
    const bounded = anySignal([this.abort.signal, timeoutSignal(this.o.runtime, this.o.timeoutMs)]);
    try {
      await link.health(bounded.signal);
      healthy = true;
    } catch (err) {
      if (this.abort.signal.aborted) return;
      error = (err as Error).message;
    } finally {
      bounded.release();
    }
    const before = this.state.get(link.peer);
    this.state.set(link.peer, { region: link.peer, healthy, checkedAtMs: this.o.runtime.nowMs(), error });
    if (before?.healthy !== healthy || before.checkedAtMs === undefined) this.o.onChange(link.peer, healthy);
  }
}
