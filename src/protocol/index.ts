export {
  BATCH_FLAG_SKIP_GAP,
  BatchInvalidError,
  decodeBatch,
  decodeBatchHeader,
  encodeBatch,
  batchHeaderBytes,
} from "./batch.js";
export type { BatchHeader, DecodedBatch } from "./batch.js";
export { RequestVerifier, contentDigest, signRequest, verifyContentDigest } from "./auth.js";
export type { VerifyResult, VerifierOptions } from "./auth.js";
