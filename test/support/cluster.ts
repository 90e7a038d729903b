/**
 * Real regions for tests: each one a separate `crr serve` process (the compiled package, as
 * users run it) on 127.0.0.1, with its own data directory, talking real HTTP.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach } from "vitest";
import YAML from "yaml";
import { startTcpProxy, type TcpProxy, type TcpProxyOptions } from "../../src/faults/index.js";
import { crrBin, repoRoot } from "./cli.js";
import { tempDir, waitFor } from "./tmp.js";

/** Clusters and proxies a test started: stopped after each test, nodes before proxies. */
const runningClusters = new Set<Cluster>();
const runningProxies = new Set<TcpProxy>();
afterEach(async () => {
  await Promise.all([...runningClusters].map((c) => c.stop()));
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

export interface NodeSpec {
  name: string;
  /** Extra config merged into this region's file (e.g. crr policies, shipper limits). */
  config?: Record<string, unknown>;
}

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
}

export interface TestNode {
  name: string;
  /** Where the node is reached: a front the cluster owns, stable across restarts. */
  url: string;
  port: number;
  dataDir: string;
  configFile: string;
  proc: ChildProcess | undefined;
  output: string[];
  /** The port the node itself bound (port 0: the kernel picked it), while it runs. */
  listenPort: number | undefined;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && cur && typeof cur === "object" && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/**
 * Nodes bind port 0 and report where they listen (node.json); every region is reached through
 * a front the cluster owns (bound once, never released), so no port is ever handed over
 * between a test and a child, and a restarted node keeps its URL.
 */
export class Cluster {
  readonly nodes = new Map<string, TestNode>();
  private readonly fronts = new Map<string, TcpProxy>();
  /** Proxies the test routes through, by the region they lead to. */
  private readonly routed: Array<{ proxy: TcpProxy; to: string }> = [];
  private constructor(private readonly o: ClusterOptions) {}

  static async start(o: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(o);
    if (!o.shared) runningClusters.add(c);
    const root = tempDir("crr-cluster-");
    const specs = o.regions.map((r) => (typeof r === "string" ? { name: r } : r));
    const names = specs.map((s) => s.name);
    for (const s of specs) {
      const front = await startTcpProxy({ targetPort: 0 });
      c.fronts.set(s.name, front);
      c.nodes.set(s.name, {
        name: s.name,
        url: front.url,
        port: front.port,
        dataDir: path.join(root, s.name),
        configFile: path.join(root, `${s.name}.yaml`),
        proc: undefined,
        output: [],
        listenPort: undefined,
      });
    }
    for (const s of specs) c.writeConfig(s, names);
    try {
      await Promise.all(names.map((n) => c.startNode(n)));
    } catch (err) {
      await c.stop(); // never leave the nodes that did start running
      throw err;
    }
    return c;
  }

  private writeConfig(s: NodeSpec, names: string[]): void {
    const node = this.node(s.name);
    const regions = Object.fromEntries(
      names.map((n) => {
        const via = n === s.name ? undefined : this.o.route?.(s.name, n);
        if (via) this.routed.push({ proxy: via, to: n });
        return [n, { url: via?.url ?? this.node(n).url }];
      }),
    );
    let config: Record<string, unknown> = {
      region: s.name,
      dataDir: node.dataDir,
      listen: { host: "127.0.0.1", port: 0 },
      regions,
      crr: this.o.crr
        ? this.o.crr(s.name, names)
        : names.length > 1
          ? { enabled: true, replicationMode: "multi-way", peers: names.filter((n) => n !== s.name) }
          : { enabled: false },
      auth: { peerSecret: "${CRR_PEER_SECRET}" },
      shipper: { retryDelayMsMax: 500, requestTimeoutMs: 2000, connectTimeoutMs: 1000 },
      log: { level: "info" },
    };
    if (this.o.common) config = deepMerge(config, this.o.common);
    if (s.config) config = deepMerge(config, s.config);
    fs.writeFileSync(node.configFile, YAML.stringify(config));
  }

  /** Merge `patch` into a node's config file (takes effect when the node next starts). */
  reconfigure(name: string, patch: Record<string, unknown>): void {
    const node = this.node(name);
    const current = YAML.parse(fs.readFileSync(node.configFile, "utf8")) as Record<string, unknown>;
    fs.writeFileSync(node.configFile, YAML.stringify(deepMerge(current, patch)));
  }

  node(name: string): TestNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** Point the front and every routed proxy of `name` at `port` (0: nobody). */
  private target(name: string, port: number): void {
    this.fronts.get(name)!.setTarget(port);
    for (const r of this.routed) if (r.to === name) r.proxy.setTarget(port);
    this.node(name).listenPort = port || undefined;
  }

  /** Start (or restart) a node's process, wait until it listens (node.json), then until it is ready. */
  async startNode(
    name: string,
    args: string[] = [],
    env: NodeJS.ProcessEnv = {},
    /** A command the node runs under (e.g. strace and its options), or none. */
    wrap: string[] = [],
  ): Promise<void> {
    const node = this.node(name);
    fs.rmSync(path.join(node.dataDir, "node.json"), { force: true });
    const command = [...wrap, process.execPath, crrBin, "serve", "--config", node.configFile, ...args];
    const proc = spawn(command[0]!, command.slice(1), {
      cwd: repoRoot,
      env: { ...process.env, CRR_PEER_SECRET: testSecret, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    node.proc = proc;
    const keep = (d: Buffer) => {
      node.output.push(d.toString());
      if (node.output.length > 2000) node.output.splice(0, 1000);
    };
    proc.stdout!.on("data", keep);
    proc.stderr!.on("data", keep);
    let exited: number | null | string = null;
    proc.on("exit", (code, sig) => (exited = sig ?? code));
    const failed = () => {
      if (exited !== null)
        throw new Error(`${name} exited (${String(exited)}) while starting:\n${node.output.join("")}`);
    };
    const port = await waitFor(() => {
      failed();
      try {
        const info = JSON.parse(fs.readFileSync(path.join(node.dataDir, "node.json"), "utf8")) as {
          url: string;
          pid: number;
        };
        // Under a wrapper the node is the wrapper's child: any node.json written since is its.
        return info.pid === proc.pid || wrap.length > 0 ? Number(new URL(info.url).port) : undefined;
      } catch {
        return undefined; // not written yet
      }
    }, `${name} to listen`);
    this.target(name, port);
    await waitFor(async () => {
      failed();
      return (
        (await fetch(`${node.url}/readyz`)
          .then((r) => r.status === 200)
          .catch(() => false)) || undefined
      );
    }, `${name} to be ready`);
  }

  /** SIGKILL (the crash case) or SIGTERM (graceful); resolves when the process is gone. */
  async stopNode(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<number | string | null> {
    const node = this.node(name);
    const proc = node.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      this.target(name, 0);
      return proc?.signalCode ?? proc?.exitCode ?? null;
    }
    const exited = new Promise<number | string | null>((resolve) =>
      proc.on("exit", (code, sig) => resolve(sig ?? code)),
    );
    // Under a wrapper (strace), signal the node itself; the wrapper ends with it.
    const nodePid = this.nodePid(name);
    if (nodePid !== undefined && nodePid !== proc.pid) process.kill(nodePid, signal);
    else proc.kill(signal);
    const result = await exited;
    node.proc = undefined;
    this.target(name, 0);
    return result;
  }

  private nodePid(name: string): number | undefined {
    try {
      const info = JSON.parse(fs.readFileSync(path.join(this.node(name).dataDir, "node.json"), "utf8")) as {
        pid: number;
      };
      return info.pid;
    } catch {
      return undefined; // not listening yet, or already gone
    }
  }

  async stop(): Promise<void> {
    runningClusters.delete(this);
    await Promise.all([...this.nodes.keys()].map((n) => this.stopNode(n, "SIGKILL")));
    await Promise.all([...this.fronts.values()].map((f) => f.close()));
  }

  logs(name: string): string {
    return this.node(name).output.join("");
  }
}

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
  store: { records: number; conflicts: number; digest: string };
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

/** Append `count` records with `concurrency` in flight; returns the acknowledged keys. */
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
      const r = await append(node, { key, tenant, outcome: i % 5 ? "accepted" : "escalated", body: { i } });
      if (r.status !== 200)
        throw new Error(`append ${key} to ${node.name}: ${r.status} ${JSON.stringify(r.body)}`);
      keys.push(key);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return keys;
}
