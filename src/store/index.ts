export { SqliteStore, storeError } from "./sqlite-store.js";
export type { SqliteStoreOptions } from "./sqlite-store.js";
export * from "./pure.js";
export { PostgresStore, describePostgres } from "./postgres-store.js";
export { emptyStoreSql } from "./postgres-empty.js";
export type { PostgresStoreOptions } from "./postgres-store.js";
