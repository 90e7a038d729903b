/**
 * What a SQLite store about to be moved aside (`crr rebuild`) owes the audit log: its conflicts
 * past the log's conflict mark and the audit notes it wrote with its changes (a displaced
 * damaged winner, an audited repair) that the node's audit pump had not appended when it
 * stopped. Without this they stay in the moved-aside file and the log never tells of them;
 * the new store numbers its conflicts above the mark, so they could not be told later either.
 *
 * Written before the store moves, at least once: the conflicts by the audit pump's own round,
 * the notes page by page by id. A write that fails refuses the rebuild, nothing moved; so does
 * a store another process holds. A store that cannot be read is said, and the rebuild goes on.
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
      refuseIfInUse(file, err);
      return { conflicts: 0, notes: 0, unreadable: (err as Error).message };
    }
    try {
      return await writeLeftovers(store, audit, log);
    } finally {
      // It moves aside next: a damaged file that fails even to close is not a reason to stop.
      await store.close().catch((err: Error) => log.warn({ err: err.message }, "old store: close failed"));
    }
  } finally {
    await audit.close();
  }
}

/** Another process holds the store (a sqlite3 shell, a node the LOCK check missed): moving it aside would take it from under that process. */
function refuseIfInUse(file: string, err: unknown): void {
  const code = ((err as Error).cause as { code?: string } | undefined)?.code ?? "";
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
    throw new StoreInUseError(
      `the old store ${file} is in use by another process (${(err as Error).message}); stop it and run crr rebuild again`,
    );
}

/** Refused as it is, not as a failed audit write (it can surface through the pump or the notes). */
class StoreInUseError extends Error {}

const notesPerPage = 500;

async function writeLeftovers(store: SqliteStore, audit: AuditLog, log: Logger): Promise<AuditedLeftovers> {
  const told = { conflicts: 0, notes: 0 };
  // A store that cannot be read (often why it is rebuilt) does not stop the rebuild: what it
  // owes stays in its file, and the rebuild says so. A log that cannot be written does.
  let unreadable: string | undefined;
  const reading = async <T>(read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      refuseIfInUse(store.file, err);
      unreadable ??= (err as Error).message;
      throw err;
    }
  };
  // The conflicts by the audit pump's own round (the log's mark says where it stopped).
  let failure: Error | undefined;
  const pump = new AuditPump({
    conflicts: async (o) => {
      const rows = await reading(() => store.conflicts(o));
      told.conflicts += rows.length;
      return rows;
    },
    notes: { auditNotes: async () => [], forgetAuditNotes: async () => undefined },
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
  if (failure instanceof StoreInUseError) throw failure;
  if (failure)
    throw new Error(`could not write the old store's conflicts to the audit log: ${failure.message}`);
  try {
    told.notes = await writeNotes(store, audit, reading);
  } catch (err) {
    if (unreadable !== undefined) return { ...told, unreadable };
    if (err instanceof StoreInUseError) throw err;
    throw new Error(
      `could not write the old store's audit notes to the audit log: ${(err as Error).message}`,
    );
  }
  return told;
}

/**
 * The notes, page by page by id: not through the forget, which a store that refuses writes
 * (a full disk or damage, often why it is rebuilt) would refuse, leaving every page after the
 * first unread (found by review). Forgotten where the store lets them be (the file moves aside
 * next, so at least once either way).
 */
async function writeNotes(
  store: SqliteStore,
  audit: AuditLog,
  reading: <T>(read: () => Promise<T>) => Promise<T>,
): Promise<number> {
  let afterId = 0;
  let written = 0;
  for (;;) {
    const notes = await reading(() => store.auditNotes(notesPerPage, afterId));
    if (notes.length === 0) return written;
    for (const n of notes) await audit.append(n.entry);
    written += notes.length;
    afterId = notes.at(-1)!.id;
    await store.forgetAuditNotes(notes.map((n) => n.id)).catch(() => undefined);
  }
}
