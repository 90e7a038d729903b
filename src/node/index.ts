export { Region, DrainingError, WaitTimeoutError, mergeRuleOf } from "./region.js";
export type { AppendOptions, AppendResult, RegionOptions, RegionStatus } from "./region.js";
export { buildServer, startServer } from "./server.js";
export type { RunningServer, ServerOptions } from "./server.js";
export { runNode } from "./run.js";
export type { RunningNode } from "./run.js";
