/**
 * crr as a library: the public API of the package root. Everything else is internal.
 *
 *   import { openRegion } from "crr";
 *   const region = await openRegion("./us-east-1.yaml");
 *   await region.append({ key: "pcs-7f3a", tenant: "tenant-a", outcome: "accepted" });
 */
export { openRegion } from "./node/index.js";
export type {
  AppendOptions,
  AppendResult,
  OpenRegionOptions,
  PeerStatus,
  RecordView,
  RegionHandle,
  RegionStatus,
} from "./node/index.js";
export { DataDirLockedError, DrainingError, OverloadedError, WaitTimeoutError } from "./node/index.js";
export { ConfigError, loadConfig, parseConfig } from "./config/index.js";
export type { NodeConfig } from "./config/index.js";
export {
  ClockSkewError,
  CrrError,
  RecordInvalidError,
  SegmentCorruptError,
  WalBusyError,
  WalWriteError,
  isRetryable,
} from "./errors.js";
export type { RecordInput } from "./wal/index.js";
export { createLogger } from "./log.js";
export type { Logger } from "./log.js";
