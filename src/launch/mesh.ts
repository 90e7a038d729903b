/**
 * Real regions on this machine: each a `crr serve` process on 127.0.0.1 with its own data
 * directory and config file, talking real HTTP. The one launcher of the benchmark harness,
 * the demo and the tests' process clusters (the simulator's in-process mesh is src/sim/).
 *
 * Nodes bind port 0 and report where they listen (node.json in their data directory), so no
 * port is ever handed over between this process and a child. With `fronts` (the default)
 * every region is reached through a front this process owns, bound once, so a restarted
 * node keeps its URL; without them a node's URL is its own, new at each start. Links may be
 * routed through fault proxies (`route`): the mesh points them at the target's node
 * whenever that node starts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request, type Dispatcher } from "undici";
import YAML from "yaml";
import { startTcpProxy, type TcpProxy } from "../faults/index.js";
import { deepMerge } from "./merge.js";
import { waitUntil } from "./wait.js";

export interface NodeSpec {
  name: string;
  /** Extra config merged into this region's file (e.g. crr policies, shipper limits). */
  config?: Record<string, unknown>;
}

export interface MeshOptions {
  /** Directory for the config files, data directories and (with output "file") logs. */
  root: string;
  regions: Array<string | NodeSpec>;
  /** The peers' shared secret, passed to each node as CRR_PEER_SECRET (never written to a file). */
  secret: string;
  /** The crr block for every region (default: multi-way, every other region a peer). */
  crr?: (self: string, all: string[]) => Record<string, unknown>;
  /** Extra config for every region. */
  common?: Record<string, unknown>;
  /** A proxy (made with `targetPort: 0`) that region `from` reaches region `to` through. */
  route?: (from: string, to: string) => TcpProxy | undefined;
  /** Fronts this process owns, one per region, so URLs survive restarts (default true). */
  fronts?: boolean;
  /** Extra environment per node (e.g. CRR_CLOCK_OFFSET_MS). */
  env?: (name: string) => NodeJS.ProcessEnv;
  /** Where a node's output goes: kept in memory (`logs()`), or appended to <root>/<name>.log. */
  output?: "memory" | "file";
  /** The crr entry point (default: the compiled CLI next to this module). */
  crrMain?: string;
  cwd?: string;
  readyTimeoutMs?: number;
  /**
   * The nodes serve HTTPS (their configs set listen.tls): URLs are https://, and the mesh's
   * own readiness checks trust `ca` and present `cert`/`key` (a node may require client certificates).
   */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

export interface MeshNode {
  name: string;
  /** Where the node is reached (its front, or its own listener while it runs). */
  url: string;
  dataDir: string;
  configFile: string;
  logFile: string;
  proc: ChildProcess | undefined;
  output: string[];
  /** The port the node itself bound, while it runs. */
  listenPort: number | undefined;
}

export const crrMainDefault = fileURLToPath(new URL("../cli/main.js", import.meta.url));

export class LocalMesh {
  readonly nodes = new Map<string, MeshNode>();
  private readonly fronts = new Map<string, TcpProxy>();
  /** Proxies links are routed through, by the region they lead to. */
  private readonly routed: Array<{ proxy: TcpProxy; to: string }> = [];
  /** The admin routes' bearer token every node of the mesh is given. */
  readonly adminToken = randomBytes(24).toString("hex");

  private constructor(readonly o: MeshOptions) {}

  /** Write every config file and start every node; on failure stop what started. */
  static async start(o: MeshOptions): Promise<LocalMesh> {
    const m = new LocalMesh(o);
    const specs = o.regions.map((r) => (typeof r === "string" ? { name: r } : r));
    try {
      for (const s of specs) await m.add(s.name);
      for (const s of specs)
        m.writeConfig(
          s,
          specs.map((x) => x.name),
        );
      await Promise.all(specs.map((s) => m.startNode(s.name)));
    } catch (err) {
      await m.stop(); // never leave the nodes that did start running
      throw err;
    }
    return m;
  }

  private async add(name: string): Promise<void> {
    const front = this.o.fronts === false ? undefined : await startTcpProxy({ targetPort: 0 });
    if (front) this.fronts.set(name, front);
    this.nodes.set(name, {
      name,
      url: front ? this.scheme(front.url) : "",
      dataDir: path.join(this.o.root, name),
      configFile: path.join(this.o.root, `${name}.yaml`),
      logFile: path.join(this.o.root, `${name}.log`),
      proc: undefined,
      output: [],
      listenPort: undefined,
    });
  }

  private writeConfig(s: NodeSpec, names: string[]): void {
    const regions = Object.fromEntries(
      names.map((n) => {
        const via = n === s.name ? undefined : this.o.route?.(s.name, n);
        if (via) this.routed.push({ proxy: via, to: n });
        if (!via && n !== s.name && this.o.fronts === false)
          throw new Error(`mesh without fronts: link ${s.name} -> ${n} needs a route`);
        // Without a front, a region's own URL is only a placeholder: it binds port 0 and
        // reports where (node.json); nothing reaches it by the configured URL.
        return [
          n,
          { url: via ? this.scheme(via.url) : this.node(n).url || this.scheme("http://127.0.0.1/") },
        ];
      }),
    );
    const all = names.length > 1;
    let config: Record<string, unknown> = {
      region: s.name,
      dataDir: this.node(s.name).dataDir,
      listen: { host: "127.0.0.1", port: 0 },
      regions,
      crr: this.o.crr
        ? this.o.crr(s.name, names)
        : all
          ? { enabled: true, replicationMode: "multi-way", peers: names.filter((n) => n !== s.name) }
          : { enabled: false },
      // The admin token is optional for the one-shot commands run with only the peer secret.
      auth: { peerSecret: "${CRR_PEER_SECRET}", adminToken: "${CRR_ADMIN_TOKEN:-}" },
      log: { level: "info" },
    };
    if (this.o.common) config = deepMerge(config, this.o.common);
    if (s.config) config = deepMerge(config, s.config);
    fs.writeFileSync(this.node(s.name).configFile, YAML.stringify(config));
  }

  /**
   * Another node of `region` (several nodes per region on a shared PostgreSQL store): the
   * region's config with a data directory of its own, listening on its own port (no front:
   * peers keep reaching the region's first node). Started like any node.
   */
  async addNode(region: string, name: string, env: NodeJS.ProcessEnv = {}): Promise<MeshNode> {
    const base = this.node(region);
    const node: MeshNode = {
      name,
      url: "",
      dataDir: path.join(this.o.root, name),
      configFile: path.join(this.o.root, `${name}.yaml`),
      logFile: path.join(this.o.root, `${name}.log`),
      proc: undefined,
      output: [],
      listenPort: undefined,
    };
    this.nodes.set(name, node);
    const config = YAML.parse(fs.readFileSync(base.configFile, "utf8")) as Record<string, unknown>;
    fs.writeFileSync(node.configFile, YAML.stringify({ ...config, dataDir: node.dataDir }));
    await this.startNode(name, [], env);
    return node;
  }

  /** Merge `patch` into a node's config file (takes effect when the node next starts). */
  reconfigure(name: string, patch: Record<string, unknown>): void {
    const node = this.node(name);
    const current = YAML.parse(fs.readFileSync(node.configFile, "utf8")) as Record<string, unknown>;
    fs.writeFileSync(node.configFile, YAML.stringify(deepMerge(current, patch)));
  }

  node(name: string): MeshNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** Point the front and every routed proxy of `name` at `port` (0: nobody). */
  private target(name: string, port: number): void {
    this.fronts.get(name)?.setTarget(port);
    for (const r of this.routed) if (r.to === name) r.proxy.setTarget(port);
    const node = this.node(name);
    node.listenPort = port || undefined;
    if (!this.fronts.has(name) && port) node.url = this.scheme(`http://127.0.0.1:${port}`);
  }

  /** A proxy's or listener's http:// URL in the mesh's scheme. */
  private scheme(url: string): string {
    return this.o.tls ? url.replace(/^http:/, "https:") : url;
  }

  private agent: Agent | undefined;

  /** What the mesh's own requests to its nodes go through (trusting the mesh's CA under TLS). */
  dispatcher(): Dispatcher | undefined {
    const t = this.o.tls;
    if (!t) return undefined;
    return (this.agent ??= new Agent({ connect: { ca: t.ca, cert: t.cert, key: t.key } }));
  }

  /** The environment that carries the mesh's secrets to its processes (never a file). */
  secrets(): Record<string, string> {
    return { CRR_PEER_SECRET: this.o.secret, CRR_ADMIN_TOKEN: this.adminToken };
  }

  private spawnNode(node: MeshNode, command: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const toFile = this.o.output === "file";
    const log = toFile ? fs.openSync(node.logFile, "a") : undefined;
    const proc = spawn(command[0]!, command.slice(1), {
      cwd: this.o.cwd,
      env: { ...process.env, ...this.secrets(), ...this.o.env?.(node.name), ...env },
      stdio: log === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", log, log],
    });
    if (log !== undefined) fs.closeSync(log);
    const keep = (d: Buffer) => {
      node.output.push(d.toString());
      if (node.output.length > 2000) node.output.splice(0, 1000);
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    return proc;
  }

  /**
   * Start (or restart) a node's process, wait until it listens (node.json), then until it is
   * ready. `wrap`: a command the node runs under (e.g. strace and its options).
   */
  async startNode(
    name: string,
    args: string[] = [],
    env: NodeJS.ProcessEnv = {},
    wrap: string[] = [],
  ): Promise<void> {
    const node = this.node(name);
    fs.rmSync(path.join(node.dataDir, "node.json"), { force: true });
    const main = this.o.crrMain ?? crrMainDefault;
    const proc = (node.proc = this.spawnNode(
      node,
      [...wrap, process.execPath, main, "serve", "--config", node.configFile, ...args],
      env,
    ));
    let exited: number | null | string = null;
    proc.on("exit", (code, sig) => (exited = sig ?? code));
    const failed = () => {
      if (exited !== null)
        throw new Error(
          `${name} exited (${String(exited)}) while starting:\n${this.logs(name).slice(-4000)}`,
        );
    };
    const deadlineMs = this.o.readyTimeoutMs ?? 60_000;
    const port = await waitUntil(
      () => {
        failed();
        const info = this.nodeInfo(name);
        // Under a wrapper the node is the wrapper's child: any node.json written since is its.
        return info && (info.pid === proc.pid || wrap.length > 0)
          ? Number(new URL(info.url).port)
          : undefined;
      },
      `${name} to listen`,
      deadlineMs,
    );
    this.target(name, port);
    await waitUntil(
      async () => {
        failed();
        return (
          (await request(`${node.url}/readyz`, { dispatcher: this.dispatcher() })
            .then(async (r) => (await r.body.text(), r.statusCode === 200))
            .catch(() => false)) || undefined
        );
      },
      `${name} to be ready`,
      deadlineMs,
    );
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
    const nodePid = this.nodeInfo(name)?.pid;
    if (nodePid !== undefined && nodePid !== proc.pid) process.kill(nodePid, signal);
    else proc.kill(signal);
    const result = await exited;
    node.proc = undefined;
    this.target(name, 0);
    return result;
  }

  /** Run a one-shot crr command against a node's config (e.g. ["rebuild"]); its exit code and output. */
  runCommand(
    name: string,
    args: string[],
  ): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const node = this.node(name);
    const main = this.o.crrMain ?? crrMainDefault;
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [main, ...args, "--config", node.configFile], {
        cwd: this.o.cwd,
        env: { ...process.env, ...this.secrets(), ...this.o.env?.(name) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      p.on("close", (status) => resolve({ status, stdout, stderr })); // after both pipes end
    });
  }

  private nodeInfo(name: string): { url: string; pid: number } | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.node(name).dataDir, "node.json"), "utf8")) as {
        url: string;
        pid: number;
      };
    } catch {
      return undefined; // not listening yet, or already gone
    }
  }

  /** SIGKILL every node, then close the fronts (routed proxies belong to whoever made them). */
  async stop(): Promise<void> {
    await Promise.all([...this.nodes.keys()].map((n) => this.stopNode(n, "SIGKILL")));
    await Promise.all([...this.fronts.values()].map((f) => f.close()));
    await this.agent?.close();
  }

  /** What a node wrote (output "memory"), or its log file's tail (output "file"). */
  logs(name: string): string {
    const node = this.node(name);
    if (this.o.output !== "file") return node.output.join("");
    try {
      return fs.readFileSync(node.logFile, "utf8");
    } catch {
      return "";
    }
  }
}
