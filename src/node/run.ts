/**
 * A running node: config -> Region -> HTTP server -> shippers, and its clean shutdown.
 * `crr serve` runs this; the embedded library uses Region directly (or this, to serve too).
 */
import fs from "node:fs";
import path from "node:path";
import type { NodeConfig } from "../config/index.js";
import type { Logger } from "../log.js";
import { writeFileDurable } from "../util/durable-file.js";
import { Region } from "./region.js";
import { startServer, type RunningServer } from "./server.js";

export interface RunningNode {
  region: Region;
  server: RunningServer;
  url: string;
  /** Stop accepting, finish in-flight work, close the WAL and the store. */
  stop(): Promise<void>;
}

export async function runNode(config: NodeConfig, log: Logger): Promise<RunningNode> {
  const region = await Region.open(config, { log });
  let server: RunningServer;
  try {
    server = await startServer(region, { host: config.listen.host, port: config.listen.port });
  } catch (err) {
    await region.close();
    throw err;
  }
  region.start();
  // Where this node listens (port 0 picks one): read by `crr status` and by tests.
  await writeFileDurable(
    path.join(config.dataDir, "node.json"),
    `${JSON.stringify({ region: config.region, url: server.url, pid: process.pid, incarnation: region.wal.incarnation })}\n`,
  );
  log.info(
    {
      region: config.region,
      url: server.url,
      incarnation: region.wal.incarnation,
      peers: region.policy.peers,
    },
    "crr node ready",
  );
  let stopping: Promise<void> | undefined;
  return {
    region,
    server,
    url: server.url,
    stop: () =>
      (stopping ??= (async () => {
        region.draining = true;
        await server.close();
        await region.close();
        fs.rmSync(path.join(config.dataDir, "node.json"), { force: true });
      })()),
  };
}
