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
import { parseConfig, type NodeConfig } from "../config/index.js";
import { HttpPeerLink } from "../link/index.js";
import { silentLogger } from "../log.js";
import { Region, buildServer } from "../node/index.js";
import { formatVersion } from "../protocol/index.js";
import { segmentHeaderBytes } from "../wal/index.js";
import { SimDisk } from "./disk.js";
import { Network } from "./network.js";
import type { Scheduler, SimProcess } from "./scheduler.js";
import { WatermarkWatch } from "./watermarks.js";
import { versionId, type SimStores, type StoreSite } from "./store.js";

export const simSecret = "sim-peer-secret-0123456789abcdef";

/** One acknowledged answer a client received. */
export interface LedgerEntry {
  region: string;
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
}

export interface SimNode {
  name: string;
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
}

/** What the stores need of a node. */
export function siteOf(n: SimNode): StoreSite {
  return { name: n.name, dataDir: n.config.dataDir, region: n.region };
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
  /** Keys an operator changed or deleted by hand in some region's store (hand-edit.ts). */
  readonly handEdited = new Set<string>();
  /** Watermarks and acknowledgements sampled during the run (never backward, acks durable). */
  readonly watch: WatermarkWatch;

  constructor(
    readonly sched: Scheduler,
    readonly o: ClusterOptions,
  ) {
    this.disk = new SimDisk(sched);
    this.net = new Network(sched, 2000);
    this.watch = new WatermarkWatch(this, 5000);
    for (const name of o.regions) {
      const config = this.configOf(name, new Set());
      this.nodes.set(name, {
        name,
        config,
        removed: new Set(),
        proc: { alive: false, skewMs: 0 },
        region: undefined,
        app: undefined,
        state: "down",
        crashes: 0,
      });
    }
  }

  private configOf(name: string, removed: ReadonlySet<string>): NodeConfig {
    const all = this.o.regions;
    const crr = this.o.tenants
      ? { enabled: true, replicationMode: "selective", policies: this.o.tenants }
      : {
          enabled: true,
          replicationMode: "multi-way",
          peers: all.filter((r) => r !== name && !removed.has(r)),
        };
    const raw = {
      region: name,
      dataDir: path.join(this.o.baseDir, name),
      regions: Object.fromEntries(all.map((r) => [r, { url: `http://${r}.sim` }])),
      crr,
      auth: { peerSecret: simSecret },
      // Small segments, sealed every few seconds: retention, sealed-segment reads and the store
      // fallback run in every run (with 16 KiB segments no run ever sealed one).
      wal: { segmentBytesMax: 4096, segmentAgeMsMax: 3000, retentionIntervalMs: 2000 },
      shipper: { retryDelayMsMin: 20, retryDelayMsMax: 1000, requestTimeoutMs: 2000, connectTimeoutMs: 500 },
      health: { probeIntervalMs: 1000, probeTimeoutMs: 500 },
      recovery: { peerWaitMs: 1500, bootstrapWaitMs: 20_000 },
      divergence: { intervalMs: 5000, inFlightMsMax: 60_000 },
      ...(this.o.stores.configOf(name) ? { store: this.o.stores.configOf(name) } : {}),
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
        fileOps: this.disk,
        startAlone: o.startAlone,
        acceptWalLoss: o.acceptWalLoss,
        store: this.o.stores.hooks(siteOf(n)),
        links: (peer, id) =>
          new HttpPeerLink({
            region: name,
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
            transport: this.net.transport(name, proc, peer),
          }),
      }));
      if (!proc.alive) return;
      n.region = region;
      region.events.on("applied", (origin, incarnation, lsn) => {
        // Only a record the batch carried: a batch that skips LSNs nobody holds (an operator
        // accepted their loss) moves the watermark past records it never applied (seed 154).
        // The store is asked only about a record stamped too far ahead (asking about every
        // applied watermark took 5% of a run).
        const carried = async () =>
          (await region.store.streamVersions(origin, incarnation, lsn, lsn, 1)).length > 0;
        this.checkAccepted(
          name,
          runtime.nowMs(),
          config.hlc.maxSkewMs,
          `${origin}/${incarnation}/${lsn}`,
          carried,
        );
      });
      this.walIncarnation.set(name, region.wal.incarnation);
      n.app = buildServer(region);
      this.net.endpoints.set(name, { proc, app: n.app });
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
      // A supervisor restarts a node refused for any other reason than a damaged WAL
      // (that one waits for the operator's --accept-wal-loss).
      if (!n.refusal.includes("--accept-wal-loss"))
        this.sched.after(2000, () => {
          if (n.state !== "refused" || n.proc !== proc) return;
          n.state = "down";
          void this.boot(name);
        });
    }
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
    // The process is gone: its lock names a pid nobody has.
    const lock = path.join(dir, "LOCK");
    if (fs.existsSync(lock)) {
      const h = JSON.parse(fs.readFileSync(lock, "utf8")) as Record<string, unknown>;
      fs.writeFileSync(lock, `${JSON.stringify({ ...h, pid: 4_194_399 })}\n`);
    }
    this.sched.note(`crash ${name} torn=${o.torn} lost=${lost.length}`);
  }

  /**
   * The region's disk is lost while it is down: its data directory is gone. What it
   * acknowledged that no other region holds is lost with it (nothing can bring it back);
   * those ledger entries are set aside, counted, and no longer expected anywhere.
   */
  async wipe(name: string): Promise<void> {
    const n = this.nodes.get(name)!;
    await this.setAsideUnheld({ store: name, wal: name }, `every copy was lost (last: the disk of ${name})`);
    this.walIncarnation.delete(name);
    this.watch.storeLost(name);
    await this.o.stores.lose(siteOf(n));
    fs.rmSync(n.config.dataDir, { recursive: true, force: true });
    this.disk.forget(n.config.dataDir);
    this.sched.note(`wipe ${name}`);
  }

  /**
   * The operator's answer to a refusal over a damaged WAL: start again with
   * --accept-wal-loss. What the region acknowledged that nobody else holds is set aside as
   * lost (and must be audited there as such).
   */
  async acceptWalLoss(name: string): Promise<void> {
    const n = this.nodes.get(name)!;
    if (n.state !== "refused" || !n.refusal?.includes("--accept-wal-loss")) return;
    await this.setAsideUnheld({ wal: name }, `the WAL of ${name} was damaged and its loss accepted`);
    this.walIncarnation.delete(name);
    n.proc.alive = false;
    this.sched.note(`accept-wal-loss ${name}`);
    await this.boot(name, { acceptWalLoss: true });
  }

  /**
   * Ledger entries no copy is left of once `lost` is gone (a store, a WAL, or both): a
   * region's store (running, or its last synced image while it is down), or the origin's
   * WAL for its current incarnation. They are no longer expected anywhere.
   */
  private async setAsideUnheld(lost: { store?: string; wal?: string }, why: string): Promise<void> {
    const nodes = [...this.nodes.values()];
    const held = await Promise.all(
      nodes.map((n) => (n.name === lost.store ? new Set<string>() : this.o.stores.held(siteOf(n)))),
    );
    for (const e of this.ledger) {
      if (e.lost || e.duplicate) continue;
      const kept = nodes.some(
        (n, i) =>
          held[i]!.has(versionId(e)) ||
          (n.name === e.origin &&
            n.name !== lost.wal &&
            this.walIncarnation.get(n.name) === e.incarnation &&
            e.lsn >= this.walFirstLsn(n)),
      );
      if (!kept) e.lost = why;
    }
  }

  /**
   * Whether the version `region` holds of `key` has evidence outside that store: the same
   * version in another region's store (running, or what it left if down), or in its
   * origin's WAL (what reconcile reads).
   */
  async copiedElsewhere(region: string, key: string): Promise<boolean> {
    const v = await this.nodes.get(region)!.region?.store.get(key);
    if (!v) return true;
    for (const n of this.nodes.values()) {
      const inWal =
        n.name === v.origin &&
        this.walIncarnation.get(n.name) === v.incarnation &&
        v.lsn >= this.walFirstLsn(n);
      if (inWal) return true;
      if (n.name !== region && (await this.o.stores.held(siteOf(n))).has(versionId(v))) return true;
    }
    return false;
  }

  /** The first LSN the region's WAL still holds (retention removes whole segments, named by their first LSN). */
  private walFirstLsn(n: SimNode): number {
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
  async skipGap(name: string, peer: string, throughLsn: number): Promise<void> {
    const region = this.nodes.get(name)?.region;
    if (!region) return;
    await this.setAsideUnheld({}, `nobody held it; skipped by the operator for ${peer}`);
    this.sched.note(`skip-gap ${name} ${peer} ${throughLsn}`);
    await region.skipGap(peer, throughLsn, "simulated operator");
  }

  /** The store alone is lost while the region is down (the WAL is kept). */
  async loseStore(name: string): Promise<void> {
    const n = this.nodes.get(name)!;
    await this.setAsideUnheld({ store: name }, `every copy was lost (last: the store of ${name})`);
    this.watch.storeLost(name);
    await this.o.stores.lose(siteOf(n));
    this.sched.note(`lose-store ${name}`);
  }

  /**
   * The operator removes `peer` from the region's peers, or adds it back (multi-way meshes):
   * the new configuration takes effect with a graceful restart (at once if the region is
   * running, else at its next start).
   */
  async setPeer(name: string, peer: string, present: boolean): Promise<void> {
    const n = this.nodes.get(name)!;
    if (this.o.tenants || n.removed.has(peer) !== present) return;
    // A multi-way region keeps at least one peer (the configuration requires one).
    if (!present && this.o.regions.length - 2 - n.removed.size < 1) return;
    if (present) n.removed.delete(peer);
    else n.removed.add(peer);
    if (!present) this.watch.peerRemoved(name, peer);
    n.config = this.configOf(name, n.removed);
    this.sched.note(`${present ? "add" : "remove"} peer ${name} ${peer}`);
    await this.restart(name);
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
      this.sched.note(`stop ${name} failed: ${(err as Error).message}`);
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
        region: name,
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
  up(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.state === "up" && n.region);
  }
}
