/**
 * Invariant 13 for the shipper, in process: an unexpected error (EMFILE from the WAL, a
 * refused batch, a peer that answers nonsense) never ends the loop. The shipper shows
 * `failing` with the error, the lag keeps growing from the oldest unshipped record, and it
 * ships everything once the error stops. The peer is a fake that applies batches like the
 * reader (watermark, rewind on a gap) so the test checks what it received, record by record.
 */
import { describe, expect, it } from "vitest";
import { LinkError, type PeerLink, type WatermarksView } from "../../src/link/index.js";
import { silentLogger } from "../../src/log.js";
import { decodeBatch } from "../../src/protocol/index.js";
import { PeerShipper, type OwnRecords } from "../../src/shipper/index.js";
import type { WalChunk, WalRecord } from "../../src/wal/index.js";
import { TestWal, current, record } from "../support/shipper-peer.js";
import { tempDir, waitFor } from "../support/tmp.js";
import path from "node:path";

/** The test WAL, whose next reads fail with `failWith` as often as `failReads` says. */
class FlakyWal extends TestWal {
  failReads = 0;
  failWith: Error = Object.assign(new Error("EMFILE: too many open files, open '00000000000000000001.wal'"), {
    code: "EMFILE",
  });

  /** Append `n` records of the current incarnation. */
  addRecords(n: number): void {
    this.add(Array.from({ length: n }, (_, i) => record(this.records.length + i + 1)));
  }

  override async read(fromLsn: number, limits: { recordsMax: number }): Promise<WalChunk | undefined> {
    if (this.failReads > 0) {
      this.failReads--;
      throw this.failWith;
    }
    return super.read(fromLsn, limits);
  }
}

/** A peer that applies batches as the reader does, and remembers every record it got. */
class FakePeer implements PeerLink {
  readonly peer = "eu-west-1";
  readonly url = "fake://eu-west-1";
  watermark = 0;
  readonly got = new Map<number, WalRecord>();
  refuseNext = 0;

  async replicate(body: Buffer) {
    if (this.refuseNext > 0) {
      this.refuseNext--;
      throw new LinkError("store_full", "eu-west-1 answered 503 store_full", { status: 503 });
    }
    const b = decodeBatch(body);
    if (b.lastLsn <= this.watermark) return { kind: "ok" as const, watermark: this.watermark };
    if (b.firstLsn > this.watermark + 1) return { kind: "gap" as const, watermark: this.watermark };
    for (const r of b.records) this.got.set(r.lsn, r);
    this.watermark = b.lastLsn;
    return { kind: "ok" as const, watermark: this.watermark };
  }

  async watermarks(): Promise<WatermarksView> {
    return {
      region: this.peer,
      incarnation: "b".repeat(32),
      watermarks: { "us-east-1": this.watermark },
      streams: [{ origin: "us-east-1", incarnation: current, lsn: this.watermark, updatedAtMs: 0 }],
      rule: "first-write-wins",
      formatVersion: 1,
      clock: { wallMs: 0, logical: 0 },
      seen: [],
    };
  }

  async health() {}
  tree = () => Promise.reject(new Error("not used"));
  buckets = () => Promise.reject(new Error("not used"));
  walRecords = () => Promise.reject(new Error("not used"));
  exportPage = () => Promise.reject(new Error("not used"));
  streamRecords = () => Promise.reject(new Error("not used"));
  repair = () => Promise.reject(new Error("not used"));
  bytes = () => 0;
  async close() {}
}

const noOwnRecords: OwnRecords = { range: async () => [], streams: async () => [] };

function shipper(wal: FlakyWal, peer: FakePeer, failures: string[]): PeerShipper {
  const s = new PeerShipper({
    region: "us-east-1",
    link: peer,
    wal,
    own: noOwnRecords,
    rule: "first-write-wins",
    formatVersion: 1,
    batchBytesMax: 1 << 20,
    batchRecordsMax: 7,
    lingerMs: 0,
    retryDelayMsMin: 5,
    retryDelayMsMax: 20,
    inflightBatchesMax: 2,
    inflightBytesMax: 16 * 1024 * 1024,
    stateFile: path.join(tempDir(), "eu-west-1.json"),
    ackPersistIntervalMs: 50,
    log: silentLogger(),
  });
  s.on("failure", (reason) => failures.push(reason));
  return s;
}

describe("a supervised shipper", () => {
  it("an unexpected WAL error shows as failing with the error and a growing lag, then every record arrives", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    wal.addRecords(50);
    wal.failReads = 1_000_000;
    const s = shipper(wal, peer, failures);
    s.start();
    try {
      await waitFor(
        () => s.state === "failing" && failures.length >= 3,
        "the shipper to report failing, again and again",
      );
      expect(s.lastError).toMatch(/EMFILE/);
      expect(failures.every((r) => r === "internal")).toBe(true);
      expect(await s.oldestUnackedWallMs()).toBeDefined(); // lag is not 0 while nothing is shipped
      wal.failReads = 0;
      await waitFor(() => peer.watermark === 50 || undefined, "every record at the peer");
      await waitFor(() => s.state === "caught-up" || undefined, "caught up");
      expect(s.lastError).toBeUndefined();
      wal.addRecords(10);
      await waitFor(() => peer.watermark === 60 || undefined, "new records too");
      expect([...peer.got.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      for (const [lsn, r] of peer.got) expect(r.bodyJson).toBe(`{"n":${lsn}}`);
    } finally {
      await s.stop();
    }
  });

  it("a refused batch and an acknowledgement beyond what was sent are failures, never progress", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    wal.addRecords(20);
    peer.refuseNext = 3;
    const realReplicate = peer.replicate.bind(peer);
    let lie = 2;
    peer.replicate = async (body: Buffer) => {
      const answer = await realReplicate(body);
      if (lie-- > 0) return { kind: "ok" as const, watermark: 999_999 }; // a peer claiming more than it got
      return answer;
    };
    const s = shipper(wal, peer, failures);
    s.start();
    try {
      await waitFor(() => peer.watermark === 20 || undefined, "every record at the peer");
      expect(failures).toContain("store_full");
      expect(failures).toContain("ack_beyond_sent");
      expect(s.acked).toBe(20);
    } finally {
      await s.stop();
    }
  });
});
