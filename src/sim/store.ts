/**
 * The simulator's view of a region's store: SQLite on the simulated disk, read on the calling
 * thread (the checkers run between scheduler steps and must see one instant).
 */
import type { Region } from "../node/index.js";
import { SqliteStore } from "../store/index.js";

export function simStore(region: Region): SqliteStore {
  if (!(region.store instanceof SqliteStore))
    throw new Error(`the simulator runs on SQLite; region ${region.name} opened ${region.store.description}`);
  return region.store;
}
