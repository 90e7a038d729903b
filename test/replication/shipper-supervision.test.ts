/**
 * Invariant 13 for the shipper, in process: an unexpected error (EMFILE from the WAL, a
 * refused batch, a peer that answers nonsense) never ends the loop. The shipper shows
 * `failing` with the error, the lag keeps growing from the oldest unshipped record, and it
 * ships everything once the error stops. The peer is a fake that applies batches like the
 * reader (watermark, rewind on a gap) so the test checks what it received, record by record.
 */
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { LinkError, type PeerLink, type WatermarksView } from "../../src/link/index.js";
import { silentLogger } from "../../src/log.js";
import { logged } from "../support/logged.js";
import { decodeBatch } from "../../src/protocol/index.js";
import { realRuntime } from "../../src/runtime/index.js";
import {
  PeerShipper,
  backoffMs,
  streamLsn,
  type OwnRecords,
  type PeerShipperOptions,
} from "../../src/shipper/index.js";
import type { WalChunk, WalRecord } from "../../src/wal/index.js";
import { TestWal, current, record } from "../support/shipper-peer.js";
import { nodeFileOps } from "../../src/util/file-ops.js";
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
  /** What its watermarks answer says it merges by. */
  rule = "first-write-wins";
  formatVersion = 1;

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
      rule: this.rule,
      formatVersion: this.formatVersion,
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

function shipper(
  wal: FlakyWal,
  peer: FakePeer,
  failures: string[],
  o: Partial<PeerShipperOptions> = {},
): PeerShipper {
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
    ...o,
  });
  s.on("failure", (reason) => failures.push(reason));
  return s;
}

describe("a supervised shipper", () => {
  it("an unexpected WAL error shows as failing with the error and a growing lag, then every record arrives", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    const { log, lines } = logged();
    wal.addRecords(50);
    wal.failReads = 1_000_000;
    const s = shipper(wal, peer, failures, { log });
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
      // A bug's failure is an error, logged once however often it repeats, and the recovery once.
      const failing = lines.filter((l) => l.msg.startsWith("shipping to peer is failing"));
      expect(failing).toEqual([
        expect.objectContaining({ level: 50, reason: "internal", peer: "eu-west-1" }),
      ]);
      expect(failing[0]!.err).toMatch(/EMFILE/);
      expect(lines.filter((l) => l.msg === "shipping to peer recovered")).toEqual([
        expect.objectContaining({ level: 30, after: "internal" }),
      ]);
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

describe("retries", () => {
  it("back off exponentially from retryDelayMsMin, jittered 1 to 2 times the step, never beyond retryDelayMsMax", () => {
    expect(backoffMs(1, 10, 1000, () => 0)).toBe(10);
    expect(backoffMs(2, 10, 1000, () => 0)).toBe(20);
    expect(backoffMs(4, 10, 1000, () => 0.5)).toBe(120);
    expect(backoffMs(0, 10, 1000, () => 0)).toBe(10); // no failure yet: the first step
    expect(backoffMs(7, 10, 1000, () => 0.5)).toBe(960);
    expect(backoffMs(7, 10, 1000, () => 0.99)).toBe(1000); // 1,273.6 capped
    expect(backoffMs(30, 10, 1000, () => 0)).toBe(1000);
  });
});

describe("a session's first question: what the peer holds", () => {
  it("reads the peer's watermark for exactly this origin and incarnation (0 when it holds none)", () => {
    const other = "a".repeat(32);
    const view = {
      streams: [
        { origin: "us-east-1", incarnation: other, lsn: 5, updatedAtMs: 0 },
        { origin: "us-east-1", incarnation: current, lsn: 9, updatedAtMs: 0 },
        { origin: "eu-west-1", incarnation: current, lsn: 11, updatedAtMs: 0 },
      ],
    } as unknown as WatermarksView;
    expect(streamLsn(view, "us-east-1", current)).toBe(9);
    expect(streamLsn(view, "us-east-1", other)).toBe(5);
    expect(streamLsn(view, "ap-south-1", current)).toBe(0);
    expect(streamLsn(view, "us-east-1", "z".repeat(32))).toBe(0);
  });

  it.each([
    [
      "another conflict rule",
      { rule: "last-write-wins" },
      /merges by 'last-write-wins' \(format 1\), this region by 'first-write-wins' \(format 1\)/,
    ],
    [
      "another format version",
      { formatVersion: 2 },
      /merges by 'first-write-wins' \(format 2\), this region by 'first-write-wins' \(format 1\)/,
    ],
  ])(
    "a peer with %s gets nothing, fails loudly once (not once per retry), and ships once it matches",
    async (_what, differs, message) => {
      const wal = new FlakyWal();
      const peer = Object.assign(new FakePeer(), differs);
      const failures: string[] = [];
      const { log, lines } = logged();
      wal.addRecords(12);
      const s = shipper(wal, peer, failures, { log });
      s.start();
      try {
        await waitFor(() => failures.length >= 3 || undefined, "the session refused, again and again");
        expect(new Set(failures)).toEqual(new Set(["rule_mismatch"]));
        expect(s.state).toBe("failing");
        expect(s.lastError).toMatch(message);
        expect(peer.got.size).toBe(0);
        const failing = lines.filter((l) => l.msg === "shipping to peer is failing; retrying with backoff");
        expect(failing).toHaveLength(1);
        expect(failing[0]).toMatchObject({ level: 50, peer: "eu-west-1", reason: "rule_mismatch" });
        Object.assign(peer, { rule: "first-write-wins", formatVersion: 1 });
        await waitFor(() => (s.state === "caught-up" && peer.watermark === 12) || undefined, "shipped");
        expect(s.lastError).toBeUndefined();
        expect(lines.filter((l) => l.msg === "shipping to peer recovered")).toEqual([
          expect.objectContaining({ level: 30, peer: "eu-west-1", after: "rule_mismatch" }),
        ]);
      } finally {
        await s.stop();
      }
    },
  );

  it("a peer holding more of this incarnation than the WAL is reported (LSNs would be reissued), and gets nothing", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    peer.watermark = 30;
    const failures: string[] = [];
    const { log, lines } = logged();
    wal.addRecords(20);
    const s = shipper(wal, peer, failures, { log });
    const ahead: Array<[number, number]> = [];
    s.on("peerAhead", (peerLsn, durableLsn) => ahead.push([peerLsn, durableLsn]));
    s.start();
    try {
      await waitFor(() => failures.length >= 2 || undefined, "the session refused");
      expect(new Set(failures)).toEqual(new Set(["peer_ahead"]));
      expect(ahead[0]).toEqual([30, 20]);
      expect(s.lastError).toMatch(/has applied LSN 30 of incarnation c{32}, but this WAL ends at 20/);
      expect(peer.got.size).toBe(0);
      expect(s.acked).toBe(0);
      expect(lines.find((l) => l.msg.startsWith("shipping to peer is failing"))).toMatchObject({
        level: 40,
        reason: "peer_ahead",
      });
    } finally {
      await s.stop();
    }
  });
});

describe("a peer behind what it acknowledged", () => {
  it("asks to rewind: the session restarts from the peer's watermark and every record arrives", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    const { log, lines } = logged();
    wal.addRecords(10);
    const s = shipper(wal, peer, failures, { log });
    s.start();
    try {
      await waitFor(() => (s.state === "caught-up" && s.acked === 10) || undefined, "caught up");
      // The peer loses 7..10 (restored from an older copy, say) without the shipper knowing.
      for (const l of [7, 8, 9, 10]) peer.got.delete(l);
      peer.watermark = 6;
      wal.addRecords(5);
      await waitFor(() => (s.state === "caught-up" && peer.watermark === 15) || undefined, "caught up again");
      expect(failures).toContain("rewind");
      expect([...peer.got.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
      expect(lines.find((l) => l.msg === "peer asked to rewind")).toMatchObject({
        level: 40,
        peer: "eu-west-1",
        sent: 11,
        peerWatermark: 6,
      });
      expect(s.lastError).toBeUndefined();
    } finally {
      await s.stop();
    }
  });
});

describe("what the shipper reports", () => {
  it("the oldest unacknowledged record's time for the lag; none once caught up; since the last progress when unreadable", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    wal.addRecords(20);
    const before = Date.now();
    const s = shipper(wal, peer, failures);
    const after = Date.now();
    expect(await s.oldestUnackedWallMs()).toBe(wal.records[0]!.hlc.wallMs);
    wal.failReads = 1;
    const since = await s.oldestUnackedWallMs();
    expect(since).toBeGreaterThanOrEqual(before);
    expect(since).toBeLessThanOrEqual(after);
    const acks: Array<[number, number]> = [];
    s.on("ack", (lsn, records) => acks.push([lsn, records]));
    s.start();
    try {
      await waitFor(() => (s.state === "caught-up" && s.acked === 20) || undefined, "caught up");
      expect(await s.oldestUnackedWallMs()).toBeUndefined();
      // Batches of 7: every ack names the LSN the peer holds and how many records it was sent.
      expect(acks).toEqual([
        [7, 7],
        [14, 7],
        [20, 6],
      ]);
      expect(s.lastAckAtMs).toBeGreaterThanOrEqual(after);
      expect(s.lastAckAtMs).toBeLessThanOrEqual(Date.now());
    } finally {
      await s.stop();
    }
    expect(s.state).toBe("stopped");
  });

  it("while failing, the lag's lower bound is the last progress, not the last retry", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    let shiftMs = 0; // the shipper's clock, moved by the test
    const runtime = { ...realRuntime, nowMs: () => Date.now() + shiftMs };
    wal.addRecords(10);
    const s = shipper(wal, peer, failures, { runtime });
    s.start();
    try {
      await waitFor(() => (s.state === "caught-up" && s.acked === 10) || undefined, "caught up");
      shiftMs = 3_600_000; // an hour later, the WAL fails: every retry's session starts at the same LSN
      const progressAt = Date.now();
      wal.failReads = 1_000_000;
      wal.addRecords(5);
      await waitFor(() => failures.length >= 3 || undefined, "three failed sessions");
      const since = (await s.oldestUnackedWallMs())!;
      expect(since).toBeGreaterThanOrEqual(progressAt - 60_000); // the progress before the hour...
      expect(since).toBeLessThan(progressAt + 60_000); // ...not a retry in it
      wal.failReads = 0;
      await waitFor(() => (s.state === "caught-up" && s.acked === 15) || undefined, "caught up again");
      const before = failures.length;
      wal.failReads = 1_000_000;
      wal.addRecords(1);
      await waitFor(() => failures.length >= before + 3 || undefined, "three more failed sessions");
      expect(await s.oldestUnackedWallMs()).toBeGreaterThanOrEqual(progressAt + shiftMs); // moved with the acks
    } finally {
      wal.failReads = 0;
      await s.stop();
    }
  });

  it("keeps the acknowledged LSN across a restart, for its own incarnation only", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const stateFile = path.join(tempDir(), "eu-west-1.json");
    wal.addRecords(15);
    // The persist timer's ticks and the state file's writes (each a durable rename), counted.
    let ticks = 0;
    let writes = 0;
    const runtime = {
      ...realRuntime,
      every: (ms: number, fn: () => void) => realRuntime.every(ms, () => (ticks++, fn())),
    };
    const fileOps = {
      ...nodeFileOps,
      rename: (a: string, b: string) => (writes++, nodeFileOps.rename(a, b)),
    };
    const first = shipper(wal, peer, [], { stateFile, runtime, fileOps });
    first.start();
    await waitFor(() => (first.acked === 15 && first.state === "caught-up") || undefined, "caught up");
    // Idle, it writes nothing more: the state is written only when it changed.
    const onDisk = () => (fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : {});
    await waitFor(() => onDisk().acked === 15 || undefined, "the acknowledged LSN written");
    const written = writes;
    const tick = ticks;
    await waitFor(() => ticks >= tick + 5 || undefined, "five more persist ticks");
    expect(writes).toBe(written);
    await first.stop();
    expect(writes).toBe(written);
    expect(onDisk()).toMatchObject({
      peer: "eu-west-1",
      incarnation: current,
      acked: 15,
      tenants: "*",
    });
    expect(shipper(wal, peer, [], { stateFile }).acked).toBe(15); // before it asks the peer
    const renewed = Object.assign(new FlakyWal(), { incarnation: "d".repeat(32) });
    expect(shipper(renewed, peer, [], { stateFile }).acked).toBe(0);
  });

  it("a state file it cannot write is a failure counted and logged, and shipping goes on", async () => {
    const wal = new FlakyWal();
    const peer = new FakePeer();
    const failures: string[] = [];
    const { log, lines } = logged();
    wal.addRecords(10);
    const stateFile = path.join(tempDir(), "no-such-directory", "eu-west-1.json");
    const s = shipper(wal, peer, failures, { stateFile, log });
    s.start();
    try {
      await waitFor(() => failures.includes("ack_persist") || undefined, "the failed write reported");
      await waitFor(() => peer.watermark === 10 || undefined, "every record shipped anyway");
      expect(lines.find((l) => l.msg === "could not persist the acknowledged LSN")).toMatchObject({
        level: 40,
        peer: "eu-west-1",
      });
    } finally {
      await s.stop();
    }
  });
});
