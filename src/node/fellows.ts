/**
 * A region served by several nodes that share one store (PostgreSQL): the claim each append
 * takes before its WAL append, and the end of this node's claims once its WAL is in the store.
 * (ARCHITECTURE.md, "Several nodes in one region".)
 */
import type { AuditAppend } from "../audit/index.js";
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";
import type { DedupStore, RegionNode, SharedRegionStore } from "../store/index.js";
import type { FileOps } from "../util/file-ops.js";
import type { AppendPathDeps } from "./append-path.js";
import { FellowWatch } from "./fellow-wait.js";
import type { Parts } from "./parts.js";
import type { Region } from "./region.js";

/** The append path's claims, when the store is shared; undefined otherwise (one node per store). */
export function claimsOf(
  store: Pick<DedupStore, "shared">,
  incarnation: string,
  nodeId: string | undefined,
  waitMs: number,
): AppendPathDeps["claims"] {
  const shared = store.shared;
  if (!shared || !nodeId) return undefined;
  return {
    claim: (key, attempt) => shared.claim(key, incarnation, attempt),
    release: (key) => shared.releaseClaim(key, incarnation),
    releaseLost: (key, attempt) => shared.releaseLostClaim(key, incarnation, attempt),
    waitMs,
  };
}

/**
 * Once this node's WAL is applied to the store, every key it claimed is either decided there
 * or was never appended (so never acknowledged): its claims, of every incarnation of this
 * data directory, end. Runs before appends are admitted.
 */
export async function releaseOwnClaims(r: Region): Promise<void> {
  const shared = r.store.shared;
  if (!shared || !r.nodeId) return;
  const mine = (await shared.regionNodes()).filter((n) => n.nodeId === r.nodeId).map((n) => n.incarnation);
  const released = await shared.releaseClaims(mine);
  if (released > 0)
    r.log.info({ released }, "released the claims of appends that never reached this node's WAL");
}

/**
 * Claims whose answer was lost and whose end failed too (the store unreachable): each is
 * ended again after every heartbeat that reached the store, so a cut that heals does not
 * leave keys claimed by this node (the others answering key_claimed) until it restarts. An
 * end is safe to repeat: it deletes the claim only if the lost attempt still holds it.
 */
export class StuckClaims {
  private readonly ends = new Map<string, () => Promise<boolean>>();

  constructor(private readonly log: Logger) {}

  get size(): number {
    return this.ends.size;
  }

  add(key: string, end: () => Promise<boolean>): void {
    this.ends.set(key, end);
  }

  /** Try every end once; those that pass (or find the claim gone or re-taken) are done. */
  async retry(): Promise<void> {
    for (const [key, end] of [...this.ends]) {
      try {
        const ended = await end();
        if (this.ends.get(key) === end) this.ends.delete(key);
        this.log.info({ key, ended }, "a claim whose answer was lost: ended once the store answered again");
      } catch {
        return; // still unreachable: the next heartbeat tries again
      }
    }
  }
}

export interface MembershipOptions {
  shared: SharedRegionStore;
  incarnation: string;
  nodeId: string;
  intervalMs: number;
  runtime: Runtime;
  log: Logger;
  /** This node was marked left: stop taking appends. */
  stop: (reason: string) => void;
  audit: (entry: AuditAppend) => Promise<void>;
  /** A fellow left: its stream is this node's to ship now (the shippers' next session). */
  shipLeftStreams: () => void;
  /** A heartbeat failed (counted: crr_heartbeat_errors_total). */
  onFailure?: () => void;
  /** A heartbeat reached the store (the node was not marked left). */
  onBeat?: () => Promise<void>;
  /** The region's nodes as the store lists them at each good heartbeat. */
  onNodes?: (nodes: readonly RegionNode[]) => Promise<void>;
}

/**
 * This node's heartbeat in the shared store, every `health.probeIntervalMs`: `crr leave
 * --node-id` tells a lost node from a running one by it. Each beat also stops this node
 * when it was marked left, and audits a fellow that left since the last beat (its stream is
 * then shipped from the store). A failed beat is logged and counted, and the next one runs.
 */
export class Membership {
  private timer: Timer | undefined;
  private beating: Promise<void> | undefined;
  /** The fellows' incarnations live at the last beat (undefined before the first). */
  private live: Set<string> | undefined;
  failures = 0;

  constructor(private readonly o: MembershipOptions) {}

  start(): void {
    this.timer = this.o.runtime.every(this.o.intervalMs, () => void this.beat());
    void this.beat();
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    await this.beating;
  }

  /** One heartbeat (none while another runs). */
  beat(): Promise<void> {
    this.beating ??= this.beatOnce().finally(() => (this.beating = undefined));
    return this.beating;
  }

  private async beatOnce(): Promise<void> {
    try {
      const { left, forgotten } = await this.o.shared.heartbeat(this.o.incarnation);
      if (forgotten) {
        this.timer?.cancel();
        this.o.stop(
          `the shared store no longer knows this node (node-id ${this.o.nodeId}, incarnation ${this.o.incarnation}): it was lost or restored from a backup. Stop every node of the region and start them again (keep their data directories: each replays its WAL into the store)`,
        );
        return;
      }
      if (left) {
        this.timer?.cancel(); // no more beats: its last one stays its last sign of life
        this.o.stop(
          `this node (node-id ${this.o.nodeId}) was marked left of its region (crr leave --node-id): it takes no appends; stop it and start a node with a new, empty data directory`,
        );
        return;
      }
      const nodes = await this.o.shared.regionNodes();
      await this.noteDepartures(nodes);
      await this.o.onNodes?.(nodes);
      this.failures = 0;
      await this.o.onBeat?.();
    } catch (err) {
      this.failures++;
      this.o.onFailure?.();
      this.o.log.warn(
        { err: (err as Error).message, failures: this.failures },
        "could not record this node's heartbeat in the shared store",
      );
    }
  }

  private async noteDepartures(nodes: readonly RegionNode[]): Promise<void> {
    const fellows = nodes.filter((n) => n.nodeId !== this.o.nodeId);
    const before = this.live;
    this.live = new Set(fellows.filter((n) => n.leftAtMs === undefined).map((n) => n.incarnation));
    const gone = fellows.filter((n) => n.leftAtMs !== undefined && before?.has(n.incarnation));
    if (gone.length === 0) return;
    for (const nodeId of new Set(gone.map((n) => n.nodeId))) {
      const theirs = gone.filter((n) => n.nodeId === nodeId);
      this.o.log.warn({ nodeId }, "a node of this region left it: shipping its stream from the store");
      await this.o.audit({
        kind: "node-left",
        nodeId,
        incarnations: theirs.map((n) => n.incarnation),
        leftAt: new Date(theirs[0]!.leftAtMs!).toISOString(),
      });
    }
    this.o.shipLeftStreams();
  }
}

/** The region's membership when its store is shared by several nodes; undefined otherwise. */
export function membershipOf(r: Region): Membership | undefined {
  const shared = r.store.shared;
  if (!shared || !r.nodeId) return undefined;
  return new Membership({
    shared,
    incarnation: r.wal.incarnation,
    nodeId: r.nodeId,
    intervalMs: r.config.health.probeIntervalMs,
    runtime: r.runtime,
    log: r.log,
    stop: (reason) => r.stop(reason),
    audit: (entry) => r.auditPump.record(entry),
    shipLeftStreams: () => {
      for (const s of r.shippers.values()) s.resync();
    },
    onFailure: () => r.metrics.heartbeatErrors.inc(),
    onBeat: () => r.stuckClaims.retry(),
    // Only once admitted: until then the memory is what the startup checks compare the store with.
    onNodes: async (nodes) => {
      if (r.startup.state === "admitted") await r.fellowWatch?.remember(nodes);
    },
  });
}

/** The region's memory of its nodes when its store is shared by several; undefined otherwise. */
export function fellowWatchOf(r: Region, p: Parts, fileOps: FileOps | undefined): FellowWatch | undefined {
  const shared = r.store.shared;
  if (!shared || !r.nodeId) return undefined;
  return new FellowWatch({
    dataDir: r.config.dataDir,
    region: r.name,
    nodeId: r.nodeId,
    incarnation: r.wal.incarnation,
    boot: p.boot,
    store: { watermarks: () => r.store.watermarks(), shared },
    memory: p.memory,
    forgotten: p.forgotten,
    probeIntervalMs: r.config.health.probeIntervalMs,
    fileOps,
    runtime: r.runtime,
    log: r.log,
    audit: (entry) => r.auditPump.record(entry),
    stop: (reason) => r.stop(reason),
    ownAppliedLsn: () => r.applier.applied,
    onWriteError: (err) => {
      r.disk.note(err);
      r.log.error({ err: err.message }, "could not write fellows.json (tried again at the next heartbeat)");
    },
  });
}
