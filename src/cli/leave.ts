/**
 * `crr leave --config FILE`: a node of a region served by several nodes (regions.X.nodes:
 * several) leaves it for good. Run with the node stopped: its WAL is replayed into the shared
 * store, then its incarnations are marked left and their claims dropped; the remaining nodes
 * notice it at their next heartbeat, audit it, and ship its stream to the peers from the
 * store, as an older incarnation's. A node that left never starts again from that data
 * directory.
 *
 * `crr leave --config FILE --node-id ID`: the same for a node whose data directory is lost,
 * run with another node's config. Refused while that node's heartbeat is recent.
 */
import fs from "node:fs";
import path from "node:path";
import { silentLogger } from "../log.js";
import type { NodeConfig } from "../config/index.js";
import { Region, mergeRuleOf } from "../node/index.js";
import { PostgresStore, type RegionNode } from "../store/index.js";
import { CliUsageError, loadConfigOrUsage, parseCommand } from "./args.js";
import { refuseWhileRunning } from "./rebuild.js";

/** A node not seen for this many heartbeats may be declared lost. */
const lostAfterProbes = 10;

const leaveHelp = `crr leave --config FILE [--node-id ID]

A node of a region served by several nodes on one PostgreSQL store leaves the region for
good (stop it first). Its WAL is replayed into the store, its incarnations are marked left
and their claims dropped; the remaining nodes notice it within health.probeIntervalMs, audit
it (kind node-left) and send its stream to the peers from the store. Its data directory may
be removed afterwards. A node that only restarts never needs this.

--node-id ID   the node whose data directory is lost (its id is in crr status' nodes), run
               with another node's config. Refused while that node was seen within
               ${lostAfterProbes} heartbeats (health.probeIntervalMs): stop it first. Records its
               WAL held that never reached the store were never acknowledged by it. A node
               the store does not know (it was lost or restored from a backup) is recorded
               as left, so the nodes that remember it stop waiting for its WAL.`;

export async function runLeave(argv: string[]): Promise<number> {
  const { values } = parseCommand("leave", argv, {
    config: { type: "string", short: "c" },
    "node-id": { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${leaveHelp}\n`);
    return 0;
  }
  if (typeof values.config !== "string")
    throw new CliUsageError(`leave: --config FILE is required\n\n${leaveHelp}`);
  const config = loadConfigOrUsage(values.config);
  if (config.store.kind !== "postgres" || config.regions[config.region]?.nodes !== "several")
    throw new CliUsageError(
      `leave: ${config.region} is not served by several nodes (store.kind: postgres and regions.${config.region}.nodes: several)`,
    );
  if (typeof values["node-id"] === "string") return leaveLost(config, values["node-id"]);
  refuseWhileRunning(config.dataDir, "leave");
  if (!fs.existsSync(path.join(config.dataDir, "node-id")))
    throw new CliUsageError(`leave: ${config.dataDir} holds no node-id: this node never joined`);
  // Opened as the node would be: its WAL is replayed into the store first, so every record it
  // wrote is decided there before its claims end (a record a peer already got included).
  const region = await Region.open(config, { log: silentLogger() });
  try {
    const shared = region.store.shared!;
    const nodeId = region.nodeId!;
    const mine = (await shared.regionNodes()).filter((n) => n.nodeId === nodeId);
    await shared.leaveRegion(nodeId);
    process.stdout.write(
      `node ${nodeId} left ${config.region}: its WAL is in the store, incarnations ${mine.map((n) => n.incarnation).join(", ")} are marked left and their claims dropped; restart the region's other nodes so they ship its stream from the store\n`,
    );
    return 0;
  } finally {
    await region.close();
  }
}

/**
 * A node the store does not know (it was lost or restored from a backup, and the node's data
 * directory is lost too): recorded as left, so the fellows that remember it stop waiting for
 * its WAL. Only a well-formed node id (a typo must not block nothing real, nor change anything).
 */
async function leaveUnknown(
  store: PostgresStore,
  config: NodeConfig,
  nodeId: string,
  nodes: RegionNode[],
): Promise<number> {
  if (!/^[0-9a-f]{32}$/.test(nodeId))
    throw new CliUsageError(
      `leave: no node ${nodeId} in ${config.region}'s store, and it is not a node id (32 hex digits; nodes: ${[...new Set(nodes.map((n) => n.nodeId))].join(", ") || "none"}); nothing was changed`,
    );
  // The same quiet time as for a known node: one that joins meanwhile is refused, not marked left.
  const quietMs = lostAfterProbes * config.health.probeIntervalMs;
  const done = await store.shared.leaveLost(nodeId, quietMs);
  if (!done.left)
    throw new CliUsageError(
      `leave: node ${nodeId} joined ${config.region} just now (seen ${Math.round(done.seenAgoMs / 1000)} s ago) and may be running: stop it, or wait; nothing was changed`,
    );
  process.stdout.write(
    `node ${nodeId} is not in ${config.region}'s store (it was lost or restored from a backup): recorded as left, so the region's nodes that remember it stop waiting for its WAL, and it is refused if it comes back. What its lost WAL held that no peer holds is lost\n`,
  );
  return 0;
}

/** `--node-id`: a node whose data directory is lost leaves, declared by another node's config. */
async function leaveLost(config: NodeConfig, nodeId: string): Promise<number> {
  const ownFile = path.join(config.dataDir, "node-id");
  if (fs.existsSync(ownFile) && fs.readFileSync(ownFile, "utf8").trim() === nodeId)
    throw new CliUsageError(
      `leave: ${nodeId} is this config's own node (${ownFile}): stop it and run crr leave --config without --node-id`,
    );
  const store = await PostgresStore.open({ url: config.store.url!, rule: mergeRuleOf(config), poolSize: 1 });
  try {
    const nodes = await store.shared.regionNodes();
    const theirs = nodes.filter((n) => n.nodeId === nodeId);
    if (theirs.length === 0) return await leaveUnknown(store, config, nodeId, nodes);
    if (theirs.every((n) => n.leftAtMs !== undefined))
      throw new CliUsageError(`leave: node ${nodeId} already left ${config.region}; nothing was changed`);
    // Checked and done in one transaction, on the database's clock (a heartbeat cannot land between).
    const quietMs = lostAfterProbes * config.health.probeIntervalMs;
    const done = await store.shared.leaveLost(nodeId, quietMs);
    if (!done.left)
      throw new CliUsageError(
        `leave: node ${nodeId} was seen ${Math.round(done.seenAgoMs / 1000)} s ago and may be running (a node is taken for lost after ${lostAfterProbes} missed heartbeats, ${quietMs / 1000} s): stop it, or wait; nothing was changed`,
      );
    process.stdout.write(
      `node ${nodeId} left ${config.region} (its data directory lost): incarnations ${done.incarnations.join(", ")} are marked left and ${done.dropped} claims of appends it never finished dropped; the running nodes audit it and ship its stream from the store. A node marked left can no longer claim or apply (the store refuses it). Records its WAL held that never reached the store were never acknowledged by it and are not shipped\n`,
    );
    return 0;
  } finally {
    await store.close();
  }
}
