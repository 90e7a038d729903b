/**
 * The checks between opening a region and admitting appends (the server already answers
 * peers and status meanwhile; readiness is false and status says what it waits for):
 * - own records the store lost below the WAL, when a peer that may hold them did not answer
 *   at open: asked again until it answers or `bootstrapWaitMs` passes (then a refusal);
 * - another node serving this region name (a second incarnation heard from by a peer after
 *   this one started): refuse to start;
 * - the newest stamp of this region's own records a bootstrap copied: a floor for our clock,
 *   so a region that lost its clock does not issue timestamps that beat records it
 *   acknowledged before; the peers' clocks and the other regions' stamps copied: a floor only
 *   within `hlc.maxSkewMs` of our clock, as for a peer's batch (a clock further ahead is
 *   logged, not followed);
 * - a region that starts with a fresh WAL and an empty store while peers exist (a lost disk,
 *   a new region) copies what the mesh decided before it answers any append: otherwise keys
 *   it decided before answer `duplicate: false`. It waits at most `bootstrapWaitMs` for the
 *   peers; none answering is a refusal to start unless the operator starts it alone.
 */
import type { ArchiveSeed } from "../archive/index.js";
import type { Hlc, HybridClock } from "../clock/index.js";
import { CrrError } from "../errors.js";
import type { PeerLink, WatermarksView } from "../link/index.js";
import type { Logger } from "../log.js";
import { sleep, timeoutSignal, type Runtime } from "../runtime/index.js";
import type { StoredRecord } from "../store/index.js";
import {
  copyMesh,
  cutStreams,
  missingAfterCut,
  noteCut,
  noteSeeded,
  seededStreams,
  type CopyStore,
} from "./copy.js";
import { bootstrapMeta } from "./wal-open.js";

export class StartupRefusedError extends CrrError {
  constructor(message: string) {
    super("startup_refused", message);
  }
}

/** Own LSNs past an archive's cut that neither the archive nor a peer held (`ranges`: the first 1,000). */
interface LostStream {
  origin: string;
  incarnation: string;
  lsns: number;
  ranges: Array<[number, number]>;
}

/** What the archive's part of a bootstrap restored: the streams whole, the cut ones, the audit entry's part. */
interface Seeded {
  streams: ArchiveSeed["streams"];
  cut: ArchiveSeed["cut"];
  audit: Record<string, unknown>;
}

export type StartupState = "checking" | "bootstrapping" | "admitted" | "refused";

export interface StartupOptions {
  region: string;
  incarnation: string;
  /** The region has no state of its own (an empty store, or a bootstrap that did not finish). */
  empty: boolean;
  links: readonly PeerLink[];
  /** The peers' answers recovery already asked for (bounded wait). */
  views: () => Promise<Map<string, WatermarksView>>;
  store: CopyStore;
  clock: HybridClock;
  /** Whether this region may hold `tenant`'s records written in `origin`. */
  accepts: (origin: string, tenant: string) => boolean;
  /** Another instance of this region heard from within this long may be alive. */
  aliveMs: number;
  /** How often every node probes its peers (an alive instance is heard within it). */
  probeIntervalMs: number;
  /** This process's boot id, and the one that ran this data directory before it (not a rival). */
  boot: string;
  previousBoot: string | undefined;
  /**
   * After a shared store forgot what it held: waits until every fellow this node remembers
   * replayed its WAL into it again, saying what it waits for; refused at `untilMs`.
   */
  fellowsReplayed?: (o: { untilMs: number; onWait: (detail: string) => void }) => Promise<void>;
  /** Runs once every check passed, right before appends are admitted (a node ends its claims here). */
  beforeAdmit?: () => Promise<void>;
  /** The incarnations of the region's other live nodes on a shared store: fellows, not rivals. */
  fellows?: () => Promise<ReadonlySet<string>>;
  bootstrapWaitMs: number;
  startAlone: boolean;
  log: Logger;
  runtime: Runtime;
  /**
   * Finishes the store's catch-up with this region's own stream if open could not (a peer
   * that may hold lost records did not answer): retried until `untilMs`, saying what it waits
   * for; resolves at once when open finished it.
   */
  catchUp?: (o: { untilMs: number; onWait: (detail: string) => void }) => Promise<void>;
  /**
   * Fills the empty store from the S3 archive before the peers are asked (`archive.bootstrap`):
   * the streams it restored whole, which the copy from the peers then resumes after.
   */
  fromArchive?: () => Promise<ArchiveSeed>;
  /**
   * The operator accepted the loss of what this region's WAL held (`--accept-wal-loss`): a
   * stream of its own the archive holds only up to a hole or a damaged object is taken that
   * far, audited, instead of refusing the start.
   */
  acceptWalLoss?: boolean;
  /** Written to the audit log (resolves once it is): what the bootstrap copied, or that the operator started alone. */
  audit: (entry: { kind: string; [field: string]: unknown }) => Promise<void>;
}

export class StartupChecks {
  state: StartupState = "checking";
  /** What the checks are waiting for, or why they refused (status shows it). */
  detail = "asking peers what they hold";
  private readonly startedAtMs: number;
  /** Where the bootstrap's wait for peers starts (after a catch-up that waited, not before it). */
  private bootstrapFromMs: number;

  constructor(private readonly o: StartupOptions) {
    this.startedAtMs = o.runtime.nowMs();
    this.bootstrapFromMs = this.startedAtMs;
  }

  async run(): Promise<void> {
    try {
      if (this.o.catchUp) {
        await this.o.catchUp({
          untilMs: this.startedAtMs + this.o.bootstrapWaitMs,
          onWait: (detail) => (this.detail = detail),
        });
        this.bootstrapFromMs = this.o.runtime.nowMs(); // a bootstrap after it gets a whole wait of its own
      }
      let views = await this.o.views();
      views = await this.checkNoTwin(views);
      for (const [peer, v] of views) this.observeClock(v.clock, { peer }, "a peer's clock");
      if (this.o.empty && this.o.links.length > 0) await this.bootstrap(views);
      else if (this.o.empty) await this.bootstrapAlone("a region with no peers");
      await this.o.fellowsReplayed?.({
        untilMs: this.o.runtime.nowMs() + this.o.bootstrapWaitMs,
        onWait: (detail) => (this.detail = detail),
      });
      await this.o.beforeAdmit?.();
      this.state = "admitted";
      this.detail = "admitted";
    } catch (err) {
      this.state = "refused";
      this.detail = (err as Error).message;
      throw err;
    }
  }

  /**
   * What a bootstrap copied is a floor for our clock. Our own records (any incarnation) are
   * our own past, as the WAL's are at recovery: always, however far ahead of our clock, or a
   * clock that came back slow would stamp new records below ones this region acknowledged,
   * and they would beat those (first-write-wins; found by review). Another region's stamps
   * only within the skew allowed (observeClock).
   */
  private takeFloor(newest: { own?: Hlc; other?: Hlc }, what: string): void {
    if (newest.own) this.o.clock.observe(newest.own);
    if (newest.other) this.observeClock(newest.other, {}, `the newest record of another region that ${what}`);
  }

  /**
   * A peer's clock, or the newest stamp of another region a bootstrap copied, is a floor for
   * ours, unless it is further ahead than the skew allowed (then the clock that stamped it was
   * wrong: taking it would stamp this region's records that far ahead, and its peers would
   * refuse them until their clocks caught up; simulator seed 228, a peer's clock 71 s ahead).
   * The same rule as a peer's batch: a stamp within the skew moves the clock.
   */
  private observeClock(hlc: StoredRecord["hlc"], where: Record<string, unknown>, what: string): void {
    try {
      this.o.clock.update(hlc);
    } catch (err) {
      this.o.log.warn(
        { ...where, err: (err as Error).message },
        `${what} is too far ahead to take as a floor`,
      );
    }
  }

  /**
   * Another process serving this region (another incarnation, or this incarnation started
   * twice from a copied data directory) that a peer heard from after this one first spoke to
   * it, is alive: this node is the second one and does not start. Only worth asking when a
   * peer heard another instance recently; the one that ran this data directory before us
   * (crashed or stopped here) is not a rival.
   */
  private async checkNoTwin(views: Map<string, WatermarksView>): Promise<Map<string, WatermarksView>> {
    const fellows = (await this.o.fellows?.()) ?? new Set<string>();
    const others = (vs: Map<string, WatermarksView>) =>
      [...vs].flatMap(([peer, v]) =>
        v.seen
          .filter(
            (s) =>
              s.region === this.o.region && !(s.incarnation === this.o.incarnation && s.boot === this.o.boot),
          )
          .filter((s) => s.boot === "" || s.boot !== this.o.previousBoot)
          .filter((s) => !fellows.has(s.incarnation))
          .map((s) => ({
            peer,
            ...s,
            me: v.seen.find((m) => m.region === this.o.region && m.boot === this.o.boot),
          })),
      );
    const recent = others(views).filter((s) => s.agoMs <= this.o.aliveMs);
    if (recent.length === 0) return views;
    const first = recent[0]!;
    this.detail = `peer ${first.peer} heard another node of ${this.o.region} (incarnation ${first.incarnation}) ${first.agoMs} ms ago: waiting to see whether it is alive`;
    this.o.log.warn(
      { ...first, me: undefined },
      "another node of this region was heard from recently; waiting",
    );
    // Our own probes reach every peer within a probe interval; the other one, if alive, too.
    await sleep(this.o.runtime, Math.round(1.5 * this.o.probeIntervalMs) + 100);
    const again = await this.ask();
    const sinceStart = this.o.runtime.nowMs() - this.startedAtMs;
    const alive = others(again).filter((s) => s.agoMs < (s.me?.firstAgoMs ?? sinceStart));
    if (alive.length > 0) {
      const a = alive[0]!;
      throw new StartupRefusedError(
        `another node is serving region ${this.o.region} (incarnation ${a.incarnation}, boot ${a.boot}, heard by ${a.peer} ${a.agoMs} ms ago, after this node started): two nodes must not serve one region (a shared region name, or a copied data directory); not starting`,
      );
    }
    return again;
  }

  private async ask(): Promise<Map<string, WatermarksView>> {
    const answers = await Promise.all(
      this.o.links.map((l) =>
        l.watermarks(timeoutSignal(this.o.runtime, this.o.aliveMs)).then(
          (v) => [l.peer, v] as const,
          () => undefined,
        ),
      ),
    );
    return new Map(answers.filter((a) => a !== undefined));
  }

  private async waitForPeers(views: Map<string, WatermarksView>): Promise<Map<string, WatermarksView>> {
    const until = this.bootstrapFromMs + this.o.bootstrapWaitMs;
    while (views.size < this.o.links.length && this.o.runtime.nowMs() < until) {
      const missing = this.o.links.filter((l) => !views.has(l.peer)).map((l) => l.peer);
      this.detail = `no state of its own: waiting for ${missing.join(", ")} to learn what the mesh decided (${Math.ceil((until - this.o.runtime.nowMs()) / 1000)} s left)`;
      await sleep(this.o.runtime, Math.min(1000, Math.max(1, until - this.o.runtime.nowMs())));
      refresh(views, await this.ask());
    }
    return views;
  }

  private async bootstrap(initial: Map<string, WatermarksView>): Promise<void> {
    this.state = "bootstrapping";
    // (Marked "running" when the store was found empty, before the WAL was created: a restart
    // before the bootstrap finished bootstraps again.)
    if (this.o.startAlone) {
      this.o.log.warn("no state of its own and started alone (--start-alone): not copying from peers");
      await this.bootstrapAlone("operator started a region without state alone");
      return;
    }
    const seed = await this.seedFromArchive();
    const views = await this.waitForPeers(new Map(initial));
    if (views.size === 0) {
      throw new StartupRefusedError(
        `region ${this.o.region} has no state of its own and none of its peers (${this.o.links.map((l) => l.peer).join(", ")}) answered within ${this.o.bootstrapWaitMs} ms: it cannot know what the mesh decided. Start it when a peer is reachable, or alone with: crr serve --config FILE --start-alone`,
      );
    }
    // Ask again right before copying: the answers gathered at open may be old by now (a peer
    // that was still receiving our older incarnation holds more), and a stream copied only to
    // an old watermark leaves keys this region would decide again (found by the simulator,
    // seed 60).
    refresh(views, await this.ask());
    this.refuseOnlyBootstrapping(views);
    this.detail = `copying what ${[...views.keys()].join(", ")} hold`;
    // What this start restored from the archive, and what an earlier start or `crr bootstrap` did.
    await noteSeeded(this.o.store, seed.streams);
    await noteCut(this.o.store, seed.cut);
    const copied = await this.copyWithRetries(views, await seededStreams(this.o.store));
    const lost = await this.refuseOwnGaps();
    await this.settleOwnCuts();
    await this.o.store.setMeta(bootstrapMeta, "done");
    await noteSeeded(this.o.store, undefined);
    await noteCut(this.o.store, undefined);
    const missing = this.o.links.filter((l) => !views.has(l.peer)).map((l) => l.peer);
    this.o.log.info({ copied, from: [...views.keys()], unreachable: missing }, "bootstrapped from peers");
    await this.o.audit({
      kind: "bootstrap",
      from: [...views.keys()],
      unreachable: missing,
      copied,
      ...this.archiveAudit(seed),
      ...(lost.length > 0 ? { lost } : {}),
    });
  }

  /**
   * A region without state and without peers to ask (none configured, or the operator
   * started it alone): what the archive holds, when it bootstraps from one (a single region
   * that lost its disk has nothing else), then done.
   */
  private async bootstrapAlone(reason: string): Promise<void> {
    this.state = "bootstrapping";
    const seed = await this.seedFromArchive();
    await noteCut(this.o.store, seed.cut);
    const missing = await this.refuseOwnGaps();
    await this.settleOwnCuts();
    await this.o.store.setMeta(bootstrapMeta, "done");
    await noteCut(this.o.store, undefined);
    const lost = missing.length > 0 ? { lost: missing } : {};
    if (this.o.startAlone)
      await this.o.audit({ kind: "start-alone", reason, ...this.archiveAudit(seed), ...lost });
    else if (this.o.fromArchive || missing.length > 0)
      await this.o.audit({ kind: "bootstrap", reason, from: [], ...this.archiveAudit(seed), ...lost });
  }

  private archiveAudit(seed: { audit: Record<string, unknown> }): Record<string, unknown> {
    return this.o.fromArchive ? { archive: seed.audit } : {};
  }

  /**
   * A peer that is itself bootstrapping holds its own stream (from its WAL) but only part of
   * what the mesh decided: when only such peers answered and another did not, the one that
   * did not may hold what no one else does (this region's own older records), so the start
   * is refused and asked again later (found by the simulator, seed 57: a region copied from
   * two peers that had lost their stores and came up without its own older records, which
   * only an unreachable peer held). When every peer answered, there is nothing more to wait
   * for (every region lost its store: seed 67).
   */
  private refuseOnlyBootstrapping(views: Map<string, WatermarksView>): void {
    const withState = [...views.values()].some((v) => v.bootstrapping !== true);
    if (withState || views.size === this.o.links.length) return;
    const missing = this.o.links.filter((l) => !views.has(l.peer)).map((l) => l.peer);
    throw new StartupRefusedError(
      `region ${this.o.region} has no state of its own; the peers that answered (${[...views.keys()].join(", ")}) are bootstrapping themselves and ${missing.join(", ")} did not answer within ${this.o.bootstrapWaitMs} ms: what only ${missing.join(", ")} holds would be missed. Start it again when one of them is reachable, or alone with: crr serve --config FILE --start-alone`,
    );
  }

  /**
   * The archive's part of a bootstrap: what it restored. An archive that cannot be read is
   * asked again until the bootstrap bound, then the start is refused: it may hold what no
   * peer does (a tenant this region sends nowhere, records not shipped before the disk was
   * lost), and a region that went on from the peers alone would decide those keys again.
   * The peers' wait starts after it (a long restore does not eat it).
   */
  private async seedFromArchive(): Promise<Seeded> {
    if (!this.o.fromArchive) return { streams: [], cut: [], audit: {} };
    this.detail = "restoring what the S3 archive holds before asking the peers";
    for (let attempt = 1; ; attempt++) {
      try {
        const seed = this.seeded(await this.o.fromArchive());
        this.bootstrapFromMs = this.o.runtime.nowMs();
        return seed;
      } catch (err) {
        const error = (err as Error).message;
        if (this.o.runtime.nowMs() > this.bootstrapFromMs + this.o.bootstrapWaitMs)
          throw new StartupRefusedError(
            `region ${this.o.region} has no state of its own and could not restore its S3 archive within ${this.o.bootstrapWaitMs} ms (${error}): the archive may hold records no peer does, which this region would decide again. Start it again when the archive is readable, or without archive.bootstrap to copy from the peers alone (what only the archive holds is then lost)`,
          );
        this.detail = `restoring the S3 archive failed (${error}); retrying`;
        this.o.log.warn({ attempt, err: error }, "bootstrap: the archive could not be restored; retrying");
        await sleep(this.o.runtime, Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  private seeded(seed: ArchiveSeed): Seeded {
    for (const c of seed.cut)
      this.o.log.warn(
        { ...c },
        "bootstrap: the archive holds this stream only up to a hole or damage; the peers give the rest they hold",
      );
    const at = (wallMs: number | undefined) => (wallMs === undefined ? undefined : { wallMs, logical: 0 });
    this.takeFloor({ own: at(seed.newestMs.own), other: at(seed.newestMs.other) }, "the archive restored");
    this.o.log.info(
      { records: seed.records, objects: seed.objects, streams: seed.streams, passedOver: seed.passedOver },
      "bootstrap: restored from the archive",
    );
    return {
      streams: seed.streams,
      cut: seed.cut,
      audit: {
        records: seed.records,
        objects: seed.objects,
        streams: seed.streams,
        ...(seed.passedOver.length > 0 ? { passedOver: seed.passedOver } : {}),
        ...(seed.cut.length > 0 ? { cut: seed.cut } : {}),
      },
    };
  }

  /**
   * Another region's stream cut short by a hole or a damaged object is no loss: that region
   * holds it, and the peers gave the rest. This region's own may be: once the peers' copy is
   * done, every LSN of it through the last one the archive holds must be in the store (from
   * the archive or from a peer). One that is not (a tenant it sends nowhere, a record a peer
   * skipped, a policy that changed) is held by no one that answered, and its key would be
   * decided again: the start is refused, naming the LSNs, until a peer that holds them
   * answers, the archive is mended, or the operator accepts their loss (`--accept-wal-loss`:
   * the LSNs go into the audit entry as `lost`). Cuts met by an earlier start or by
   * `crr bootstrap --from s3` count too (kept in the store until the bootstrap is done).
   */
  private async refuseOwnGaps(): Promise<LostStream[]> {
    const missing: LostStream[] = [];
    for (const c of (await cutStreams(this.o.store)).filter((x) => x.origin === this.o.region)) {
      const ranges = await missingAfterCut(this.o.store, c);
      const lsns = ranges.reduce((n, [a, b]) => n + b - a + 1, 0);
      // The audit entry keeps the first 1,000 ranges and the count of every LSN.
      if (ranges.length > 0)
        missing.push({ origin: c.origin, incarnation: c.incarnation, lsns, ranges: ranges.slice(0, 1000) });
    }
    if (missing.length === 0 || this.o.acceptWalLoss) return missing;
    const what = missing.map(
      (m) =>
        `${m.origin}/${m.incarnation} LSNs ${m.ranges
          .slice(0, 5)
          .map(([a, b]) => (a === b ? `${a}` : `${a}..${b}`))
          .join(", ")}${m.ranges.length > 5 ? ", …" : ""}`,
    );
    throw new StartupRefusedError(
      `region ${this.o.region} has no state of its own and its S3 archive holds its own stream only in part; neither the archive nor the peers that answered hold ${what.join("; ")}, which it wrote: a tenant it sends nowhere, or a record no peer got, and their keys would be decided again. Start it again when a peer that may hold them is reachable, mend the archive, or accept their loss: crr serve --config FILE --accept-wal-loss (audited)`,
    );
  }

  /**
   * Once `refuseOwnGaps` let the start go on, every LSN of its own cut streams through the
   * archive's last one is in the store or declared lost: each watermark goes there, so its
   * shippers ship what was restored past the cut (a shipper ships an older incarnation only
   * up to its watermark, and past it only up to the first LSN not held: found by review, the
   * records written past a hole reached no peer). What the holes held goes out as skips,
   * audited as lost at this origin (`records-lost`).
   */
  private async settleOwnCuts(): Promise<void> {
    for (const c of (await cutStreams(this.o.store)).filter((x) => x.origin === this.o.region))
      if ((await this.o.store.watermark(c.origin, c.incarnation)) < c.archivedLsn)
        await this.o.store.resetWatermark(c.origin, c.incarnation, c.archivedLsn);
  }

  /**
   * Copying is idempotent: a peer that fails midway is tried again until the bootstrap
   * bound, then the start is refused (a supervisor's restart asks again). A retry refreshes
   * the answers but never drops a peer that answered: it may be the only one holding a
   * record of ours (found by the simulator, seed 33: a retry copied from the one peer that
   * answered again, and the region came up without an acknowledged record another peer held).
   */
  private async copyWithRetries(
    views: Map<string, WatermarksView>,
    covered: ArchiveSeed["streams"],
  ): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.copyFrom(views, covered);
      } catch (err) {
        if (this.o.runtime.nowMs() > this.bootstrapFromMs + this.o.bootstrapWaitMs)
          throw new StartupRefusedError(
            `region ${this.o.region} has no state of its own and could not copy what its peers hold within ${this.o.bootstrapWaitMs} ms: ${(err as Error).message}`,
          );
        this.detail = `copying from peers failed (${(err as Error).message}); retrying`;
        this.o.log.warn({ attempt, err: (err as Error).message }, "bootstrap copy failed; retrying");
        await sleep(this.o.runtime, Math.min(2000, 100 * 2 ** attempt));
        refresh(views, await this.ask());
      }
    }
  }

  private async copyFrom(
    views: Map<string, WatermarksView>,
    covered: ArchiveSeed["streams"],
  ): Promise<number> {
    const links = new Map(this.o.links.map((l) => [l.peer, l]));
    const r = await copyMesh({
      region: this.o.region,
      views,
      links,
      store: this.o.store,
      accepts: this.o.accepts,
      covered,
    });
    this.takeFloor(r.newest, "was copied from the peers");
    return r.copied;
  }
}

/**
 * Newer answers replace older ones (a peer that answered with its state before may be
 * bootstrapping now: seed 57); a peer that does not answer now keeps its answer (seed 33).
 */
function refresh(views: Map<string, WatermarksView>, answers: Map<string, WatermarksView>): void {
  for (const [p, v] of answers) views.set(p, v);
}
