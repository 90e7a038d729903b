export { ConfigError, loadConfig, parseConfig, peerSecretCharsMin } from "./load.js";
export type { ConflictRuleName, NodeConfig, ReplicationMode, TlsConfig } from "./load.js";
export { credentialsOf } from "./credentials.js";
export type { Credentials } from "./credentials.js";
export { defaults } from "./defaults.js";
export { acceptedTenants, replicationPolicy, wideningOf } from "./policy.js";
export type { PolicyWidening, ReplicationPolicy } from "./policy.js";
