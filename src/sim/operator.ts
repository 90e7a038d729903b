/**
 * What the simulated operator does, and the evidence the ledger is judged by: a lost disk or
 * store, a damaged WAL's loss accepted, a gap skipped, a peer removed and added back, a lost
 * node of a region declared gone; and which acknowledgements no copy is left of (set aside,
 * no longer expected) or which versions have evidence outside one store.
 */
import fs from "node:fs";
import path from "node:path";
import { auditLinesOf, siteOf, type SimCluster, type SimNode } from "./cluster.js";
import { simReadable, versionId } from "./store.js";

/**
 * The region's disk is lost while it is down: its data directory is gone. What it
 * acknowledged that no other region holds is lost with it (nothing can bring it back);
 * those ledger entries are set aside, counted, and no longer expected anywhere.
 */
export async function wipe(c: SimCluster, name: string): Promise<void> {
  const n = c.nodes.get(name)!;
  if (c.several(n.regionName)) return wipeNode(c, n);
  await setAsideUnheld(c, { store: name, wal: name }, `every copy was lost (last: the disk of ${name})`);
  c.storeLostAtMs.set(name, c.sched.nowMs);
  c.walIncarnation.delete(name);
  c.watch.storeLost(name);
  await c.o.stores.lose(siteOf(n));
  // What its audit log said is kept aside for the checker, as for a node of several.
  c.lostAuditLines.push(...auditLinesOf(n.config.dataDir).map((line) => ({ region: n.regionName, line })));
  fs.rmSync(n.config.dataDir, { recursive: true, force: true });
  c.disk.forget(n.config.dataDir);
  c.sched.note(`wipe ${name}`);
}

/**
 * A node of a region served by several nodes loses its disk (the shared store lives on):
 * its WAL and audit log are gone, and it starts again later as a new node of the region.
 * The operator declares the lost one gone (`crr leave --node-id`, leaveLostNodes). What
 * its audit log said is kept aside for the checker: an entry written before the loss was
 * written (and is no longer expected on a disk).
 */
async function wipeNode(c: SimCluster, n: SimNode, o: { left?: boolean } = {}): Promise<void> {
  await setAsideUnheld(c, { wal: n.name }, `every copy was lost (last: the WAL of ${n.name})`);
  c.walIncarnation.delete(n.name);
  const nodeId = nodeIdOf(n);
  if (nodeId) c.goneNodes.push({ region: n.regionName, nodeId });
  if (nodeId && !o.left) c.lostNodes.push({ region: n.regionName, nodeId });
  c.lostAuditLines.push(...auditLinesOf(n.config.dataDir).map((line) => ({ region: n.regionName, line })));
  fs.rmSync(n.config.dataDir, { recursive: true, force: true });
  c.disk.forget(n.config.dataDir);
  c.sched.note(`wipe ${n.name} (a node of ${n.regionName})`);
  if (o.left) return;
  // The operator notices some time later (meanwhile the keys it claimed stay claimed).
  declareLaterOn(c);
}

/** The operator declares the lost nodes gone some time from now, until every one is. */
function declareLaterOn(c: SimCluster): void {
  const tick = () => {
    leaveLostNodes(c);
    if (c.lostNodes.length > 0) c.sched.after(1000, tick);
  };
  c.sched.after(c.sched.int(1000, 20_000), tick);
}

function nodeIdOf(n: SimNode): string | undefined {
  const idFile = path.join(n.config.dataDir, "node-id");
  return fs.existsSync(idFile) ? fs.readFileSync(idFile, "utf8").trim() : undefined;
}

/**
 * The operator takes a frozen node for dead and declares it gone (`crr leave --node-id`
 * through a fellow) while it still runs: when it thaws, the store's fence must keep it from
 * claiming or applying anything, and its next heartbeat must stop it.
 */
export function declareFrozenLost(c: SimCluster, name: string): void {
  const n = c.nodes.get(name)!;
  const nodeId = nodeIdOf(n);
  if (n.state !== "up" || !nodeId || (n.proc.frozenUntilMs ?? 0) <= c.sched.nowMs) return;
  c.sched.note(`${name} taken for lost while frozen`);
  c.lostNodes.push({ region: n.regionName, nodeId });
  leaveLostNodes(c);
}

/**
 * What a node marked left asks for (its stop reason): "stop it and start a node with a new,
 * empty data directory". The operator does so; its WAL goes (every record it acknowledged is
 * in the shared store, or the run fails) and its audit log is kept aside for the checker.
 */
export function replaceLeftNodes(c: SimCluster): void {
  for (const n of c.nodes.values()) {
    // Stopped by its heartbeat, or refused at a restart (a configuration change restarted
    // it before the operator came: seed 13 then refused it for ever).
    const left =
      (n.state === "up" && n.region?.stopped?.includes("was marked left")) ||
      (n.state === "refused" && n.refusal?.includes("left region"));
    if (!left) continue;
    c.sched.note(`replace ${n.name}: it was marked left`);
    c.crash(n.name, { torn: false });
    c.sched.task(`replace ${n.name}`, wipeNode(c, n, { left: true }));
    c.sched.after(100, () => void c.boot(n.name));
  }
}

/**
 * The operator's `crr leave --node-id` for every lost node, through a running node of its
 * region (the store's fence: the lost node can no longer claim or apply). The CLI's
 * 10-heartbeat wait is not simulated: heartbeats are stamped by the database's clock,
 * which does not follow simulated time; the operator knows the node is gone.
 */
export function leaveLostNodes(c: SimCluster): void {
  for (const lost of [...c.lostNodes]) {
    // Through a running node that is not stalled (never the lost one itself), or one that
    // is starting (after a lost store, every node waits for the lost one's WAL).
    const via = c
      .nodesOf(lost.region)
      .find(
        (n) =>
          (n.state === "up" || n.state === "booting") &&
          n.region?.store.shared &&
          (n.proc.frozenUntilMs ?? 0) <= c.sched.nowMs,
      );
    if (!via) continue;
    c.lostNodes.splice(c.lostNodes.indexOf(lost), 1);
    c.sched.note(`leave ${lost.region} node ${lost.nodeId.slice(0, 8)} via ${via.name}`);
    const region = via.region!;
    c.sched.task(
      `crr leave --node-id ${lost.nodeId} in ${lost.region}`,
      // The CLI's own connection (the node's config, not its process): never held by a
      // stall or a cut of that node (seed 4 failed on a cut: the operator's call is not the node's).
      simReadable(region.store)
        .shared!.leaveLost(lost.nodeId, 0)
        .then(
          (done) => {
            if (!done.left) throw new Error(`the store refused: seen ${done.seenAgoMs} ms ago`);
          },
          (err: unknown) => {
            // A starting node refused or crashed meanwhile closed the store under the call: again later.
            if (via.region === region && region.store.isOpen) throw err;
            c.lostNodes.push(lost);
            declareLaterOn(c);
          },
        ),
    );
  }
}

/**
 * The operator's answer to a refusal over a damaged WAL: start again with
 * --accept-wal-loss. What the region acknowledged that nobody else holds is set aside as
 * lost (and must be audited there as such).
 */
export async function acceptWalLoss(c: SimCluster, name: string): Promise<void> {
  const n = c.nodes.get(name)!;
  if (n.state !== "refused" || !n.refusal?.includes("--accept-wal-loss")) return;
  await setAsideUnheld(c, { wal: name }, `the WAL of ${name} was damaged and its loss accepted`);
  c.walIncarnation.delete(name);
  n.proc.alive = false;
  c.sched.note(`accept-wal-loss ${name}`);
  await c.boot(name, { acceptWalLoss: true });
}

/**
 * Ledger entries no copy is left of once `lost` is gone (a store, a WAL, or both): a
 * region's store (running, or its last synced image while it is down), or the origin's
 * WAL for its current incarnation. They are no longer expected anywhere.
 */
async function setAsideUnheld(
  c: SimCluster,
  lost: { store?: string; wal?: string },
  why: string,
): Promise<void> {
  const nodes = [...c.nodes.values()];
  const held = await Promise.all(
    nodes.map((n) => (n.regionName === lost.store ? new Set<string>() : c.o.stores.held(siteOf(n)))),
  );
  for (const e of c.ledger) {
    if (e.lost || e.duplicate) continue;
    const kept = nodes.some(
      (n, i) =>
        held[i]!.has(versionId(e)) ||
        (n.regionName === e.origin &&
          n.name !== lost.wal &&
          c.walIncarnation.get(n.name) === e.incarnation &&
          e.lsn >= walFirstLsn(n)),
    );
    if (kept) continue;
    e.lost = why;
    e.lostAtMs = c.sched.nowMs;
    // On PostgreSQL every commit is synced and a node answers once the store holds the
    // record: only a lost store may take an acknowledged record away, never a node's WAL.
    const region = c.regionOf(e.node);
    if (
      lost.store !== region &&
      c.o.stores.kind === "postgres" &&
      e.atMs > (c.storeLostAtMs.get(region) ?? -1)
    )
      c.problems.push(
        `${e.node} acknowledged ${versionId(e)} (${e.key}) but ${region}'s store did not hold it when ${why.replace(/^every copy was lost \(last: (.*)\)$/, "$1 was lost")}`,
      );
  }
}

/**
 * Whether the version `node`'s store holds of `key` has evidence outside that store: the same
 * version in another region's store (running, or what it left if down), or in its
 * origin's WAL (what reconcile reads).
 */
export async function copiedElsewhere(c: SimCluster, node: string, key: string): Promise<boolean> {
  const region = c.regionOf(node);
  const store = c.nodes.get(node)!.region?.store;
  const v = store && (await simReadable(store).get(key));
  if (!v) return true;
  for (const n of c.nodes.values()) {
    const inWal =
      n.regionName === v.origin && c.walIncarnation.get(n.name) === v.incarnation && v.lsn >= walFirstLsn(n);
    if (inWal) return true;
    if (n.regionName !== region && (await c.o.stores.held(siteOf(n))).has(versionId(v))) return true;
  }
  return false;
}

/** The first LSN the region's WAL still holds (retention removes whole segments, named by their first LSN). */
function walFirstLsn(n: SimNode): number {
  let names: string[];
  try {
    names = fs.readdirSync(path.join(n.config.dataDir, "wal")).filter((f) => /^\d{20}\.wal$/.test(f));
  } catch {
    return Infinity;
  }
  return names.length === 0 ? Infinity : Math.min(...names.map((f) => Number(f.slice(0, 20))));
}

/**
 * The operator's answer to a shipper stuck on LSNs nobody holds (its error names the
 * command): `crr skip-gap`, audited. What is skipped is lost for that peer: ledger entries
 * nobody holds any more are set aside first.
 */
export async function skipGap(c: SimCluster, name: string, peer: string, throughLsn: number): Promise<void> {
  const region = c.nodes.get(name)?.region;
  if (!region) return;
  await setAsideUnheld(c, {}, `nobody held it; skipped by the operator for ${peer}`);
  c.sched.note(`skip-gap ${name} ${peer} ${throughLsn}`);
  await region.skipGap(peer, throughLsn, "simulated operator");
}

/** The store alone is lost while the region is down (the WAL is kept), every node of it down. */
export async function loseStore(c: SimCluster, region: string): Promise<void> {
  const n = c.nodesOf(region)[0]!;
  await setAsideUnheld(c, { store: region }, `every copy was lost (last: the store of ${region})`);
  c.storeLostAtMs.set(region, c.sched.nowMs);
  c.watch.storeLost(region);
  await c.o.stores.lose(siteOf(n));
  c.sched.note(`lose-store ${region}`);
  // The new store does not know that nodes whose disks were lost left; a fellow that still
  // remembers one waits for its WAL until the operator declares it gone again.
  const gone = c.goneNodes.filter((g) => g.region === region);
  for (const g of gone) if (!c.lostNodes.some((l) => l.nodeId === g.nodeId)) c.lostNodes.push(g);
  if (gone.length > 0) declareLaterOn(c);
}
