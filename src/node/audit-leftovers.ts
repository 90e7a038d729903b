/**
 * What a SQLite store about to be moved aside (`crr rebuild`) owes the audit log: its conflicts
 * past the log's conflict mark and the audit notes it wrote with its changes (a displaced
 * damaged winner, an audited repair) that the node's audit pump had not appended when it
 * stopped. Without this they stay in the moved-aside file and the log never tells of them;
 * the new store numbers its conflicts above the mark, so they could not be told later either.
 *
 * Written by the audit pump itself (the same entries, the same order, at least once), one
 * round, before the store moves: a write that fails refuses the rebuild, nothing moved.
 */
import fs from "node:fs";
import path from "node:path";
import { AuditLog } from "../audit/index.js";
import type { NodeConfig } from "../config/index.js";
import type { Logger } from "../log.js";
import { realRuntime } from "../runtime/index.js";
import { SqliteStore } from "../store/index.js";
import { AuditPump } from "./audit-pump.js";
import { mergeRuleOf } from "./parts.js";

export interface AuditedLeftovers {
  /** Conflicts written to the log (the store held them past the log's mark). */
  conflicts: number;
  /** Audit notes written to the log. */
  notes: number;
  /** The store could not be read (damaged): what it owed, if anything, stays in its file. */
  unreadable?: string;
}

/** Write what the data directory's SQLite store owes the audit log; nothing when there is no store. */
export async function auditStoreLeftovers(config: NodeConfig, log: Logger): Promise<AuditedLeftovers> {
  const file = path.join(config.dataDir, "store.sqlite");
  if (!fs.existsSync(file)) return { conflicts: 0, notes: 0 };
  const audit = AuditLog.open({
    dir: path.join(config.dataDir, "audit"),
    region: config.region,
    fileBytesMax: config.audit.fileBytesMax,
  });
  try {
    let store: SqliteStore;
    try {
      store = new SqliteStore({ path: file, rule: mergeRuleOf(config), digests: false, checkpointer: false });
    } catch (err) {
      return { conflicts: 0, notes: 0, unreadable: (err as Error).message };
    }
    try {
      return await pumpOnce(store, audit, log);
    } finally {
      // It moves aside next: a damaged file that fails even to close is not a reason to stop.
      await store.close().catch((err: Error) => log.warn({ err: err.message }, "old store: close failed"));
    }
  } finally {
    await audit.close();
  }
}

async function pumpOnce(store: SqliteStore, audit: AuditLog, log: Logger): Promise<AuditedLeftovers> {
  const told = { conflicts: 0, notes: 0 };
  // A store that cannot be read (often why it is rebuilt) does not stop the rebuild: what it
  // owes stays in its file, and the rebuild says so. A log that cannot be written does.
  let unreadable: string | undefined;
  const reading = async <T extends unknown[]>(read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      unreadable ??= (err as Error).message;
      throw err;
    }
  };
  let failure: Error | undefined;
  let forgetFailed = false;
  const pump = new AuditPump({
    conflicts: async (o) => {
      const rows = await reading(() => store.conflicts(o));
      told.conflicts += rows.length;
      return rows;
    },
    notes: {
      auditNotes: async (limit) => {
        const notes = await reading(() => store.auditNotes(limit));
        told.notes += notes.length;
        return notes;
      },
      // Appended by then: a store that refuses the delete (read-only) is moved aside all the same.
      forgetAuditNotes: async (ids) => {
        try {
          await store.forgetAuditNotes(ids);
        } catch (err) {
          forgetFailed = true;
          throw err;
        }
      },
    },
    audit,
    log,
    runtime: realRuntime,
    retryDelayMsMin: 1_000,
    retryDelayMsMax: 1_000,
    onFailure: (err) => (failure = err),
  });
  await pump.pump();
  await pump.stop();
  if (unreadable !== undefined) return { ...told, unreadable };
  if (failure && !forgetFailed)
    throw new Error(`could not write the old store's unaudited entries to the audit log: ${failure.message}`);
  return told;
}
