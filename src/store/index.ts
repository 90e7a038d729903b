export { SqliteStore, storeError } from "./sqlite-store.js";
export type { SqliteStoreOptions } from "./sqlite-store.js";
export * from "./pure.js";
