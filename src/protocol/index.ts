export {
  BATCH_FLAG_BACKFILL,
  BATCH_FLAG_SKIP_GAP,
  BatchInvalidError,
  decodeBatch,
  decodeBatchHeader,
  encodeBatch,
  batchHeaderBytes,
  formatVersion,
} from "./batch.js";
export type { BatchHeader, DecodedBatch } from "./batch.js";
export {
  RequestVerifier,
  contentDigest,
  headerBoot,
  headerIncarnation,
  headerRule,
  signRequest,
  verifyContentDigest,
} from "./auth.js";
export type { VerifyResult, VerifierOptions } from "./auth.js";
