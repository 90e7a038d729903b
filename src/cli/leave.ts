/**
 * `crr leave --config FILE`: a node of a region served by several nodes (regions.X.nodes:
 * several) leaves it for good. Run with the node stopped: its WAL is replayed into the shared
 * store, then its incarnations are marked left and their claims dropped; the remaining nodes
 * ship its stream to the peers from the store (after their restart), as an older
 * incarnation's. A node that left never starts again from that data directory.
 */
import fs from "node:fs";
import path from "node:path";
import { silentLogger } from "../log.js";
import { Region } from "../node/index.js";
import { CliUsageError, loadConfigOrUsage, parseCommand } from "./args.js";
import { refuseWhileRunning } from "./rebuild.js";

const leaveHelp = `crr leave --config FILE

A node of a region served by several nodes on one PostgreSQL store leaves the region for
good (stop it first). Its incarnations are marked left and their claims dropped; restart the
remaining nodes: their shippers then send its stream to the peers from the store. Its data
directory may be removed afterwards. A node that only restarts never needs this.`;

export async function runLeave(argv: string[]): Promise<number> {
  const { values } = parseCommand("leave", argv, { config: { type: "string", short: "c" } });
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
