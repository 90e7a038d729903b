/**
 * The digest tree over a store's bucket digests: 65,536 leaves (the buckets), fan-out 16,
 * five levels (0 = root, 4 = buckets). A node's digest is the first 16 bytes of SHA-256 over
 * its 16 children's digests. Pure: built from a bucket-digest image, no I/O.
 *
 * Two regions compare roots, then only the children of nodes that differ, down to the
 * buckets: the cost grows with the number of differences, not with the size of the store.
 */
import { hash } from "node:crypto";
import { bucketCount, versionHashBytes, type BucketDigests } from "./digest.js";

export const treeFanout = 16;
export const treeLevels = 5; // 16^4 = 65,536 buckets at level 4
export const leafLevel = treeLevels - 1;

if (treeFanout ** leafLevel !== bucketCount)
  throw new Error("digest tree shape does not match the bucket count");

/** levels[l] holds 16^l digests of 16 bytes each, concatenated. */
export type DigestTree = Buffer[];

export function buildTree(bucketDigests: Buffer): DigestTree {
  const levels: Buffer[] = new Array(treeLevels);
  levels[leafLevel] = bucketDigests;
  for (let l = leafLevel - 1; l >= 0; l--) {
    levels[l] = Buffer.alloc(treeFanout ** l * versionHashBytes);
    for (let i = 0; i < treeFanout ** l; i++) rehashNode(levels, l, i);
  }
  return levels;
}

/** Node `index` of `level` from its 16 children one level down. */
function rehashNode(tree: DigestTree, level: number, index: number): void {
  const span = treeFanout * versionHashBytes;
  const children = tree[level + 1]!.subarray(index * span, (index + 1) * span);
  (hash("sha256", children, "buffer") as Buffer).copy(
    tree[level]!,
    index * versionHashBytes,
    0,
    versionHashBytes,
  );
}

/**
 * Bring `tree` (built over the live bucket-digest buffer, its leaves) up to date after
 * `buckets` changed: only the nodes on their paths to the root are rehashed, four per bucket
 * at most, where a rebuild hashes all 4,369 inner nodes.
 */
export function updateTree(tree: DigestTree, buckets: Iterable<number>): void {
  let indexes = new Set<number>();
  for (const b of buckets) indexes.add(Math.floor(b / treeFanout));
  for (let l = leafLevel - 1; l >= 0; l--) {
    const above = new Set<number>();
    for (const i of indexes) {
      rehashNode(tree, l, i);
      above.add(Math.floor(i / treeFanout));
    }
    indexes = above;
  }
}

/** More changed buckets than this and a rebuild is cheaper than walking each one's path. */
const rebuildBucketsMin = 1024;

/** The digest tree of one BucketDigests, kept in step with it: rehashed only where buckets changed. */
export class DigestTreeCache {
  private tree: DigestTree | undefined;

  constructor(private readonly digests: BucketDigests) {}

  /**
   * The tree as of now. A tree returned earlier is never changed afterwards (a scan holding
   * one across its requests keeps comparing against the same inner nodes): an update rehashes
   * a copy of the inner levels (70 KiB), not the tree in use.
   */
  current(): DigestTree {
    const changed = this.digests.takeChanged();
    if (this.tree === undefined || changed === "all" || changed.size >= rebuildBucketsMin) {
      this.tree = buildTree(this.digests.digests);
    } else if (changed.size > 0) {
      this.tree = this.tree.map((level, l) => (l === leafLevel ? level : Buffer.from(level)));
      updateTree(this.tree, changed);
    }
    return this.tree;
  }
}

export function nodeDigest(tree: DigestTree, level: number, index: number): Buffer {
  return tree[level]!.subarray(index * versionHashBytes, (index + 1) * versionHashBytes);
}

export function childrenOf(index: number): number[] {
  return Array.from({ length: treeFanout }, (_, k) => index * treeFanout + k);
}
