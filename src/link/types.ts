/**
 * What one region asks of another, whatever carries it: HTTP between processes
 * (`HttpPeerLink`), or a direct call into another region in the same process (tests, the
 * simulator). The shipper, the divergence detector, peer health, the startup checks and the
 * operator commands all speak to peers through this one interface. Pure types.
 */
import type { Hlc } from "../clock/index.js";
import type { StoredRecord } from "../store/pure.js";

/** One (origin, incarnation) stream a region has applied. */
export interface StreamWatermark {
  origin: string;
  incarnation: string;
  lsn: number;
  updatedAtMs: number;
}

/** A region's answer to "what have you applied?" (GET /v1/watermarks). */
export interface WatermarksView {
  region: string;
  /** The answering region's own WAL incarnation. */
  incarnation: string;
  /** Applied LSN per origin (its newest incarnation). */
  watermarks: Record<string, number>;
  streams: StreamWatermark[];
  /** The conflict rule and the format version: peers with different ones must not replicate. */
  rule: string;
  formatVersion: number;
  /** The answering region's hybrid clock now (a floor for a region that lost its own). */
  clock: Hlc;
  /** Instances (incarnation and boot) of other regions this region heard from recently: since when and how long ago. */
  seen: Array<{ region: string; incarnation: string; boot: string; agoMs: number; firstAgoMs: number }>;
  /**
   * The answering node's process (a new one at each start): a comparison that read its
   * watermarks from one process and its records from another is not one view of one store.
   */
  boot?: string;
  /**
   * The answering region's store (a random id kept in it: a lost, rebuilt or new store has a
   * new one). The nodes of a region served by several share it, not their boots.
   */
  storeId?: string;
  /**
   * The answering region is itself bootstrapping (it lost its store and has not finished
   * copying what the mesh decided): what it holds is no evidence of the mesh's state.
   */
  bootstrapping?: boolean;
  /**
   * The answering region's policy was widened at `atMs`: it takes tenants not in `before`
   * only since then. Its watermarks may have passed their older records while its policy
   * left them out (a backfill brings them): what it lacks of those is not yet missing.
   */
  policyWidened?: { atMs: number; before: string[] };
  /**
   * Every live incarnation of the answering region when several nodes serve it on one store
   * (its own included): a stream of one of them is live, not an older incarnation's.
   */
  incarnations?: string[];
}

export type ReplicateAnswer =
  | { kind: "ok"; watermark: number }
  /** The batch started past the peer's watermark: resume at watermark + 1. */
  | { kind: "gap"; watermark: number };

/** A version as it crosses the wire; `intact` is false when its holder found it changed outside the engine. */
export type WireVersion = Omit<StoredRecord, "bodyJson"> & { bodyJson?: string | null; intact?: boolean };

export interface ExportQuery {
  origin?: string;
  after?: { bucket: number; key: string };
  limit: number;
  /**
   * Streams the asker holds whole up to `lsn` (restored from the archive): versions of them
   * at or below it are left out. A page may then hold fewer than `limit` versions with
   * `next` still set.
   */
  covered?: Array<{ origin: string; incarnation: string; lsn: number }>;
}

export interface ExportPage {
  versions: StoredRecord[];
  /** Tenants of which the page left versions out: the peer's policy keeps them from the asker (absent: none). */
  withheldTenants?: string[];
  next: { bucket: number; key: string } | undefined;
}

export interface StreamPage {
  versions: Array<StoredRecord & { intact: boolean }>;
  /**
   * LSNs in the page the peer holds but withheld: records of a tenant its policy keeps from
   * the asker (only their tenant crosses the wire). Absent: none, or a peer of an older
   * version, which sends every version.
   */
  withheld?: Withheld[];
  next: number | undefined;
}

/** An LSN a peer holds whose record it did not send: its tenant is kept from the asker. */
export interface Withheld {
  lsn: number;
  tenant: string;
}

/** An origin's own WAL records at some LSNs (`/v1/divergence/wal`), and those it withheld. */
export interface WalAnswer {
  incarnation: string;
  records: StoredRecord[];
  withheld?: Withheld[];
}

export interface StreamQuery {
  origin: string;
  incarnation: string;
  fromLsn: number;
  toLsn: number;
  limit: number;
}

/** The winning versions of some buckets, each with whether it is intact, and which process answered. */
export interface BucketsAnswer {
  versions: Array<StoredRecord & { intact: boolean }>;
  /** Tenants of which versions were left out: the peer's policy keeps them from the asker (absent: none). */
  withheldTenants?: string[];
  /** The answering node's process and store (WatermarksView); absent from an older build. */
  boot?: string;
  storeId?: string;
}

export interface PeerLink {
  /** The region at the other end. */
  readonly peer: string;
  /** Where it is reached (shown by status). */
  readonly url: string;
  /**
   * Send one replication batch. Resolves with the peer's durable acknowledgement or its
   * request to rewind; rejects with a LinkError (a stable `reason`) on a refusal or a
   * transport failure. Batches sent without waiting arrive in the order sent.
   */
  replicate(body: Buffer, signal?: AbortSignal): Promise<ReplicateAnswer>;
  watermarks(signal?: AbortSignal): Promise<WatermarksView>;
  /** Resolves when the peer answers its liveness probe; rejects otherwise. */
  health(signal?: AbortSignal): Promise<void>;
  tree(level: number, indexes: number[]): Promise<string[]>;
  buckets(buckets: number[]): Promise<BucketsAnswer>;
  /** Records of the peer's own WAL by LSN (the source of truth for its records). */
  walRecords(lsns: number[]): Promise<WalAnswer>;
  exportPage(q: ExportQuery): Promise<ExportPage>;
  /**
   * One page of the versions of one origin stream the peer holds (winners and conflict
   * losers), by LSN, each saying whether it is intact; `next` is where the following page
   * starts (undefined: the range is done). A page may skip LSNs the peer does not hold.
   */
  streamRecords(q: StreamQuery): Promise<StreamPage>;
  /** Write versions reconcile established (audited on the peer). */
  repair(versions: StoredRecord[]): Promise<{ changed: string[] }>;
  /** Bytes exchanged so far (what a divergence scan cost). */
  bytes(): number;
  close(): Promise<void>;
}

/** A version from the wire, exactly the StoredRecord fields (nothing else rides along into the store or the audit log). */
export function fromWire(v: WireVersion): StoredRecord {
  return {
    key: v.key,
    tenant: v.tenant,
    outcome: v.outcome,
    bodyJson: v.bodyJson ?? undefined,
    origin: v.origin,
    incarnation: v.incarnation,
    lsn: v.lsn,
    hlc: { wallMs: v.hlc.wallMs, logical: v.hlc.logical },
  };
}
