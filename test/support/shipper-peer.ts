/**
 * One shipper against a real receiving side, in one process: a WAL whose records and
 * retention the test sets, and a peer that is the real Reader over a real SqliteStore,
 * reached through a signed request exactly as the HTTP route hands it over. What is faked is
 * only the transport (and the test may make it fail before the peer reads a batch).
 */
import { EventEmitter } from "node:events";
import path from "node:path";
import { afterEach } from "vitest";
import { HybridClock } from "../../src/clock/index.js";
import { WalLsnUnavailableError } from "../../src/errors.js";
import { LinkError, type PeerLink, type ReplicateAnswer, type WatermarksView } from "../../src/link/index.js";
import { silentLogger, type Logger } from "../../src/log.js";
import { IncarnationTracker } from "../../src/node/incarnations.js";
import { decodeBatch } from "../../src/protocol/index.js";
import { Reader } from "../../src/reader/index.js";
import { PeerShipper, type OwnRecords, type ShipperWal } from "../../src/shipper/index.js";
import { SqliteStore } from "../../src/store/index.js";
import { encodeFrames, type WalChunk, type WalRecord } from "../../src/wal/index.js";
import { tempDir } from "./tmp.js";

const opened: SqliteStore[] = [];
/**
 * A store on `file`, closed after the test: an open store's checkpointer thread opens the
 * database's -wal and -shm files on its own schedule, so a test that leaves it open races
 * the removal of its temp directory (ENOTEMPTY).
 */
export function openStore(file: string): SqliteStore {
  const store = new SqliteStore({ path: file, rule });
  opened.push(store);
  return store;
}
// Registered after tmp.ts's cleanup, so it runs before it (vitest runs "after" hooks as a stack).
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
});

export const origin = "us-east-1";
export const peerName = "eu-west-1";
export const current = "c".repeat(32);
export const rule = { kind: "first-write-wins" } as const;

export function record(lsn: number, tenant = "t", key = `k${lsn}`): WalRecord {
  return {
    key,
    tenant,
    outcome: "accepted",
    bodyJson: `{"n":${lsn}}`,
    lsn,
    hlc: { wallMs: Date.now() - 60_000 + lsn, logical: 0 },
    flags: 0,
  };
}

/** A WAL of the current incarnation; segments below `firstLsn` were removed by retention. */
export class TestWal implements ShipperWal {
  readonly incarnation = current;
  firstLsn = 1;
  durableLsn = 0;
  readonly records: WalRecord[] = [];
  private readonly events = new EventEmitter();

  add(records: WalRecord[]): void {
    this.records.push(...records);
    this.durableLsn = this.records.length;
    this.events.emit("durable");
  }

  async read(fromLsn: number, limits: { recordsMax: number }): Promise<WalChunk | undefined> {
    if (fromLsn < this.firstLsn) throw new WalLsnUnavailableError(fromLsn, this.firstLsn);
    if (fromLsn > this.durableLsn) return undefined;
    const rs = this.records.slice(fromLsn - 1, fromLsn - 1 + limits.recordsMax);
    return {
      origin,
      incarnation: current,
      firstLsn: fromLsn,
      lastLsn: rs.at(-1)!.lsn,
      frames: encodeFrames(rs),
      segment: "test",
      offset: 0,
    };
  }

  waitForDurable(afterLsn: number, signal?: AbortSignal): Promise<number> {
    if (this.durableLsn > afterLsn) return Promise.resolve(this.durableLsn);
    return new Promise((resolve, reject) => {
      const on = () => {
        if (this.durableLsn <= afterLsn) return;
        this.events.off("durable", on);
        resolve(this.durableLsn);
      };
      this.events.on("durable", on);
      signal?.addEventListener("abort", () => {
        this.events.off("durable", on);
        reject(signal.reason as Error);
      });
    });
  }

  segmentRange(): { firstLsn: number; lastLsn: number } {
    return { firstLsn: this.firstLsn, lastLsn: this.durableLsn };
  }
}

/** The origin's own records as Region wires them: the intact versions of its streams in its store. */
export function ownRecords(store: SqliteStore): OwnRecords {
  return {
    range: async (incarnation, from, to, limit) =>
      store
        .streamVersionsSync(origin, incarnation, from, to, limit)
        .filter((v) => v.intact)
        .map((v) => ({ ...v, flags: 0 })),
    streams: async () =>
      (await store.watermarks())
        .filter((w) => w.origin === origin)
        .map((w) => ({ incarnation: w.incarnation, lsn: w.lsn })),
  };
}

/** The receiving region: the real Reader and store; `before` may fail a batch before the peer reads it. */
export class ReaderPeer implements PeerLink {
  readonly peer = peerName;
  readonly url = "test://eu-west-1";
  store: SqliteStore;
  readonly skipped: Array<{ incarnation: string; from: number; to: number }> = [];
  /** Run before each batch reaches the reader (n counts batches from 1); throwing is a transport failure. */
  before: ((n: number) => Promise<void>) | undefined;
  batches = 0;
  /** Every batch that reached the reader, in order: its range, flags and the keys it carried. */
  readonly sent: Array<{ firstLsn: number; lastLsn: number; flags: number; keys: string[] }> = [];
  /** How many times a session asked for the watermarks (one per session). */
  sessions = 0;
  /** Answer watermarks as a region still bootstrapping (its store filled by other regions). */
  bootstrapping = false;
  readonly file: string;
  private reader: Reader;

  constructor(file = path.join(tempDir(), "peer.sqlite")) {
    this.file = file;
    this.store = openStore(file);
    this.reader = this.makeReader();
  }

  /** Reopen the store (after the test replaced its file). */
  reopen(): void {
    this.store = openStore(this.file);
    this.reader = this.makeReader();
  }

  private makeReader(): Reader {
    return new Reader({
      self: peerName,
      regions: [origin, peerName],
      store: this.store,
      clock: new HybridClock(),
      policy: {
        peers: [origin],
        filtersTenants: false,
        sendsTo: () => true,
        accepts: () => true,
        peersFor: () => [origin],
        regionTakes: () => true,
      },
      rule: "first-write-wins/1",
      incarnations: new IncarnationTracker(10_000),
      nowMs: Date.now,
      log: silentLogger(),
      onSkipped: async (_o, incarnation, s) => {
        this.skipped.push({ incarnation, ...s });
      },
    });
  }

  async replicate(body: Buffer): Promise<ReplicateAnswer> {
    await this.before?.(++this.batches);
    const b = decodeBatch(body);
    this.sent.push({
      firstLsn: b.firstLsn,
      lastLsn: b.lastLsn,
      flags: b.flags,
      keys: b.records.map((r) => r.key),
    });
    const headers = {
      "x-crr-incarnation": current,
      "x-crr-boot": "boot-1",
      "x-crr-rule": "first-write-wins/1",
    };
    const a = await this.reader.replicate({ sender: origin, headers, body });
    const watermark = a.body.watermark;
    if (a.status === 200 && typeof watermark === "number") return { kind: "ok", watermark };
    if (a.status === 409 && a.body.code === "watermark_gap" && typeof watermark === "number")
      return { kind: "gap", watermark };
    throw new LinkError(String(a.body.code), String(a.body.message), { status: a.status, answer: a.body });
  }

  async watermarks(): Promise<WatermarksView> {
    this.sessions++;
    return {
      region: peerName,
      incarnation: "p".repeat(32),
      watermarks: {},
      streams: await this.store.watermarks(),
      rule: "first-write-wins",
      formatVersion: 1,
      clock: { wallMs: 0, logical: 0 },
      seen: [],
      ...(this.bootstrapping ? { bootstrapping: true } : {}),
    };
  }

  /** Keys of `records` the peer holds. */
  holds(records: readonly WalRecord[]): string[] {
    return records.filter((r) => this.store.getSync(r.key) !== undefined).map((r) => r.key);
  }

  /** Decoded first LSN and flags of a batch body (for assertions on what was sent). */
  static header(body: Buffer): { firstLsn: number; lastLsn: number; flags: number } {
    const b = decodeBatch(body);
    return { firstLsn: b.firstLsn, lastLsn: b.lastLsn, flags: b.flags };
  }

  async health(): Promise<void> {}
  tree = () => Promise.reject(new Error("not used here"));
  buckets = () => Promise.reject(new Error("not used here"));
  walRecords = () => Promise.reject(new Error("not used here"));
  exportPage = () => Promise.reject(new Error("not used here"));
  streamRecords = () => Promise.reject(new Error("not used here"));
  repair = () => Promise.reject(new Error("not used here"));
  bytes = () => 0;
  async close(): Promise<void> {}
}

export interface TestShipperOptions {
  wal: ShipperWal;
  peer: PeerLink;
  own: OwnRecords;
  stateFile: string;
  inflight?: number;
  /** Bytes in flight at most (default 16 MiB). */
  inflightBytes?: number;
  /** Undefined: every tenant (a multi-way policy). */
  tenants?: string[];
  reportLost?: (incarnation: string, ranges: Array<[number, number]>) => Promise<void>;
  /** Default: silent. */
  log?: Logger;
}

/** A shipper as Region builds it, with small batches (10 records) and short backoff. */
export function testShipper(o: TestShipperOptions): { shipper: PeerShipper; failures: string[] } {
  const tenants = o.tenants;
  const shipper = new PeerShipper({
    region: origin,
    link: o.peer,
    wal: o.wal,
    own: o.own,
    sendsTenant: tenants ? (t) => tenants.includes(t) : undefined,
    tenants,
    rule: "first-write-wins",
    formatVersion: 1,
    batchBytesMax: 1 << 20,
    batchRecordsMax: 10,
    lingerMs: 0,
    retryDelayMsMin: 5,
    retryDelayMsMax: 20,
    inflightBatchesMax: o.inflight ?? 1,
    inflightBytesMax: o.inflightBytes ?? 16 * 1024 * 1024,
    stateFile: o.stateFile,
    ackPersistIntervalMs: 20,
    log: o.log ?? silentLogger(),
    reportLost: o.reportLost,
  });
  const failures: string[] = [];
  shipper.on("failure", (reason) => failures.push(reason));
  return { shipper, failures };
}
