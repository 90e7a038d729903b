/**
 * Everything this region must put in its audit log, until it is there: every conflict the
 * store holds beyond the log's conflict mark (driven by the conflicts table, so a crash
 * between the store commit and the audit write loses nothing), every displaced damaged winner
 * the store noted (written, then forgotten by the store: at least once, the same way), and
 * entries handed in (divergence findings, repairs, skipped gaps). A failed write is retried with backoff until
 * it succeeds; meanwhile `failing` says why (status, metrics), never only a log line.
 */
import type { AuditAppend, AuditLog } from "../audit/index.js";
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";
import type { ConflictRow, DisplacedRow } from "../store/index.js";

export interface AuditPumpOptions {
  conflicts(o: { afterId: number; limit: number }): Promise<ConflictRow[]>;
  /** Displaced damaged winners the store noted and no log holds yet; forgotten once written. */
  displaced(limit: number): Promise<DisplacedRow[]>;
  forgetDisplaced(ids: readonly number[]): Promise<void>;
  audit: AuditLog;
  log: Logger;
  runtime: Runtime;
  retryDelayMsMin: number;
  retryDelayMsMax: number;
  /** Every failed write (metrics, disk-full detection). */
  onFailure: (err: Error) => void;
}

const conflictsPerRound = 500;

export class AuditPump {
  /** Why the last write failed, while entries wait to be written. */
  failing: string | undefined;
  private pending: Array<{ entry: AuditAppend; written: () => void }> = [];
  private running: Promise<void> | undefined;
  private again = false;
  private retryTimer: Timer | undefined;
  private failures = 0;
  private stopped = false;

  constructor(private readonly o: AuditPumpOptions) {}

  /** Queue an entry; resolves once it is written (it is retried until it is; never rejects). */
  record(entry: AuditAppend): Promise<void> {
    return new Promise((written) => {
      this.pending.push({ entry, written });
      void this.pump();
    });
  }

  /** Write what is pending and every conflict past the log's mark. Never rejects. */
  pump(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
      // An entry handed in after the last round began (and not failing: the retry timer
      // handles that) would otherwise wait for the next pump.
      if (this.pending.length > 0 && this.failing === undefined && !this.stopped) void this.pump();
    });
    return this.running;
  }

  /** Entries not yet written (status). */
  get backlog(): number {
    return this.pending.length;
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.writePending();
        await this.writeConflicts();
        await this.writeDisplaced();
      } while (this.again);
      if (this.failing !== undefined) this.o.log.info({ after: this.failing }, "audit log writes recovered");
      this.failing = undefined;
      this.failures = 0;
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private async writePending(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, conflictsPerRound);
      await Promise.all(batch.map((p) => this.o.audit.append(p.entry)));
      this.pending.splice(0, batch.length);
      for (const p of batch) p.written();
    }
  }

  private async writeConflicts(): Promise<void> {
    for (;;) {
      const rows = await this.o.conflicts({
        afterId: this.o.audit.current.conflictMark,
        limit: conflictsPerRound,
      });
      if (rows.length === 0) return;
      await Promise.all(
        rows.map((c) =>
          this.o.audit.append({
            kind: "conflict",
            conflictMark: c.id,
            key: c.key,
            rule: c.rule,
            winner: c.winner,
            loser: c.loser,
            detectedAtMs: c.detectedAtMs,
          }),
        ),
      );
    }
  }

  private async writeDisplaced(): Promise<void> {
    for (;;) {
      const rows = await this.o.displaced(conflictsPerRound);
      if (rows.length === 0) return;
      // In order: a crash between the writes and the forget writes some twice, never none.
      for (const d of rows)
        await this.o.audit.append({
          kind: "tampered-displaced",
          key: d.key,
          displaced: d.displaced,
          winner: d.winner,
          detectedAtMs: d.detectedAtMs,
        });
      await this.o.forgetDisplaced(rows.map((d) => d.id));
    }
  }

  private fail(err: Error): void {
    this.o.onFailure(err);
    if (this.failing !== err.message)
      this.o.log.error(
        { err: err.message, backlog: this.pending.length },
        "audit log write failed; retrying",
      );
    this.failing = err.message;
    this.failures++;
    if (this.stopped) return;
    const delay = Math.min(this.o.retryDelayMsMax, this.o.retryDelayMsMin * 2 ** (this.failures - 1));
    this.retryTimer?.cancel();
    this.retryTimer = this.o.runtime.after(delay, () => void this.pump());
  }

  /** Stop retrying and wait for a write in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.retryTimer?.cancel();
    while (this.running) await this.running;
  }
}
