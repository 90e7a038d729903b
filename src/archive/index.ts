/** The segment archive (S3): uploads, verification before retention, object keys. */
export { Archiver, verifyCopy } from "./archiver.js";
export type { ArchiveStatus, ArchiverOptions } from "./archiver.js";
export { incarnationPrefix, parseSegmentObjectKey, segmentObjectKey } from "./keys.js";
export type { SegmentObject } from "./keys.js";
export { NoSuchObjectError, RequestTally, s3ArchiveStore } from "./s3-store.js";
export type { ArchiveOp, ArchiveStore, S3Settings } from "./s3-store.js";
export {
  ArchiveDamageError,
  ArchiveGapError,
  listAll,
  planRestore,
  restoreInto,
  seedFromArchive,
} from "./restore.js";
export type { ArchiveSeed, RestorePlanStream, RestoreReport } from "./restore.js";
export { ArchiveFollower } from "./follower.js";
export {
  AudienceError,
  audienceObjectKey,
  audienceOf,
  publishAudience,
  readAudience,
  sendsEverything,
  sendsTenant,
  streamAudiences,
  streamId,
} from "./audience.js";
export type { Audience, Policy as AudiencePolicy } from "./audience.js";
export type { FollowerOptions, FollowerStatus } from "./follower.js";
export { AuditArchiver, auditObjectKey } from "./audit-archiver.js";
export type { AuditArchiveStatus } from "./audit-archiver.js";
export { ArchiveEvidence, archiveCursorLsn } from "./evidence.js";
