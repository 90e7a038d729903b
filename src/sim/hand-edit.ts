/**
 * An operator's hand edit of a region's store, and the operator's answer to it: `crr verify`
 * (a full scrub, then the divergence check) and `crr reconcile --apply`, which must put back
 * what clients were told from evidence alone (the origin's WAL, or an intact copy elsewhere),
 * never spread the edit. The edit comes once traffic has stopped (at the heal): with appends
 * still arriving, a deleted key would be decided again, which is the edit's doing, not a bug.
 */
import path from "node:path";
import Database from "better-sqlite3";
import { reconcileFindings, type Finding, type ReconcileIo } from "../divergence/index.js";
import { mergeRuleOf } from "../node/index.js";
import type { SimCluster } from "./cluster.js";

/** Change (or delete) one record of `name`'s store from outside the engine; the key, if one was edited. */
export function handEdit(c: SimCluster, name: string): string | undefined {
  const n = c.nodes.get(name)!;
  if (n.state !== "up") return undefined;
  // A second connection, as the sqlite3 shell would open: the engine is not told.
  const db = new Database(path.join(n.config.dataDir, "store.sqlite"));
  try {
    const keys = db.prepare("SELECT key FROM records ORDER BY bucket, key").pluck().all() as string[];
    if (keys.length === 0) return undefined;
    const key = c.sched.pick(keys);
    const remove = c.sched.chance(0.3);
    if (remove) db.prepare("DELETE FROM records WHERE key = ?").run(key);
    else db.prepare("UPDATE records SET outcome = 'edited by hand' WHERE key = ?").run(key);
    c.handEdited.add(key);
    c.sched.note(`hand ${remove ? "delete" : "edit"} ${name} ${key}`);
    return key;
  } finally {
    db.close();
  }
}

/** `crr reconcile --apply` from `name` for the findings on hand-edited keys (others must resolve by themselves). */
export async function reconcileHandEdits(
  c: SimCluster,
  name: string,
  findings: readonly Finding[],
): Promise<void> {
  const region = c.nodes.get(name)!.region;
  const mine = findings.filter((f) => c.handEdited.has(f.key));
  if (!region || mine.length === 0) return;
  const io: ReconcileIo = {
    walOf: async (origin, lsn) =>
      origin === name
        ? region.walRecords([lsn])
        : (await region.links.get(origin)!.walRecords([lsn])).records,
    repair: async (target, version) => {
      if (target === name) await region.repair([version], "simulated operator");
      else await region.links.get(target)!.repair([version]);
    },
  };
  const done = await reconcileFindings(mine, io, { rule: mergeRuleOf(region.config), apply: true });
  c.sched.note(`reconcile ${name} repaired=${done.repaired} undecided=${done.undecided}`);
}
