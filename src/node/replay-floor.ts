/**
 * Replay protection that survives a restart. The verifier remembers nonces only while the
 * process lives; a request captured before a restart, still inside the timestamp window,
 * would be accepted again afterwards. So every timestamp accepted from a sender is first
 * covered by a lease written durably to `<dataDir>/auth-floor.json` (the sender's highest
 * accepted timestamp plus `leaseMs`, in the sender's own clock), and after a restart that
 * lease is the sender's floor: nothing signed at or below it is accepted. A lease is renewed
 * ahead of time, so a request waits for a write only when it outruns the lease.
 *
 * A missing or unreadable file (a new data directory, a hand edit) makes the floor this
 * process's start time for every sender.
 */
import fs from "node:fs";
import type { Logger } from "../log.js";
import type { ReplayFloor } from "../protocol/index.js";
import { writeFileDurable } from "../util/durable-file.js";
import type { FileOps } from "../util/file-ops.js";

export const replayLeaseMs = 1000;

export class ReplayFloorFile implements ReplayFloor {
  private readonly floors: Map<string, number>;
  private readonly fallbackMs: number;
  /** The leases on disk (what a restart would use as floors). */
  private readonly durable = new Map<string, number>();
  /** The leases wanted (written by the next write). */
  private readonly wanted = new Map<string, number>();
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private failed: Error | undefined;

  constructor(
    private readonly file: string,
    startMs: number,
    private readonly log: Logger,
    private readonly ops?: FileOps,
  ) {
    const saved = readFloors(file);
    this.floors = saved ?? new Map();
    this.fallbackMs = saved ? 0 : startMs;
    for (const [r, v] of this.floors) this.durable.set(r, v);
  }

  floorMs(region: string): number {
    return Math.max(this.fallbackMs, this.floors.get(region) ?? 0);
  }

  /** Resolves once a request from `region` signed at `timestampMs` is covered by a durable lease. */
  async cover(region: string, timestampMs: number): Promise<void> {
    const lease = timestampMs + replayLeaseMs;
    if ((this.wanted.get(region) ?? 0) < lease) this.wanted.set(region, lease);
    const held = this.durable.get(region) ?? 0;
    if (timestampMs <= held - replayLeaseMs / 2) return;
    const write = this.write();
    if (timestampMs <= held) return; // renewed ahead of time; this request is covered already
    await write;
    if ((this.durable.get(region) ?? 0) < timestampMs)
      throw this.failed ?? new Error("replay floor not written");
  }

  /** One write at a time, at most one queued behind it (it takes whatever is wanted when it starts). */
  private write(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return (this.running = this.run());
    this.queued = this.running.then(() => {
      this.queued = undefined;
      return (this.running = this.run());
    });
    return this.queued;
  }

  private async run(): Promise<void> {
    const snapshot = new Map(this.wanted);
    try {
      await writeFileDurable(this.file, `${JSON.stringify(Object.fromEntries(snapshot))}\n`, this.ops);
      for (const [r, v] of snapshot) if ((this.durable.get(r) ?? 0) < v) this.durable.set(r, v);
      this.failed = undefined;
    } catch (err) {
      this.failed = err as Error;
      this.log.error({ err, file: this.file }, "cannot write the replay floor; peer requests wait");
    } finally {
      this.running = undefined;
    }
  }
}

function readFloors(file: string): Map<string, number> | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, "utf8")) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
    const entries = Object.entries(v as Record<string, unknown>);
    if (!entries.every(([, n]) => typeof n === "number" && Number.isFinite(n))) return undefined;
    return new Map(entries as Array<[string, number]>);
  } catch {
    return undefined;
  }
}
