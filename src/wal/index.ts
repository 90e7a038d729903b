export { Wal } from "./wal.js";
export type { AppendAck, ReadLimits, SealedSegment, WalChunk, WalOptions, WalStats } from "./wal.js";
export type { RecoveryEvidence, RecoveryReport } from "./recovery.js";
export * from "./pure.js";
export { inspectWal } from "./inspect.js";
export {
  decodeSegmentHeader as scanSegmentHeader,
  encodeSegmentHeader,
  parseSegmentFileName,
  scanSegment,
  segmentHeaderBytes,
} from "./segment.js";
export { runsOf } from "./tail-plan.js";
export type { InspectReport, SegmentSummary } from "./inspect.js";
