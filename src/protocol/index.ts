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
  answerCanonical,
  contentDigest,
  headerBoot,
  headerIncarnation,
  headerKey,
  headerNonce,
  headerRegion,
  headerRule,
  headerSignature,
  headerTimestamp,
  headerTo,
  requestCanonical,
  signAnswer,
  signRequest,
  verifyAnswer,
  verifyContentDigest,
  verifyDigestHash,
} from "./auth.js";
export type { ReplayFloor, VerifyResult, VerifierOptions } from "./auth.js";
export {
  KeyFormatError,
  ed25519PublicKey,
  ed25519Signer,
  keyIdOf,
  publicKeyRing,
  sharedKeyId,
  sharedSecret,
} from "./keys.js";
export type { KeyCheck, KeyRing, Signer } from "./keys.js";
export { checkSeal, sealObject, sha256Hex } from "./seal.js";
export type { Seal, SealedObject } from "./seal.js";
