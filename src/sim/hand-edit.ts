/**
 * An operator's hand edit of a region's store, and the operator's answer to it: `crr verify`
 * (a full scrub, then the divergence check) and `crr reconcile --apply`, which must put back
 * what clients were told from evidence alone (the origin's WAL, or an intact copy elsewhere),
 * never spread the edit. The edit comes once traffic has stopped (at the heal): with appends
 * still arriving, a deleted key would be decided again, which is the edit's doing, not a bug.
 */
import { reconcileFindings, type Finding, type ReconcileIo } from "../divergence/index.js";
import { mergeRuleOf } from "../node/index.js";
import { siteOf, type SimCluster } from "./cluster.js";
import { copiedElsewhere } from "./operator.js";

/** Change (or delete) one record of `name`'s store from outside the engine; the key, if one was edited. */
export async function handEdit(c: SimCluster, name: string): Promise<string | undefined> {
  const n = c.nodes.get(name)!;
  if (n.state !== "up") return undefined;
  // A second connection, as the sqlite3 shell or psql would open: the engine is not told.
  let remove = false;
  const key = await c.o.stores.editByHand(siteOf(n), async (keys) => {
    const chosen = c.sched.pick(keys);
    remove = c.sched.chance(0.3);
    // An edit of the last intact copy leaves reconcile no evidence: nothing could put back
    // what clients were told, by design. That is not what this step tests (PostgreSQL seed
    // 70: the other regions had lost their stores, the origin its disk).
    if (!(await copiedElsewhere(c, name, chosen))) {
      c.sched.note(`hand edit of ${name} ${chosen} left out: its last intact copy`);
      return undefined;
    }
    return { key: chosen, remove };
  });
  if (key === undefined) return undefined;
  c.handEdited.add(key);
  c.sched.note(`hand ${remove ? "delete" : "edit"} ${name} ${key}`);
  return key;
}

/** `crr reconcile --apply` from `name` for the findings on hand-edited keys (others must resolve by themselves). */
export async function reconcileHandEdits(
  c: SimCluster,
  name: string,
  findings: readonly Finding[],
): Promise<void> {
  const region = c.nodes.get(name)!.region;
  const own = c.regionOf(name);
  const mine = findings.filter((f) => c.handEdited.has(f.key));
  if (!region || mine.length === 0) return;
  const io: ReconcileIo = {
    walOf: async (origin, lsn) =>
      origin === own ? region.walRecords([lsn]) : (await region.links.get(origin)!.walRecords([lsn])).records,
    repair: async (target, version) => {
      if (target === own) await region.repair([version], "simulated operator");
      else await region.links.get(target)!.repair([version]);
    },
  };
  // A repair a peer refuses for now (it restarted a moment ago and takes the signer's
  // requests only once they are signed after its replay floor: seed 9 on PostgreSQL) is the
  // operator's to run again: the findings stay, and the next verification reconciles again;
  // findings left at the end fail the run.
  try {
    const done = await reconcileFindings(mine, io, { rule: mergeRuleOf(region.config), apply: true });
    c.sched.note(`reconcile ${name} repaired=${done.repaired} undecided=${done.undecided}`);
  } catch (err) {
    c.sched.note(`reconcile ${name} failed, again later: ${(err as Error).message}`);
  }
}
