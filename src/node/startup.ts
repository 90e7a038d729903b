/**
 * The checks between opening a region and admitting appends (the server already answers
 * peers and status meanwhile; readiness is false and status says what it waits for):
 * - another node serving this region name (a second incarnation heard from by a peer after
 *   this one started): refuse to start;
 * - the peers' clocks: a floor for ours, so a region that lost its clock does not issue
 *   timestamps that beat records it acknowledged before;
 * - a region that starts with a fresh WAL and an empty store while peers exist (a lost disk,
 *   a new region) copies what the mesh decided before it answers any append: otherwise keys
 *   it decided before answer `duplicate: false`. It waits at most `bootstrapWaitMs` for the
 *   peers; none answering is a refusal to start unless the operator starts it alone.
 */
import type { HybridClock } from "../clock/index.js";
import { CrrError } from "../errors.js";
import type { PeerLink, WatermarksView } from "../link/index.js";
import type { Logger } from "../log.js";
import type { StoredRecord } from "../store/index.js";
import { copyMesh, type CopyStore } from "./copy.js";

/** Store meta key: "running" while a bootstrap copies, "done" once it finished. */
const bootstrapMeta = "bootstrap";

export class StartupRefusedError extends CrrError {
  constructor(message: string) {
    super("startup_refused", message);
  }
}

export type StartupState = "checking" | "bootstrapping" | "admitted" | "refused";

export interface StartupOptions {
  region: string;
  incarnation: string;
  /**
   * The WAL was created by this open and the store holds nothing: the region has no state.
   * (A bootstrap that did not finish counts too: the store says so.)
   */
  empty: boolean;
  links: readonly PeerLink[];
  /** The peers' answers recovery already asked for (bounded wait). */
  views: () => Promise<Map<string, WatermarksView>>;
  store: CopyStore;
  clock: HybridClock;
  /** Whether this region may hold `tenant`'s records written in `origin`. */
  accepts: (origin: string, tenant: string) => boolean;
  /** Another incarnation of this region heard from within this long is alive. */
  aliveMs: number;
  bootstrapWaitMs: number;
  startAlone: boolean;
  log: Logger;
  nowMs: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Written to the audit log (resolves once it is): what the bootstrap copied, or that the operator started alone. */
  audit: (entry: { kind: string; [field: string]: unknown }) => Promise<void>;
}

export class StartupChecks {
  state: StartupState = "checking";
  /** What the checks are waiting for, or why they refused (status shows it). */
  detail = "asking peers what they hold";
  private readonly startedAtMs: number;

  constructor(private readonly o: StartupOptions) {
    this.startedAtMs = o.nowMs();
  }

  async run(): Promise<void> {
    try {
      let views = await this.o.views();
      views = await this.checkNoTwin(views);
      for (const [peer, v] of views) this.observeClock(peer, v.clock);
      const unfinished = this.o.store.getMeta(bootstrapMeta) === "running";
      if ((this.o.empty || unfinished) && this.o.links.length > 0) await this.bootstrap(views);
      this.state = "admitted";
      this.detail = "admitted";
    } catch (err) {
      this.state = "refused";
      this.detail = (err as Error).message;
      throw err;
    }
  }

  /** A peer's clock is a floor for ours, unless it is further ahead than the skew allowed (then it is wrong). */
  private observeClock(peer: string, hlc: StoredRecord["hlc"]): void {
    try {
      this.o.clock.update(hlc);
    } catch (err) {
      this.o.log.warn(
        { peer, err: (err as Error).message },
        "a peer's clock is too far ahead to take as a floor",
      );
    }
  }

  /** Another incarnation of this region that a peer heard from after we started is a second node. */
  private async checkNoTwin(views: Map<string, WatermarksView>): Promise<Map<string, WatermarksView>> {
    const rivals = (vs: Map<string, WatermarksView>, withinMs: number) =>
      [...vs].flatMap(([peer, v]) =>
        v.seen
          .filter(
            (s) => s.region === this.o.region && s.incarnation !== this.o.incarnation && s.agoMs <= withinMs,
          )
          .map((s) => ({ peer, ...s })),
      );
    if (rivals(views, this.o.aliveMs).length === 0) return views;
    const first = rivals(views, this.o.aliveMs)[0]!;
    this.detail = `peer ${first.peer} heard from incarnation ${first.incarnation} of ${this.o.region} ${first.agoMs} ms ago: waiting to see whether it is alive`;
    this.o.log.warn({ ...first }, "another incarnation of this region was heard from recently; waiting");
    await this.o.sleep(this.o.aliveMs);
    const again = await this.ask();
    const alive = rivals(again, this.o.nowMs() - this.startedAtMs);
    if (alive.length > 0) {
      const a = alive[0]!;
      throw new StartupRefusedError(
        `another node is serving region ${this.o.region} (incarnation ${a.incarnation}, heard by ${a.peer} ${a.agoMs} ms ago, after this node started): two nodes must not share a region name; not starting`,
      );
    }
    return again;
  }

  private async ask(): Promise<Map<string, WatermarksView>> {
    const answers = await Promise.all(
      this.o.links.map((l) =>
        l.watermarks(AbortSignal.timeout(this.o.aliveMs)).then(
          (v) => [l.peer, v] as const,
          () => undefined,
        ),
      ),
    );
    return new Map(answers.filter((a) => a !== undefined));
  }

  private async waitForPeers(views: Map<string, WatermarksView>): Promise<Map<string, WatermarksView>> {
    const until = this.startedAtMs + this.o.bootstrapWaitMs;
    while (views.size < this.o.links.length && this.o.nowMs() < until) {
      const missing = this.o.links.filter((l) => !views.has(l.peer)).map((l) => l.peer);
      this.detail = `no state of its own: waiting for ${missing.join(", ")} to learn what the mesh decided (${Math.ceil((until - this.o.nowMs()) / 1000)} s left)`;
      await this.o.sleep(Math.min(1000, Math.max(1, until - this.o.nowMs())));
      for (const [p, v] of await this.ask()) views.set(p, v);
    }
    return views;
  }

  private async bootstrap(initial: Map<string, WatermarksView>): Promise<void> {
    this.state = "bootstrapping";
    // Marked before anything else: a restart before the bootstrap finished (a refusal, a crash
    // midway) bootstraps again instead of serving from a store that lacks what the mesh decided.
    this.o.store.setMeta(bootstrapMeta, "running");
    if (this.o.startAlone) {
      this.o.log.warn("no state of its own and started alone (--start-alone): not copying from peers");
      await this.o.audit({ kind: "start-alone", reason: "operator started a region without state alone" });
      this.o.store.setMeta(bootstrapMeta, "done");
      return;
    }
    const views = await this.waitForPeers(new Map(initial));
    if (views.size === 0) {
      throw new StartupRefusedError(
        `region ${this.o.region} has no state of its own and none of its peers (${this.o.links.map((l) => l.peer).join(", ")}) answered within ${this.o.bootstrapWaitMs} ms: it cannot know what the mesh decided. Start it when a peer is reachable, or alone with: crr serve --config FILE --start-alone`,
      );
    }
    this.detail = `copying what ${[...views.keys()].join(", ")} hold`;
    const copied = await this.copyWithRetries(views);
    this.o.store.setMeta(bootstrapMeta, "done");
    const missing = this.o.links.filter((l) => !views.has(l.peer)).map((l) => l.peer);
    this.o.log.info({ copied, from: [...views.keys()], unreachable: missing }, "bootstrapped from peers");
    await this.o.audit({ kind: "bootstrap", from: [...views.keys()], unreachable: missing, copied });
  }

  /** Copying is idempotent: a peer that fails midway is tried again until the bootstrap bound. */
  private async copyWithRetries(views: Map<string, WatermarksView>): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.copyFrom(views);
      } catch (err) {
        if (this.o.nowMs() > this.startedAtMs + this.o.bootstrapWaitMs) throw err;
        this.detail = `copying from peers failed (${(err as Error).message}); retrying`;
        this.o.log.warn({ attempt, err: (err as Error).message }, "bootstrap copy failed; retrying");
        await this.o.sleep(Math.min(2000, 100 * 2 ** attempt));
        views = await this.ask();
        if (views.size === 0) throw err;
      }
    }
  }

  private async copyFrom(views: Map<string, WatermarksView>): Promise<number> {
    const links = new Map(this.o.links.map((l) => [l.peer, l]));
    const r = await copyMesh({
      region: this.o.region,
      views,
      links,
      store: this.o.store,
      accepts: this.o.accepts,
    });
    if (r.newest) this.o.clock.observe(r.newest);
    return r.copied;
  }
}
