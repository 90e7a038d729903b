/**
 * Real regions for tests: each one a separate `crr serve` process (the compiled package, as
 * users run it) on 127.0.0.1, with its own data directory, talking real HTTP, started by the
 * project's one launcher (src/launch) and stopped after each test.
 */
import { afterEach } from "vitest";
import { startTcpProxy, type TcpProxy, type TcpProxyOptions } from "../../src/faults/index.js";
import { LocalMesh, deepMerge, type MeshNode, type NodeSpec } from "../../src/launch/index.js";
import { crrBin, repoRoot } from "./cli.js";
import { tempDir, waitFor } from "./tmp.js";

/** Clusters and proxies a test started: stopped after each test, nodes before proxies. */
const runningClusters = new Set<LocalMesh>();
const runningProxies = new Set<TcpProxy>();
afterEach(async () => {
  await Promise.all([...runningClusters].map((c) => c.stop()));
  runningClusters.clear();
  await Promise.all([...runningProxies].map((p) => p.close()));
  runningProxies.clear();
});

/** A fault proxy closed after the test. */
export async function testProxy(o: TcpProxyOptions): Promise<TcpProxy> {
  const p = await startTcpProxy(o);
  runningProxies.add(p);
  return p;
}

export const testSecret = "test-peer-secret-0123456789";

export type { NodeSpec };
export type TestNode = MeshNode;
export type Cluster = LocalMesh;

export interface ClusterOptions {
  regions: Array<string | NodeSpec>;
  /** The crr block for every region (peers default to every other region, multi-way). */
  crr?: (self: string, all: string[]) => Record<string, unknown>;
  /** Extra config for every region. */
  common?: Record<string, unknown>;
  /** Started in beforeAll for several tests: the caller stops it (no stop after each test). */
  shared?: boolean;
  /**
   * A proxy that region `from` reaches region `to` through (a fault proxy the test owns, made
   * with `targetPort: 0`); the cluster points it at `to`'s node whenever that node starts.
   */
  route?: (from: string, to: string) => TcpProxy | undefined;
  /** The nodes serve HTTPS: the CA (and client certificate) the cluster's own checks use. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** Extra environment of every node (e.g. the S3 credentials of the archive). */
  env?: NodeJS.ProcessEnv;
}

export const Cluster = {
  async start(o: ClusterOptions): Promise<Cluster> {
    const c = await LocalMesh.start({
      root: tempDir("crr-cluster-", o.shared),
      regions: o.regions,
      secret: testSecret,
      crr: o.crr,
      common: deepMerge(
        { shipper: { retryDelayMsMax: 500, requestTimeoutMs: 2000, connectTimeoutMs: 1000 } },
        o.common ?? {},
      ),
      route: o.route,
      tls: o.tls,
      env: o.env && (() => o.env!),
      crrMain: crrBin,
      cwd: repoRoot,
    });
    if (!o.shared) runningClusters.add(c);
    return c;
  },
};

export async function api<T = Record<string, unknown>>(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

export function append(
  node: TestNode,
  rec: { key: string; tenant: string; outcome: string; body?: unknown },
  wait?: number,
) {
  return api(`${node.url}/v1/records${wait === undefined ? "" : `?wait=${wait}`}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(rec),
  });
}

export interface StatusBody {
  region: string;
  incarnation: string;
  wal: { durableLsn: number; firstLsn: number; segments: number; bytes: number };
  store: { engine: string; records: number; conflicts: number; digest: string };
  peers: Array<{
    peer: string;
    ackedLsn: number;
    behindRecords: number;
    state: string;
    lagSeconds: number;
    lastError?: string;
  }>;
  watermarks: Record<string, number>;
  divergence: { findings: number; lastScanAt: string | undefined };
  audit: { file: string; seq: number; hash: string; conflictMark: number; failing?: string; pending: number };
  startup: { state: string; detail: string };
  stopped: string | undefined;
  diskFull: string | undefined;
  ready: boolean;
  readiness: { ready: boolean; reason: string | undefined };
}

export async function status(node: TestNode): Promise<StatusBody> {
  return (await api<StatusBody>(`${node.url}/v1/status`)).body;
}

/**
 * Wait until every node has applied every other node's durable records, every origin has
 * taken the acknowledgements of it, and all digests agree.
 */
export async function waitConverged(nodes: TestNode[], deadlineMs = 60_000): Promise<StatusBody[]> {
  return waitFor(
    async () => {
      const all = await Promise.all(nodes.map(status));
      for (const s of all) {
        for (const other of all) {
          if (other === s) continue;
          if ((s.watermarks[other.region] ?? 0) < other.wal.durableLsn) return undefined;
          const shipper = other.peers.find((p) => p.peer === s.region);
          if (shipper && shipper.ackedLsn < other.wal.durableLsn) return undefined;
        }
      }
      return new Set(all.map((s) => s.store.digest)).size === 1 ? all : undefined;
    },
    "regions to converge",
    deadlineMs,
  );
}

/** Append `count` records with `concurrency` in flight, retrying shed ones (429); returns the acknowledged keys. */
export async function appendMany(
  node: TestNode,
  prefix: string,
  count: number,
  tenant = "tenant-a",
  concurrency = 16,
): Promise<string[]> {
  const keys: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const key = `${prefix}-${i}`;
      let r = await append(node, { key, tenant, outcome: i % 5 ? "accepted" : "escalated", body: { i } });
      // Shed under load (429: the node refused it at once, nothing written): retry as a client
      // is told to, a bounded number of times. A loaded test machine trips the queue-delay bound.
      for (let tries = 0; r.status === 429 && tries < 50; tries++) {
        await new Promise((res) => setTimeout(res, 100));
        r = await append(node, { key, tenant, outcome: i % 5 ? "accepted" : "escalated", body: { i } });
      }
      if (r.status !== 200)
        throw new Error(`append ${key} to ${node.name}: ${r.status} ${JSON.stringify(r.body)}`);
      keys.push(key);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return keys;
}
