/**
 * Store digests, maintained on every change so that comparing two regions never needs a full
 * scan. Pure: no I/O.
 *
 * Every key falls in one of `bucketCount` buckets (by a hash of the key alone, so both regions
 * place it alike). A bucket's digest is the XOR of the 128-bit hashes of the winning versions
 * of its keys: order-independent, and a version is removed by XOR-ing it again. The root
 * digest is the SHA-256 of all bucket digests. The divergence detector builds a tree on top.
 */
import { createHash, hash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { StoredRecord } from "./types.js";

export const bucketCount = 65536;
export const versionHashBytes = 16;

export function bucketOf(key: string): number {
  return crc32(key) & (bucketCount - 1);
}

/** `count` buckets from `from`, wrapping past the last: as [from, to) runs (one, or two when it wraps). */
export function bucketRuns(from: number, count: number): Array<[number, number]> {
  const n = Math.min(count, bucketCount);
  const start = from % bucketCount;
  if (start + n <= bucketCount) return [[start, start + n]];
  return [
    [start, bucketCount],
    [0, start + n - bucketCount],
  ];
}

/** 128 bits of SHA-256 over every field of the winning version (what regions must agree on). */
export function versionHash(r: StoredRecord): Buffer {
  const text = `${r.key}\0${r.tenant}\0${r.outcome}\0${r.bodyJson ?? ""}\0${r.origin}\0${r.incarnation}\0${r.lsn}\0${r.hlc.wallMs}.${r.hlc.logical}`;
  return (hash("sha256", text, "buffer") as Buffer).subarray(0, versionHashBytes);
}

export class BucketDigests {
  readonly digests: Buffer;
  readonly counts: Uint32Array;
  /** Buckets changed since the last takeChanged() ("all": every bucket may have). */
  private changed: Set<number> | "all" = "all";

  constructor() {
    this.digests = Buffer.alloc(bucketCount * versionHashBytes);
    this.counts = new Uint32Array(bucketCount);
  }

  digestOf(bucket: number): Buffer {
    return this.digests.subarray(bucket * versionHashBytes, (bucket + 1) * versionHashBytes);
  }

  /** XOR `h` into `bucket`; `countDelta` is +1 for a new key, 0 when a winner is replaced. */
  xor(bucket: number, h: Buffer, countDelta: number): void {
    const off = bucket * versionHashBytes;
    for (let i = 0; i < versionHashBytes; i++) this.digests[off + i]! ^= h[i]!;
    this.counts[bucket]! += countDelta;
    this.noteChanged(bucket);
  }

  set(bucket: number, digest: Buffer, count: number): void {
    digest.copy(this.digests, bucket * versionHashBytes, 0, versionHashBytes);
    this.counts[bucket] = count;
    this.noteChanged(bucket);
  }

  private noteChanged(bucket: number): void {
    if (this.changed !== "all") this.changed.add(bucket);
  }

  /**
   * The buckets changed since the previous call, and a fresh start: what the digest tree
   * above them must rehash. One consumer per instance (the store's tree cache).
   */
  takeChanged(): ReadonlySet<number> | "all" {
    const changed = this.changed;
    this.changed = new Set();
    return changed;
  }

  /** The key counts as bytes (little-endian u32 per bucket), for saving. */
  countsBytes(): Buffer {
    return Buffer.from(this.counts.buffer, this.counts.byteOffset, this.counts.byteLength);
  }

  restore(digests: Buffer, counts: Buffer): void {
    if (digests.length !== this.digests.length || counts.length !== this.counts.byteLength) {
      throw new Error(`digest snapshot has the wrong size (${digests.length}/${counts.length} bytes)`);
    }
    digests.copy(this.digests);
    new Uint8Array(this.counts.buffer, this.counts.byteOffset, this.counts.byteLength).set(counts);
    this.changed = "all";
  }

  root(): string {
    return createHash("sha256").update(this.digests).digest("hex");
  }
}
