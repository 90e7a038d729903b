/**
 * Everything this region must put in its audit log, until it is there: every conflict the
 * store holds beyond the log's conflict mark (driven by the conflicts table, so a crash
 * between the store commit and the audit write loses nothing), every audit note the store
 * wrote with its change (a displaced damaged winner, an audited repair: appended, then
 * forgotten by the store, so at least once), and entries handed in (divergence findings,
 * skipped gaps, lost records). A failed write is retried with backoff until
 * it succeeds; meanwhile `failing` says why (status, metrics), never only a log line.
 */
import type { AuditAppend, AuditLog } from "../audit/index.js";
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";
import type { AuditNoteStore, ConflictRow } from "../store/index.js";

export interface AuditPumpOptions {
  conflicts(o: { afterId: number; limit: number }): Promise<ConflictRow[]>;
  /** Audit entries the store wrote with their changes (a displaced damaged winner, an audited repair). */
  notes: AuditNoteStore;
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
        await this.writeNotes();
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

  /** Notes appended whose forget has not succeeded yet: a retry forgets them without appending again. */
  private readonly appendedNotes = new Set<number>();

  private async writeNotes(): Promise<void> {
    for (;;) {
      const notes = await this.o.notes.auditNotes(conflictsPerRound);
      if (notes.length === 0) {
        this.appendedNotes.clear(); // another node of the region may have forgotten them
        return;
      }
      // In order: a crash between the writes and the forget writes some twice, never none; a
      // forget that fails is retried without appending them again (found by review: every
      // retry of a store that refused deletes appended the whole page once more).
      for (const n of notes) {
        if (this.appendedNotes.has(n.id)) continue;
        await this.o.audit.append(n.entry);
        this.appendedNotes.add(n.id);
      }
      const ids = notes.map((n) => n.id);
      await this.o.notes.forgetAuditNotes(ids);
      for (const id of ids) this.appendedNotes.delete(id);
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
