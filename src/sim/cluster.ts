/**
 * A mesh of real `Region`s in one process: each on its own data directory, the WAL and the
 * shippers' state on the simulated disk, the store on SQLite with its synced image kept or
 * on PostgreSQL (store.ts), peers reached through the simulated network, every clock and timer on the scheduler. The
 * cluster boots, crashes (power loss: unsynced bytes dropped, torn tails) and restarts
 * regions, and keeps the ledger of what clients were told.
 */
import fs from "node:fs";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { parseConfig, replicationPolicy, type NodeConfig } from "../config/index.js";
import { HttpPeerLink } from "../link/index.js";
import { silentLogger } from "../log.js";
import { Region, buildServer } from "../node/index.js";
import { formatVersion } from "../protocol/index.js";
import { segmentHeaderBytes } from "../wal/index.js";
import { SimDisk } from "./disk.js";
import { Network } from "./network.js";
import type { Scheduler, SimProcess } from "./scheduler.js";
import { WatermarkWatch } from "./watermarks.js";
import type { SimStores, StoreSite } from "./store.js";

export const simSecret = "sim-peer-secret-0123456789abcdef";

/** One acknowledged answer a client received. */
export interface LedgerEntry {
  /** The node that answered (its region's name for a region's first node). */
  node: string;
  key: string;
  tenant: string;
  outcome: string;
  bodyJson: string;
  duplicate: boolean;
  origin: string;
  incarnation: string;
  lsn: number;
  hlc: string;
  atMs: number;
  /** Why this acknowledgement can no longer be expected (its only holder's disk was lost). */
  lost?: string;
  /** When it was given up. */
  lostAtMs?: number;
}

export interface SimNode {
  /** The node's name: its region's for a region's first node, else `<region>-<letter>`. */
  name: string;
  /** The region it serves (several nodes of one region share its PostgreSQL store). */
  regionName: string;
  config: NodeConfig;
  proc: SimProcess;
  region: Region | undefined;
  app: FastifyInstance | undefined;
  state: "down" | "booting" | "up" | "stopping" | "refused";
  /** Peers the operator removed from this region's configuration (multi-way meshes). */
  removed: Set<string>;
  refusal?: string;
  crashes: number;
}

export interface ClusterOptions {
  regions: string[];
  tenants: Array<{ tenantID: string; targetRegions: string[] }> | undefined;
  baseDir: string;
  stores: SimStores;
  /** Regions served by several nodes (on PostgreSQL), and how many; others have one. */
  nodeCounts?: Record<string, number>;
  /** Shippers code their batches (shipper.compression gzip), for every link of the run. */
  compression?: boolean;
}

/** The audit log of a data directory, line by line (oldest file first). */
export function auditLinesOf(dataDir: string): Array<Record<string, unknown>> {
  const dir = path.join(dataDir, "audit");
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .sort()
    .flatMap((f) => fs.readFileSync(path.join(dir, f), "utf8").split("\n"))
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The process serving `dataDir` is gone: its lock names a pid nobody has. */
function exited(dataDir: string): void {
  const lock = path.join(dataDir, "LOCK");
  if (!fs.existsSync(lock)) return;
  const h = JSON.parse(fs.readFileSync(lock, "utf8")) as Record<string, unknown>;
  fs.writeFileSync(lock, `${JSON.stringify({ ...h, pid: 4_194_399 })}\n`);
}

/** What the stores need of a node. */
export function siteOf(n: SimNode): StoreSite {
  return { name: n.regionName, dataDir: n.config.dataDir, region: n.region, proc: n.proc };
}

export class SimCluster {
  readonly disk: SimDisk;
  readonly net: Network;
  readonly nodes = new Map<string, SimNode>();
  readonly ledger: LedgerEntry[] = [];
  /** Ledger entries by "origin/incarnation/lsn". */
  private readonly acked = new Map<string, LedgerEntry>();
  readonly problems: string[] = [];
  /** Each region's WAL incarnation, as of its last start (its WAL holds that stream while it lasts). */
  readonly walIncarnation = new Map<string, string>();
  /** When each region's store was last lost (with a single node's disk, or alone). */
  readonly storeLostAtMs = new Map<string, number>();
  /** Keys an operator changed or deleted by hand in some region's store (hand-edit.ts). */
  readonly handEdited = new Set<string>();
  /** The tenant policy the run started with (the operator may widen it at the heal). */
  readonly firstTenants: ClusterOptions["tenants"];
  /** Watermarks and acknowledgements sampled during the run (never backward, acks durable). */
  readonly watch: WatermarkWatch;
  /** Node ids whose data directory was lost and that the operator has not yet declared gone. */
  readonly lostNodes: Array<{ region: string; nodeId: string }> = [];
  /** Every node id whose data directory was lost or replaced: a lost store forgets they left. */
  readonly goneNodes: Array<{ region: string; nodeId: string }> = [];
  /** Audit lines of nodes whose disk was lost (what they had written before). */
  readonly lostAuditLines: Array<{ region: string; line: Record<string, unknown> }> = [];
  /** Batches sent coded (ClusterOptions.compression): shows the coded path ran. */
  codedBatches = 0;

  constructor(
    readonly sched: Scheduler,
    readonly o: ClusterOptions,
  ) {
    this.firstTenants = o.tenants;
    this.disk = new SimDisk(sched);
    this.net = new Network(sched, 2000);
    this.watch = new WatermarkWatch(this, 5000);
    for (const regionName of o.regions)
      for (let i = 0; i < (o.nodeCounts?.[regionName] ?? 1); i++) {
        const name = i === 0 ? regionName : `${regionName}-${String.fromCharCode(97 + i)}`;
        this.addNode(name, regionName);
      }
  }

  private addNode(name: string, regionName: string): void {
    const config = this.configOf(name, regionName, new Set());
    this.nodes.set(name, {
      name,
      regionName,
      config,
      removed: new Set(),
      proc: { alive: false, skewMs: 0 },
      region: undefined,
      app: undefined,
      state: "down",
      crashes: 0,
    });
  }

  /** The region `node` serves. */
  regionOf(node: string): string {
    return this.nodes.get(node)!.regionName;
  }

  /** The nodes serving `region`. */
  nodesOf(region: string): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.regionName === region);
  }

  /** Whether `region` is served by several nodes (one shared PostgreSQL store). */
  several(region: string): boolean {
    return (this.o.nodeCounts?.[region] ?? 1) > 1;
  }

  configOf(name: string, regionName: string, removed: ReadonlySet<string>): NodeConfig {
    const all = this.o.regions;
    const crr = this.o.tenants
      ? { enabled: true, replicationMode: "selective", policies: this.o.tenants }
      : {
          enabled: true,
          replicationMode: "multi-way",
          peers: all.filter((r) => r !== regionName && !removed.has(r)),
        };
    const several = (r: string) => (this.several(r) ? { nodes: "several" } : {});
    const raw = {
      region: regionName,
      dataDir: path.join(this.o.baseDir, name),
      regions: Object.fromEntries(all.map((r) => [r, { url: `http://${r}.sim`, ...several(r) }])),
      crr,
      auth: { peerSecret: simSecret },
      // Small segments, sealed every few seconds: retention, sealed-segment reads and the store
      // fallback run in every run (with 16 KiB segments no run ever sealed one).
      wal: { segmentBytesMax: 4096, segmentAgeMsMax: 3000, retentionIntervalMs: 2000 },
      shipper: { retryDelayMsMin: 20, retryDelayMsMax: 1000, requestTimeoutMs: 2000, connectTimeoutMs: 500 },
      health: { probeIntervalMs: 1000, probeTimeoutMs: 500 },
      recovery: { peerWaitMs: 1500, bootstrapWaitMs: 20_000 },
      divergence: { intervalMs: 5000, inFlightMsMax: 60_000 },
      ...(this.o.stores.configOf(regionName) ? { store: this.o.stores.configOf(regionName) } : {}),
    };
    return parseConfig(raw, `sim:${name}`, this.o.baseDir, {});
  }

  /** Start a region (recovery, startup checks); resolves once it admits appends or refused. */
  async boot(name: string, o: { startAlone?: boolean; acceptWalLoss?: boolean } = {}): Promise<void> {
    const n = this.nodes.get(name)!;
    if (n.state !== "down" && !(n.state === "refused" && o.acceptWalLoss)) return;
    n.state = "booting";
    const proc: SimProcess = { alive: true, skewMs: n.proc.skewMs };
    n.proc = proc;
    this.sched.note(`boot ${name}`);
    const runtime = this.sched.runtimeOf(proc);
    const config = n.config;
    let opened: Region | undefined;
    try {
      const region = (opened = await Region.open(config, {
        log: silentLogger(),
        runtime,
        fileOps: this.disk.view(proc),
        startAlone: o.startAlone,
        acceptWalLoss: o.acceptWalLoss,
        store: this.o.stores.hooks(siteOf(n)),
        links: (peer, id) =>
          new HttpPeerLink({
            region: n.regionName,
            incarnation: id.incarnation,
            boot: id.boot,
            rule: `${id.rule}/${formatVersion}`,
            signer: id.credentials.signer,
            keys: id.credentials.ring,
            peer,
            url: `http://${peer}.sim`,
            connectTimeoutMs: 500,
            requestTimeoutMs: 2000,
            runtime,
            transport: this.net.transport(n.regionName, proc, peer, name),
            // Small batches too: the simulator's are a few records each.
            ...(this.o.compression ? { compression: { coding: "gzip" as const, bytesMin: 64 } } : {}),
            onBatchSent: (bytes, wireBytes) => {
              if (wireBytes !== bytes) this.codedBatches++;
            },
          }),
      }));
      if (!proc.alive) return;
      n.region = region;
      region.events.on("applied", (origin, incarnation, lsn, batchCarried) => {
        // Only a record the batch carried: a batch that skips LSNs nobody holds (an operator
        // accepted their loss) moves the watermark past records it never applied (seed 154),
        // and the store may hold the record from elsewhere: a bootstrap copies what the mesh
        // decided whatever its stamp (seed 228), which the reader's clock check never saw.
        const carried = async () => batchCarried;
        this.checkAccepted(
          n.regionName,
          runtime.nowMs(),
          config.hlc.maxSkewMs,
          `${origin}/${incarnation}/${lsn}`,
          carried,
        );
      });
      this.walIncarnation.set(name, region.wal.incarnation);
      n.app = buildServer(region);
      this.net.endpoints.set(name, { region: n.regionName, proc, app: n.app });
      region.start();
      await region.admitted;
      if (!proc.alive) return;
      n.state = "up";
      this.sched.note(`up ${name} ${region.wal.incarnation}`);
      // The operator changed its configuration while it was starting: apply it now.
      if (n.config !== config) void this.restart(name);
    } catch (err) {
      if (!proc.alive) return;
      // `crr serve` exits when its startup checks refuse: what it opened is closed.
      if (opened) await opened.close().catch(() => undefined);
      if (!proc.alive) return;
      proc.alive = false;
      this.net.endpoints.delete(name);
      n.region = undefined;
      n.app = undefined;
      n.state = "refused";
      n.refusal = (err as Error).message;
      // Paths name the run's temporary directory: kept out of the trace, which must not
      // depend on anything but the seed.
      this.sched.note(`refused ${name}: ${n.refusal.replaceAll(this.o.baseDir, "<data>")}`);
      // A supervisor restarts a node refused for any other reason than a damaged WAL (that
      // one waits for the operator's --accept-wal-loss) or a node that left (the operator
      // replaces it: replaceLeftNodes).
      if (!n.refusal.includes("--accept-wal-loss") && !n.refusal.includes("left region"))
        this.sched.after(2000, () => {
          if (n.state !== "refused" || n.proc !== proc) return;
          n.state = "down";
          void this.boot(name);
        });
    }
  }

  /** The node's process stalls for `ms` (its timers, disk and store calls wait; it is not told). */
  freeze(name: string, ms: number): void {
    const n = this.nodes.get(name)!;
    if (n.state !== "up") return;
    n.proc.frozenUntilMs = this.sched.nowMs + ms;
    this.sched.note(`freeze ${name} ${ms}`);
  }

  /** The node's process is cut off from its (shared) store for `ms`; it runs on and is not told. */
  cutFromStore(name: string, ms: number): void {
    const n = this.nodes.get(name)!;
    if (n.state !== "up" || !this.o.stores.cut) return;
    this.o.stores.cut(n.proc, ms);
    this.sched.note(`cut ${name} from its store ${ms}`);
  }

  /** A power loss: the process and its timers die, unsynced bytes are dropped (maybe torn), the store goes back to its last synced image. */
  crash(name: string, o: { torn: boolean }): void {
    const n = this.nodes.get(name)!;
    if (n.state === "down") return;
    n.crashes++;
    this.watch.crashed(name);
    n.proc.alive = false;
    this.net.endpoints.delete(name);
    this.o.stores.crashed(siteOf(n));
    n.region = undefined;
    n.app = undefined;
    n.state = "down";
    const dir = n.config.dataDir;
    const lost = this.disk.crash(dir, o);
    exited(dir);
    this.sched.note(`crash ${name} torn=${o.torn} lost=${lost.length}`);
  }

  /**
   * The operator removes `peer` from the region's peers, or adds it back (multi-way meshes):
   * the new configuration takes effect with a graceful restart (at once if the region is
   * running, else at its next start).
   */
  async setPeer(region: string, peer: string, present: boolean): Promise<void> {
    const nodes = this.nodesOf(region);
    const n = nodes[0]!;
    if (this.o.tenants || n.removed.has(peer) !== present) return;
    // A multi-way region keeps at least one peer (the configuration requires one).
    if (!present && this.o.regions.length - 2 - n.removed.size < 1) return;
    this.sched.note(`${present ? "add" : "remove"} peer ${region} ${peer}`);
    // Every node of the region gets the same configuration, each restarted in turn.
    for (const x of nodes) {
      if (present) x.removed.delete(peer);
      else x.removed.add(peer);
      if (!present) this.watch.peerRemoved(x.name, peer);
      x.config = this.configOf(x.name, x.regionName, x.removed);
    }
    // Each restarts on its own: a restart whose node crashes while starting never ends, and
    // must not hold back the others' new configuration (seed 16 on PostgreSQL: two nodes
    // kept a peer removed, and never shipped to it).
    await Promise.all(nodes.map((x) => this.restart(x.name)));
  }

  /**
   * The operator widens the tenant policy (`undefined`: every tenant everywhere, a multi-way
   * mesh): every node gets the new configuration with a graceful restart, as in setPeer. What
   * a region newly receives must come by backfill; the checker reads the new policy.
   */
  async setPolicies(tenants: ClusterOptions["tenants"]): Promise<void> {
    this.o.tenants = tenants;
    const described = tenants?.map((p) => `${p.tenantID}:${p.targetRegions.join("+")}`).join(" ");
    this.sched.note(`policy ${described ?? "every tenant everywhere"}`);
    for (const x of this.nodes.values()) {
      const before = replicationPolicy(x.config).peers;
      x.config = this.configOf(x.name, x.regionName, x.removed);
      // A region that was no peer until now: the WAL kept nothing for it (the shipper reads
      // the store), as for a peer removed and added back.
      for (const peer of replicationPolicy(x.config).peers)
        if (!before.includes(peer)) this.watch.peerRemoved(x.name, peer);
    }
    await Promise.all([...this.nodes.values()].map((x) => this.restart(x.name)));
  }

  /** Stop a running region gracefully (Region.close) and start it again. */
  async restart(name: string): Promise<void> {
    const n = this.nodes.get(name)!;
    const { region, proc } = n;
    if (n.state !== "up" || !region) return;
    n.state = "stopping";
    try {
      await region.close();
    } catch (err) {
      // `crr serve` exits all the same: what it held is let go.
      this.sched.note(`stop ${name} failed: ${(err as Error).message}`);
      exited(n.config.dataDir);
    }
    if (n.proc !== proc || !proc.alive) return; // it crashed while stopping
    proc.alive = false;
    this.net.endpoints.delete(name);
    n.region = undefined;
    n.app = undefined;
    n.state = "down";
    this.sched.note(`stopped ${name}`);
    await this.boot(name);
  }

  /** A bit flips in the last `windowBytes` of the region's newest WAL segment while it is down. */
  flipWalBit(name: string, windowBytes: number): void {
    const n = this.nodes.get(name)!;
    const segments = this.disk
      .syncedFiles(path.join(n.config.dataDir, "wal"))
      .filter((f) => f.endsWith(".wal"));
    const newest = segments.at(-1);
    if (!newest) return;
    // Frames only: a damaged segment header is refused by design (FORMAT.md, recovery rules).
    const offset = this.disk.flipBit(newest, windowBytes, segmentHeaderBytes);
    this.sched.note(`flip ${name} ${path.basename(newest)}@${offset}`);
  }

  /** A client appends to `name`; the answer, if it is an acknowledgement, goes to the ledger. */
  async append(
    name: string,
    rec: { key: string; tenant: string; outcome: string; body: unknown },
  ): Promise<void> {
    const n = this.nodes.get(name)!;
    const region = n.region;
    if (n.state !== "up" || !region) return;
    const proc = n.proc;
    try {
      const a = await region.append(rec);
      if (!proc.alive) return; // the client never heard the answer
      const incarnation = region.wal.incarnation;
      const entry: LedgerEntry = {
        node: name,
        key: rec.key,
        tenant: rec.tenant,
        outcome: a.outcome,
        bodyJson: JSON.stringify(rec.body),
        duplicate: a.duplicate,
        origin: a.origin,
        incarnation,
        lsn: a.lsn,
        hlc: a.hlc,
        atMs: this.sched.nowMs,
      };
      this.ledger.push(entry);
      this.acked.set(`${entry.origin}/${entry.incarnation}/${entry.lsn}`, entry);
      this.sched.note(`ack ${name} ${rec.key} ${a.origin}:${a.lsn} dup=${a.duplicate}`);
    } catch (err) {
      this.sched.note(`refused-append ${name} ${rec.key} ${(err as { code?: string }).code ?? "error"}`);
    }
  }

  /**
   * A region applied a peer's batch through `id` (its newest record: timestamps grow along a
   * stream): its timestamp must be within the allowed skew of the region's clock, or a
   * region with a clock far ahead would have its records taken (and their timestamps decide
   * every conflict they take part in).
   */
  private checkAccepted(
    region: string,
    wallMs: number,
    maxSkewMs: number,
    id: string,
    carried: () => Promise<boolean>,
  ): void {
    const e = this.acked.get(id);
    if (!e) return; // a record no client was told about
    // Under a selective policy a batch covers LSNs whose records it does not carry.
    const policy = this.o.tenants?.find((p) => p.tenantID === e.tenant);
    if (policy && !policy.targetRegions.includes(region)) return;
    const hlcWallMs = Number(e.hlc.split(".")[0]);
    if (hlcWallMs <= wallMs + maxSkewMs) return;
    this.sched.task(
      `the clock-bound check of ${id} in ${region}`,
      carried().then((yes) => {
        if (yes)
          this.problems.push(
            `${region} accepted ${id} stamped ${hlcWallMs - wallMs} ms ahead of its clock (allowed: ${maxSkewMs})`,
          );
      }),
    );
  }

  /** Regions up now. */
  /** The run is over: every process dies (timers with it) and lets go of what it held. */
  async end(): Promise<void> {
    for (const n of this.nodes.values()) {
      n.proc.alive = false;
      await this.o.stores.release(siteOf(n));
      void n.app?.close().catch(() => undefined);
      n.region = undefined;
      n.app = undefined;
    }
  }

  up(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.state === "up" && n.region);
  }
}
