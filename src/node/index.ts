export {
  Region,
  DrainingError,
  OverloadedError,
  UnavailableError,
  WaitTimeoutError,
  mergeRuleOf,
} from "./region.js";
export type {
  AppendOptions,
  AppendResult,
  PeerStatus,
  RegionOptions,
  RegionStatus,
  Readiness,
  VerifyReport,
} from "./region.js";
export { DataDirLockedError } from "./lock.js";
export { buildServer, startServer } from "./http/server.js";
export type { RunningServer, ServerOptions } from "./http/server.js";
export { openRegion, runNode } from "./run.js";
export type { OpenRegionOptions, RecordView, RegionHandle, RunningNode } from "./run.js";
export { copyMesh } from "./copy.js";
export { auditStoreLeftovers } from "./audit-leftovers.js";
export type { AuditedLeftovers } from "./audit-leftovers.js";
export type { SeededStream } from "./copy.js";
export { seedRegion } from "./seed.js";
export type { SeedReport } from "./seed.js";
export type { LinkFactory } from "./links.js";
export type { StoreHooks } from "./parts.js";
export { StartupRefusedError } from "./startup.js";
export { LsnReuseError } from "./local-applier.js";
