/**
 * Recovery's evidence of what this region acknowledged, from everything it can reach before
 * it serves: its store (every own record it applied, as winner or conflict loser), its
 * shippers' saved acknowledgements, its peers (their watermarks for our stream and their
 * copies of our records), asked once with a bounded wait, and its S3 archive when it has
 * one (what it archived, sealed by itself). The WAL uses it to tell a torn
 * tail from damaged acknowledged records, and to restore the latter; the startup checks reuse
 * the peers' answers.
 */
import fs from "node:fs";
import path from "node:path";
import type { ArchiveEvidence } from "../archive/index.js";
import type { PeerLink, WatermarksView } from "../link/index.js";
import type { Logger } from "../log.js";
import { timeoutSignal, type Runtime } from "../runtime/index.js";
import type { ApplyStore, CheckedRecord, StreamStore } from "../store/index.js";
import type { RecoveryEvidence, WalRecord } from "../wal/index.js";

/** What the evidence needs of the store. */
export type EvidenceStore = Pick<ApplyStore, "watermark"> & Pick<StreamStore, "streamVersions">;

export interface EvidenceOptions {
  region: string;
  store: EvidenceStore;
  /** `<dataDir>/shipper`: the saved acknowledgement per peer. */
  shipperDir: string;
  links: readonly PeerLink[];
  peerWaitMs: number;
  runtime: Runtime;
  log: Logger;
  /** The S3 archive, when configured: what this region archived before its WAL was damaged or lost. */
  archive?: Pick<ArchiveEvidence, "highestLsn" | "records" | "cursor" | "refused">;
}

const pageRecordsMax = 5000;

function toWalRecord(v: CheckedRecord): WalRecord {
  return {
    key: v.key,
    tenant: v.tenant,
    outcome: v.outcome,
    bodyJson: v.bodyJson,
    lsn: v.lsn,
    hlc: v.hlc,
    flags: 0,
  };
}

export class Evidence implements RecoveryEvidence {
  private views: Promise<Map<string, WatermarksView>> | undefined;
  /** Where the highest acknowledged LSN came from (logged when recovery acts on it). */
  source = "nothing";

  constructor(private readonly o: EvidenceOptions) {}

  /** Forget the peers' answers: the next question asks them again. */
  refresh(): void {
    this.views = undefined;
  }

  /** Every peer's watermarks, asked once; a peer that does not answer within peerWaitMs is left out. */
  peerViews(): Promise<Map<string, WatermarksView>> {
    this.views ??= (async () => {
      const answers = await Promise.all(
        this.o.links.map(async (link) => {
          try {
            return [
              link.peer,
              await link.watermarks(timeoutSignal(this.o.runtime, this.o.peerWaitMs)),
            ] as const;
          } catch (err) {
            this.o.log.warn(
              { peer: link.peer, err: (err as Error).message },
              "recovery: peer did not answer",
            );
            return undefined;
          }
        }),
      );
      return new Map(answers.filter((a) => a !== undefined));
    })();
    return this.views;
  }

  async acknowledgedLsn(incarnation: string): Promise<number> {
    const r = this.o.region;
    const candidates: Array<[string, number]> = [
      ["this region's store", await this.o.store.watermark(r, incarnation)],
      ...this.savedAcks(incarnation),
    ];
    for (const [peer, view] of await this.peerViews()) {
      const lsn = view.streams.find((s) => s.origin === r && s.incarnation === incarnation)?.lsn ?? 0;
      candidates.push([`peer ${peer}`, lsn]);
    }
    if (this.o.archive) candidates.push(["the S3 archive", await this.archivedLsn(incarnation)]);
    let best: [string, number] = ["nothing", 0];
    for (const c of candidates) if (c[1] > best[1]) best = c;
    this.source = best[0];
    return best[1];
  }

  /** The highest LSN the archive holds (its local cursor alone, logged, when the bucket cannot be asked). */
  private async archivedLsn(incarnation: string): Promise<number> {
    try {
      const lsn = await this.o.archive!.highestLsn(incarnation);
      this.noteRefused();
      return lsn;
    } catch (err) {
      this.o.log.warn(
        { err: (err as Error).message },
        "recovery: the S3 archive could not be asked; only its cursor counts",
      );
      return this.o.archive!.cursor(incarnation);
    }
  }

  /** The saved acknowledgements of this incarnation, per peer (durable: written before retention used them). */
  private savedAcks(incarnation: string): Array<[string, number]> {
    let names: string[];
    try {
      names = fs.readdirSync(this.o.shipperDir).filter((n) => n.endsWith(".json"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const out: Array<[string, number]> = [];
    for (const n of names) {
      try {
        const s = JSON.parse(fs.readFileSync(path.join(this.o.shipperDir, n), "utf8")) as {
          peer?: string;
          incarnation?: string;
          acked?: number;
        };
        if (s.incarnation === incarnation && typeof s.acked === "number")
          out.push([`the saved acknowledgement of ${s.peer}`, s.acked]);
      } catch (err) {
        this.o.log.warn({ file: n, err: (err as Error).message }, "recovery: unreadable shipper state");
      }
    }
    return out;
  }

  /** This region's records of `incarnation` in [fromLsn, toLsn]: from the store, then from peers for the rest. */
  /** Peers that could not be asked by the last `records` call (no answer, or a failed read): they may hold what was not found. */
  unanswered: string[] = [];

  async records(incarnation: string, fromLsn: number, toLsn: number): Promise<WalRecord[]> {
    this.unanswered = [];
    const found = new Map<number, WalRecord>();
    for (let from = fromLsn; from <= toLsn;) {
      const page = await this.o.store.streamVersions(this.o.region, incarnation, from, toLsn, pageRecordsMax);
      for (const v of page) if (v.intact) found.set(v.lsn, toWalRecord(v));
      if (page.length < pageRecordsMax) break;
      from = page[page.length - 1]!.lsn + 1;
    }
    if (found.size < toLsn - fromLsn + 1) await this.fromPeers(incarnation, fromLsn, toLsn, found);
    if (found.size < toLsn - fromLsn + 1 && this.o.archive)
      await this.fromArchive(incarnation, fromLsn, toLsn, found);
    return [...found.values()].sort((a, b) => a.lsn - b.lsn);
  }

  private async fromArchive(
    incarnation: string,
    fromLsn: number,
    toLsn: number,
    found: Map<number, WalRecord>,
  ): Promise<void> {
    try {
      for (const r of await this.o.archive!.records(incarnation, fromLsn, toLsn))
        if (!found.has(r.lsn)) found.set(r.lsn, r);
      this.noteRefused();
    } catch (err) {
      this.unanswered.push("the S3 archive");
      this.o.log.warn(
        { err: (err as Error).message },
        "recovery: could not read records from the S3 archive",
      );
    }
  }

  /** Objects under this region's prefix that are not its own: said, never taken as evidence. */
  private noteRefused(): void {
    const refused = this.o.archive!.refused.splice(0);
    if (refused.length > 0)
      this.o.log.error(
        { refused: refused.slice(0, 10), count: refused.length },
        "recovery: objects in the S3 archive under this region's prefix are not its own (no seal of its key); passed over",
      );
  }

  private async fromPeers(
    incarnation: string,
    fromLsn: number,
    toLsn: number,
    found: Map<number, WalRecord>,
  ): Promise<void> {
    const views = await this.peerViews();
    this.unanswered = this.o.links.filter((l) => !views.has(l.peer)).map((l) => l.peer);
    for (const link of this.o.links) {
      const covered = views
        .get(link.peer)
        ?.streams.find((s) => s.origin === this.o.region && s.incarnation === incarnation)?.lsn;
      if (!covered || covered < fromLsn) continue;
      try {
        for (
          let from: number | undefined = fromLsn;
          from !== undefined && from <= Math.min(toLsn, covered);
        ) {
          const q = { origin: this.o.region, incarnation, fromLsn: from, toLsn, limit: pageRecordsMax };
          const page = await link.streamRecords(q);
          for (const v of page.versions) if (v.intact && !found.has(v.lsn)) found.set(v.lsn, toWalRecord(v));
          from = page.next;
        }
      } catch (err) {
        this.unanswered.push(link.peer);
        this.o.log.warn(
          { peer: link.peer, err: (err as Error).message },
          "recovery: could not read records from peer",
        );
      }
      if (found.size >= toLsn - fromLsn + 1) return;
    }
  }
}
