/**
 * The public face of a region, for the embedded library and for `crr serve` alike: open the
 * engine, serve its HTTP API (peers must reach it), start shipping; and a clean close.
 */
import fs from "node:fs";
import path from "node:path";
import { formatHlc } from "../clock/index.js";
import { loadConfig, parseConfig, type NodeConfig } from "../config/index.js";
import { silentLogger, type Logger } from "../log.js";
import { sleep } from "../runtime/index.js";
import { writeFileDurable } from "../util/durable-file.js";
import type { RecordInput } from "../wal/index.js";
import {
  Region,
  type AppendOptions,
  type AppendResult,
  type RegionOptions,
  type RegionStatus,
} from "./region.js";
import { startServer, type RunningServer } from "./http/server.js";

export interface RecordView {
  key: string;
  tenant: string;
  outcome: string;
  body: unknown;
  origin: string;
  lsn: number;
  hlc: string;
}

export interface RegionHandle {
  readonly name: string;
  /** Where this region's HTTP API listens (peers reach it here). */
  readonly url: string;
  /** The engine, for what the handle does not cover (tests, tools). */
  readonly region: Region;
  append(record: RecordInput, options?: AppendOptions): Promise<AppendResult>;
  /**
   * Many records at once (they share a group commit), each answered in order: fulfilled as
   * append() answers, or rejected with why that record was refused. Throws when the region
   * admits no appends now (draining, overloaded: `OverloadedError`), writing nothing.
   */
  appendMany(
    records: readonly RecordInput[],
    options?: AppendOptions,
  ): Promise<Array<PromiseSettledResult<AppendResult>>>;
  get(key: string): Promise<RecordView | undefined>;
  watermarks(): Promise<Record<string, number>>;
  status(): Promise<RegionStatus>;
  /** Refuse appends, then wait until every peer acknowledged everything (or the timeout). */
  drain(options?: { timeoutMs?: number }): Promise<{ drained: boolean; status: RegionStatus }>;
  undrain(): void;
  /**
   * Stop accepting (readiness goes false first, for `readinessGraceMs` unless given), finish
   * in-flight work, close the WAL and the store.
   */
  close(options?: { readinessGraceMs?: number }): Promise<void>;
}

export interface OpenRegionOptions {
  log?: Logger;
  /** Environment for ${VAR} substitution in the config (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** How to reach the other regions (default HTTP to their configured URLs). */
  links?: RegionOptions["links"];
  /** Serve a region without state without asking its peers (an operator's decision). */
  startAlone?: boolean;
  /** Move the WAL aside and start as a new incarnation (an operator accepting its loss). */
  acceptWalLoss?: boolean;
}

export type RunningNode = RegionHandle & { server: RunningServer };

/**
 * Open a region from a config file path, a config object (validated like a file), or an
 * already validated NodeConfig.
 */
export async function openRegion(
  config: string | Record<string, unknown> | NodeConfig,
  options: OpenRegionOptions = {},
): Promise<RunningNode> {
  const c =
    typeof config === "string"
      ? loadConfig(config, options.env)
      : parseConfig(config, "config object", process.cwd(), options.env);
  return runNode(c, options.log ?? silentLogger(), options);
}

/**
 * Open the region, serve its API (peers and status are answered while the startup checks
 * run), start it, and resolve once it admits appends; if the startup checks refuse, close
 * everything and reject with why.
 */
export async function runNode(
  config: NodeConfig,
  log: Logger,
  options: Omit<RegionOptions, "log"> = {},
): Promise<RunningNode> {
  const region = await Region.open(config, { ...options, log });
  let server: RunningServer;
  try {
    server = await startServer(region, { host: config.listen.host, port: config.listen.port });
  } catch (err) {
    await region.close();
    throw err;
  }
  try {
    // Where this node listens (port 0 picks one): written as soon as it listens, because peers
    // may need to reach it while its startup checks run (a region bootstrapping from them).
    await writeFileDurable(
      path.join(config.dataDir, "node.json"),
      `${JSON.stringify({ region: config.region, url: server.url, pid: process.pid, incarnation: region.wal.incarnation })}\n`,
    );
    region.start();
    await region.admitted;
  } catch (err) {
    await server.close();
    await region.close();
    fs.rmSync(path.join(config.dataDir, "node.json"), { force: true });
    throw err;
  }
  log.info(
    {
      region: config.region,
      url: server.url,
      incarnation: region.wal.incarnation,
      peers: region.policy.peers,
    },
    "crr node ready",
  );
  let closing: Promise<void> | undefined;
  return {
    name: region.name,
    url: server.url,
    region,
    server,
    append: (record, opts) => region.append(record, opts),
    appendMany: (records, opts) => region.appendMany(records, opts),
    get: async (key) => {
      const r = await region.get(key);
      if (!r) return undefined;
      const body = r.bodyJson === undefined ? undefined : (JSON.parse(r.bodyJson) as unknown);
      return {
        key: r.key,
        tenant: r.tenant,
        outcome: r.outcome,
        body,
        origin: r.origin,
        lsn: r.lsn,
        hlc: formatHlc(r.hlc),
      };
    },
    watermarks: async () => (await region.watermarksView()).watermarks,
    status: () => region.status(),
    drain: async ({ timeoutMs = config.drain.timeoutMs } = {}) => {
      region.drain();
      const rt = region.runtime;
      const until = rt.nowMs() + timeoutMs;
      let status = await region.status();
      while (!status.caughtUp && rt.nowMs() < until) {
        await sleep(rt, 100);
        status = await region.status();
      }
      return { drained: status.caughtUp, status };
    },
    undrain: () => region.undrain(),
    close: ({ readinessGraceMs = 0 } = {}) =>
      (closing ??= (async () => {
        region.drain();
        if (readinessGraceMs > 0) await sleep(region.runtime, readinessGraceMs);
        await server.close();
        await region.close();
        fs.rmSync(path.join(config.dataDir, "node.json"), { force: true });
      })()),
  };
}
