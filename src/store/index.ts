export { SqliteStore, storeError } from "./sqlite-store.js";
export type { CheckedRecord, SqliteStoreOptions } from "./sqlite-store.js";
export { compareVersions, ruleName, sameVersion } from "./merge.js";
export type { MergeRule, VersionId } from "./merge.js";
export { BucketDigests, bucketCount, bucketOf, versionHash } from "./digest.js";
export type {
  ApplyBatchInput,
  ApplyResult,
  Conflict,
  ConflictRow,
  DedupStore,
  StoreStats,
  StoredRecord,
  Watermark,
} from "./types.js";
export { buildTree, childrenOf, leafLevel, nodeDigest, treeFanout, treeLevels } from "./digest-tree.js";
export type { DigestTree } from "./digest-tree.js";
