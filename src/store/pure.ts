/**
 * The store's pure part: merge rules, version hashes and bucket digests, the digest tree and
 * the types (no database). Pure modules elsewhere (reconcile) import this, never `index.ts`,
 * which loads SQLite; the linter enforces it.
 */
export { compareVersions, contest, ruleName, sameVersion } from "./merge.js";
export type { MergeRule, VersionId } from "./merge.js";
export { BucketDigests, bucketCount, bucketOf, versionHash } from "./digest.js";
export { buildTree, childrenOf, leafLevel, nodeDigest, treeFanout, treeLevels } from "./digest-tree.js";
export type { DigestTree } from "./digest-tree.js";
export type {
  ApplyBatchInput,
  ApplyResult,
  ApplyStore,
  AuditNote,
  AuditNoteStore,
  CheckedRecord,
  Conflict,
  ConflictRow,
  CoveredStream,
  DedupStore,
  DigestStore,
  KeyCursor,
  MetaStore,
  ReadStore,
  RegionNode,
  RemovedStream,
  SharedRegionStore,
  StoreStats,
  StreamStore,
  StoredRecord,
  Watermark,
} from "./types.js";
