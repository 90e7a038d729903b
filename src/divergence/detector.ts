/**
 * Compares this region's store with each peer's, cheaply: digest-tree roots first, then only
 * the children of nodes that differ, then the records of the buckets that differ. Each
 * differing key is classified (divergent, missing, or in flight and not reported).
 * Reads the store; never writes it (the monitor asks the store's scrub to correct digests).
 */
import type { PeerLink, WatermarksView } from "../link/index.js";
import type { Logger } from "../log.js";
import type { Runtime } from "../runtime/index.js";
import { formatVersion } from "../protocol/index.js";
import {
  bucketOf,
  childrenOf,
  leafLevel,
  nodeDigest,
  ruleName,
  type ApplyStore,
  type DigestStore,
} from "../store/index.js";

/** What the detector reads of a store. */
export type DetectorStore = DigestStore & Pick<ApplyStore, "rule" | "watermarks">;
import { classify, deadStreams, streamKey, type Finding, type StreamWatermarks } from "./classify.js";

export interface PeerScan {
  peer: string;
  findings: Finding[];
  bucketsDiffering: number;
  keysCompared: number;
  bytes: number;
  durationMs: number;
}

/** Index counts per request, so no single body grows past a few hundred KiB. */
const treeIndexesPerRequest = 4096;
const bucketsPerRequest = 256;

/** What the detector needs from the other side: a peer's link, or another store in a test or benchmark. */
export type RemoteView = Pick<PeerLink, "watermarks" | "tree" | "buckets" | "bytes">;

/** Another store in this process, answering as a peer would (JSON-sized byte count included). */
export function storeRemote(
  store: DetectorStore,
  region = "remote",
  incarnation = "0".repeat(32),
  bootstrapping?: () => boolean,
): RemoteView {
  let bytes = 0;
  const sized = <T>(v: T): T => {
    bytes += JSON.stringify(v).length;
    return v;
  };
  return {
    watermarks: async (): Promise<WatermarksView> =>
      sized({
        region,
        incarnation,
        watermarks: {},
        streams: await store.watermarks(),
        rule: ruleName(store.rule),
        formatVersion,
        clock: { wallMs: 0, logical: 0 },
        seen: [],
        ...(bootstrapping?.() ? { bootstrapping: true } : {}),
      }),
    tree: async (level, indexes) => {
      const tree = await store.digestTree();
      return sized(indexes.map((i) => nodeDigest(tree, level, i).toString("hex")));
    },
    buckets: async (buckets) => ({ versions: sized(await store.bucketVersions(buckets)) }),
    bytes: () => bytes,
  };
}

interface CompareContext {
  dead: ReturnType<typeof deadStreams>;
  nowMs: number;
  /** The process and the store whose watermarks were read (WatermarksView). */
  boot: string | undefined;
  storeId: string | undefined;
  remoteWm: StreamWatermarks;
  localWm: StreamWatermarks;
  /** Each side's last policy widening (WatermarksView.policyWidened). */
  localWidened: WatermarksView["policyWidened"];
  remoteWidened: WatermarksView["policyWidened"];
}

export interface DetectorOptions {
  region: string;
  /** The incarnations of this region's other live nodes (a shared store): their streams are live. */
  fellows?: () => Promise<ReadonlySet<string>>;
  /** This region's current incarnation (its own older streams are dead). */
  incarnation: () => string;
  /**
   * Regions served by several nodes (`regions.X.nodes: several`), and the instances of other
   * regions this region heard from lately: with what the peer heard, a third region's live
   * streams (one per node) are known instead of guessed from which was updated last.
   */
  severalNodes?: {
    regions: ReadonlySet<string>;
    heard: () => ReadonlyArray<{ region: string; incarnation: string }>;
  };
  /** This region's last policy widening (src/node/policy-memory.ts), as its own view says it. */
  policyWidened?: () => Promise<WatermarksView["policyWidened"]>;
  /** Per-tenant target regions when replication is selective; undefined: every region holds every record. */
  selectivePolicies?: ReadonlyArray<{ tenantID: string; targetRegions: readonly string[] }>;
  store: DetectorStore;
  /** How to reach a peer by name. */
  remote: (peer: string) => RemoteView;
  /** A record missing or different past this age is reported even if a watermark says it may be in flight. */
  inFlightMsMax: number;
  /** How far ahead of a region's clock a record may be stamped (hlc.maxSkewMs). */
  maxSkewMs?: number;
  runtime: Runtime;
  log: Logger;
}

export class DivergenceDetector {
  constructor(private readonly o: DetectorOptions) {}

  /** Whether `region` should hold `tenant`'s records written in `origin` (see README: symmetric meshes). */
  shouldHold = (region: string, origin: string, tenant: string): boolean => {
    const policies = this.o.selectivePolicies;
    if (region === origin || policies === undefined) return true;
    return policies.find((p) => p.tenantID === tenant)?.targetRegions.includes(region) ?? false;
  };

  async scanPeer(peer: string): Promise<PeerScan> {
    const started = this.o.runtime.monoMs();
    const remote = this.o.remote(peer);
    const bytesBefore = remote.bytes();
    const ctx = await this.context(peer, remote);
    const tree = await this.o.store.digestTree();

    let frontier = [0];
    for (let level = 0; level <= leafLevel && frontier.length > 0; level++) {
      const indexes = level === 0 ? [0] : frontier.flatMap(childrenOf);
      const differing: number[] = [];
      for (let i = 0; i < indexes.length; i += treeIndexesPerRequest) {
        const part = indexes.slice(i, i + treeIndexesPerRequest);
        const digests = await remote.tree(level, part);
        part.forEach((index, k) => {
          if (nodeDigest(tree, level, index).toString("hex") !== digests[k]) differing.push(index);
        });
      }
      frontier = differing;
    }
    const { findings, keysCompared } = await this.compareBuckets(peer, remote, frontier, ctx);
    return {
      peer,
      findings,
      bucketsDiffering: frontier.length,
      keysCompared,
      bytes: remote.bytes() - bytesBefore,
      durationMs: this.o.runtime.monoMs() - started,
    };
  }

  /**
   * The findings for `keys` alone against `peer`: their buckets compared now, the same
   * classification as a scan (what a repair request is checked against).
   */
  async checkKeys(peer: string, keys: readonly string[]): Promise<Finding[]> {
    const remote = this.o.remote(peer);
    const ctx = await this.context(peer, remote);
    const buckets = [...new Set(keys.map(bucketOf))];
    const wanted = new Set(keys);
    const { findings } = await this.compareBuckets(peer, remote, buckets, ctx);
    return findings.filter((f) => wanted.has(f.key));
  }

  /**
   * The incarnations of each several-node region that either side heard lately (the two
   * regions compared are judged by what each says of itself: deadStreams keeps that first).
   */
  private liveElsewhere(
    peerHeard: ReadonlyArray<{ region: string; incarnation: string }>,
  ): Map<string, Set<string>> {
    const live = new Map<string, Set<string>>();
    const several = this.o.severalNodes;
    if (!several) return live;
    for (const h of [...several.heard(), ...peerHeard]) {
      if (!several.regions.has(h.region)) continue;
      const set = live.get(h.region) ?? new Set<string>();
      set.add(h.incarnation);
      live.set(h.region, set);
    }
    return live;
  }

  /**
   * Whether the peer's watermarks and `answer` came from two stores, or from two processes
   * of a region served by one node. The nodes of a region served by several answer by turns
   * behind one address and share its store: only the store counts there (the review: by
   * boot, most comparisons with such a region were dropped).
   */
  private acrossTwo(peer: string, ctx: CompareContext, answer: { boot?: string; storeId?: string }): boolean {
    // One side without an id is another store too (its meta lost under a running node; or
    // a restart into an older build); an older build on both sides sends neither.
    if (ctx.storeId !== answer.storeId) return true;
    return !this.o.severalNodes?.regions.has(peer) && ctx.boot !== answer.boot;
  }

  /** Watermarks before records, on both sides: what a listing lacks below them is lost, not in flight. */
  private async context(peer: string, remote: RemoteView): Promise<CompareContext> {
    const view = await remote.watermarks();
    // A region copying the mesh's records after losing its store holds watermarks ahead of
    // its records until the copy ends: every record it lacks would look missing (found by the
    // simulator). It is compared once it has finished; until then the scan reports why not.
    if (view.bootstrapping === true)
      throw new Error(
        `${peer} is bootstrapping (copying the mesh's records after losing its store): compared once it has finished`,
      );
    const localStreams = await this.o.store.watermarks();
    const toMap = (
      s: ReadonlyArray<{ origin: string; incarnation: string; lsn: number }>,
    ): StreamWatermarks => new Map(s.map((w) => [streamKey(w.origin, w.incarnation), w.lsn]));
    return {
      dead: deadStreams(
        [
          {
            region: this.o.region,
            incarnation: this.o.incarnation(),
            incarnations: [...((await this.o.fellows?.()) ?? [])],
            streams: localStreams,
          },
          {
            region: peer,
            incarnation: view.incarnation,
            incarnations: view.incarnations,
            streams: view.streams,
          },
        ],
        this.liveElsewhere(view.seen),
      ),
      nowMs: this.o.runtime.nowMs(),
      boot: view.boot,
      storeId: view.storeId,
      remoteWm: toMap(view.streams),
      localWm: toMap(localStreams),
      localWidened: await this.o.policyWidened?.(),
      remoteWidened: view.policyWidened,
    };
  }

  private async compareBuckets(
    peer: string,
    remote: RemoteView,
    frontier: readonly number[],
    ctx: CompareContext,
  ): Promise<{ findings: Finding[]; keysCompared: number }> {
    const findings: Finding[] = [];
    let keysCompared = 0;
    for (let i = 0; i < frontier.length; i += bucketsPerRequest) {
      const buckets = frontier.slice(i, i + bucketsPerRequest);
      const answer = await remote.buckets(buckets);
      // Watermarks from one store (or process) and records from another (the peer lost its
      // store or restarted between): what it lacks is no finding (simulator seed 1302: a
      // peer's watermarks read before it lost its disk, its records after, while it copied
      // the mesh's records back, made missing findings).
      if (this.acrossTwo(peer, ctx, answer))
        throw new Error(`${peer} restarted during the comparison: compared again on the next scan`);
      const remoteVersions = answer.versions;
      const local = new Map((await this.o.store.bucketVersions(buckets)).map((v) => [v.key, v]));
      const remoteByKey = new Map(remoteVersions.map((v) => [v.key, v]));
      // Tenants the peer's policy keeps from this region: it left their versions out, so a key
      // of theirs held here is not compared (the peer may hold it; it did not say).
      const withheld = new Set(answer.withheldTenants ?? []);
      for (const key of new Set([...local.keys(), ...remoteByKey.keys()])) {
        const mine = local.get(key);
        if (mine && !remoteByKey.has(key) && withheld.has(mine.tenant)) continue;
        keysCompared++;
        const f = classify({
          key,
          local: {
            region: this.o.region,
            version: local.get(key),
            watermarks: ctx.localWm,
            widened: ctx.localWidened,
          },
          remote: {
            region: peer,
            version: remoteByKey.get(key),
            watermarks: ctx.remoteWm,
            widened: ctx.remoteWidened,
          },
          shouldHold: this.shouldHold,
          nowMs: ctx.nowMs,
          inFlightMsMax: this.o.inFlightMsMax,
          maxSkewMs: this.o.maxSkewMs,
          deadStreams: ctx.dead,
        });
        if (f) findings.push(f);
      }
    }
    return { findings, keysCompared };
  }
}
