export { SqliteStore, storeError } from "./sqlite-store.js";
export type { CheckedRecord, SqliteStoreOptions } from "./sqlite-store.js";
export * from "./pure.js";
