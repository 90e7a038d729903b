export { ConfigError, loadConfig, parseConfig, peerSecretCharsMin } from "./load.js";
export type { ConflictRuleName, NodeConfig, ReplicationMode } from "./load.js";
export { defaults } from "./defaults.js";
export { replicationPolicy } from "./policy.js";
export type { ReplicationPolicy } from "./policy.js";
