export { Region, DrainingError, WaitTimeoutError, mergeRuleOf } from "./region.js";
export type { AppendOptions, AppendResult, PeerStatus, RegionOptions, RegionStatus } from "./region.js";
export { DataDirLockedError } from "./lock.js";
export { buildServer, startServer } from "./server.js";
export type { RunningServer, ServerOptions } from "./server.js";
export { openRegion, runNode } from "./run.js";
export type { OpenRegionOptions, RecordView, RegionHandle, RunningNode } from "./run.js";
