/**
 * The digest tree over a store's bucket digests: 65,536 leaves (the buckets), fan-out 16,
 * five levels (0 = root, 4 = buckets). A node's digest is the first 16 bytes of SHA-256 over
 * its 16 children's digests. Pure: built from a bucket-digest image, no I/O.
 *
 * Two regions compare roots, then only the children of nodes that differ, down to the
 * buckets: the cost grows with the number of differences, not with the size of the store.
 */
import { createHash } from "node:crypto";
import { bucketCount, versionHashBytes } from "./digest.js";

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
    const below = levels[l + 1]!;
    const count = treeFanout ** l;
    const out = Buffer.alloc(count * versionHashBytes);
    const span = treeFanout * versionHashBytes;
    for (let i = 0; i < count; i++) {
      createHash("sha256")
        .update(below.subarray(i * span, (i + 1) * span))
        .digest()
        .copy(out, i * versionHashBytes, 0, versionHashBytes);
    }
    levels[l] = out;
  }
  return levels;
}

export function nodeDigest(tree: DigestTree, level: number, index: number): Buffer {
  return tree[level]!.subarray(index * versionHashBytes, (index + 1) * versionHashBytes);
}

export function childrenOf(index: number): number[] {
  return Array.from({ length: treeFanout }, (_, k) => index * treeFanout + k);
}
