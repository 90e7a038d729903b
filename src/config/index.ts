export { ConfigError, loadConfig, parseConfig, peerSecretCharsMin } from "./load.js";
export type { ConflictRuleName, NodeConfig, ReplicationMode, TlsConfig } from "./load.js";
export { credentialsOf } from "./credentials.js";
export type { Credentials } from "./credentials.js";
export { defaults } from "./defaults.js";
export { replicationPolicy } from "./policy.js";
export type { ReplicationPolicy } from "./policy.js";
