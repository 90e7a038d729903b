import { describe, expect, it } from "vitest";
import { HybridClock } from "../clock/index.js";
import type { PeerLink, StreamQuery, WatermarksView } from "../link/index.js";
import { silentLogger } from "../log.js";
import { realRuntime } from "../runtime/index.js";
import type { StoredRecord } from "../store/index.js";
import type { CopyStore } from "./copy.js";
import { StartupChecks, type StartupOptions } from "./startup.js";
import type { ArchiveSeed } from "../archive/index.js";

const older = "a".repeat(32);

function version(lsn: number): StoredRecord & { intact: boolean } {
  return {
    key: `t/k${lsn}`,
    tenant: "t",
    outcome: "approve",
    bodyJson: undefined,
    origin: "r0",
    incarnation: older,
    lsn,
    hlc: { wallMs: 1_000 + lsn, logical: 0 },
    intact: true,
  };
}

function view(peer: string, olderLsn: number): WatermarksView {
  return {
    region: peer,
    incarnation: `${peer}`.padEnd(32, "0"),
    watermarks: {},
    streams: [{ origin: "r0", incarnation: older, lsn: olderLsn, updatedAtMs: 1 }],
    rule: "first-write-wins",
    formatVersion: 1,
    clock: { wallMs: 1_000, logical: 0 },
    seen: [],
  };
}

/**
 * A peer holding r0's older incarnation through `held`. `flaky`: its first copy fails and
 * it does not answer the ask that follows (a lossy moment), then it is fine again.
 */
function peer(name: string, held: number, flaky: boolean): PeerLink {
  let copies = 0;
  let asks = 0;
  return {
    peer: name,
    watermarks: async () => {
      asks++;
      if (flaky && asks === 2) throw new Error(`${name}: timeout`);
      return view(name, held);
    },
    streamRecords: async (q: StreamQuery) => {
      if (flaky && copies++ === 0) throw new Error(`${name}: connection reset`);
      const versions = Array.from({ length: held }, (_, i) => version(i + 1)).filter(
        (v) => v.lsn >= q.fromLsn && v.lsn <= q.toLsn,
      );
      return { versions, next: undefined };
    },
    exportPage: async () => ({ versions: [], next: undefined }),
  } as unknown as PeerLink;
}

function memoryStore() {
  const held = new Map<string, StoredRecord>();
  const marks = new Map<string, number>();
  const meta = new Map<string, string>();
  const store: CopyStore = {
    repair: async (vs) => vs.map((v) => (held.set(v.key, v), v.key)),
    getMeta: async (name) => meta.get(name),
    setMeta: async (name, value) => void (value === undefined ? meta.delete(name) : meta.set(name, value)),
    resetWatermark: async (o, i, lsn) => void marks.set(`${o}/${i}`, lsn),
    watermark: async (o, i) => marks.get(`${o}/${i}`) ?? 0,
    streamVersions: async (o, i, from, to) =>
      [...held.values()]
        .filter((v) => v.origin === o && v.incarnation === i && v.lsn >= from && v.lsn <= to)
        .map((v) => ({ ...v, intact: true })),
  };
  return { store, held, marks, meta };
}

/** Region r0's startup checks, empty, with `links` and the answers `views` gave at open. */
function checksOf(
  links: PeerLink[],
  views: () => Promise<Map<string, WatermarksView>>,
  store: CopyStore,
  bootstrapWaitMs: number,
  clock = new HybridClock({ wallClock: () => realRuntime.nowMs() }),
  more: Partial<StartupOptions> = {},
) {
  const audits: Array<Record<string, unknown>> = [];
  const checks = new StartupChecks({
    region: "r0",
    incarnation: "b".repeat(32),
    empty: true,
    links,
    views,
    store,
    clock,
    accepts: () => true,
    aliveMs: 1000,
    probeIntervalMs: 1000,
    boot: "boot",
    previousBoot: undefined,
    bootstrapWaitMs,
    startAlone: false,
    log: silentLogger(),
    runtime: realRuntime,
    audit: async (e) => void audits.push(e),
    ...more,
  });
  return { checks, audits };
}

describe("StartupChecks bootstrap", () => {
  it("a copy retried after a failure still copies from every peer that answered, not only those answering again", async () => {
    const links = [peer("r1", 3, true), peer("r2", 2, false)];
    const { store, held, marks } = memoryStore();
    const { checks, audits } = checksOf(
      links,
      async () => new Map([...links].map((l) => [l.peer, view(l.peer, l.peer === "r1" ? 3 : 2)])),
      store,
      20_000,
    );
    await checks.run();
    // r1 alone held LSN 3 of our older incarnation (acknowledged before the disk was lost).
    expect(held.has("t/k3")).toBe(true);
    expect(marks.get(`r0/${older}`)).toBe(3);
    expect(audits).toEqual([
      expect.objectContaining({ kind: "bootstrap", from: ["r1", "r2"], unreachable: [] }),
    ]);
  });

  it("asks the peers again right before copying: an answer from open may be old (simulator seed 60)", async () => {
    const link = peer("r1", 3, false); // it holds LSN 3 of our older incarnation by now
    const { store, held, marks } = memoryStore();
    const { checks } = checksOf([link], async () => new Map([["r1", view("r1", 2)]]), store, 20_000);
    await checks.run();
    expect(held.has("t/k3")).toBe(true);
    expect(marks.get(`r0/${older}`)).toBe(3);
  });

  it("when only peers that are bootstrapping themselves answered and another did not, the start is refused (simulator seed 57)", async () => {
    /** Answered with r0's older incarnation at open; by the copy it lost its store and is bootstrapping. */
    const lost = (name: string): PeerLink =>
      ({
        ...peer(name, 3, false),
        watermarks: async () => ({ ...view(name, 0), streams: [], bootstrapping: true }),
        streamRecords: async () => ({ versions: [], next: undefined }),
      }) as unknown as PeerLink;
    const down = (name: string): PeerLink =>
      ({
        ...peer(name, 3, false),
        watermarks: async () => {
          throw new Error(`${name}: connection refused`);
        },
      }) as unknown as PeerLink;
    const start = (links: PeerLink[], answered: string[]) => {
      const { store, held } = memoryStore();
      const { checks, audits } = checksOf(
        links,
        async () => new Map(answered.map((p) => [p, view(p, 3)])),
        store,
        300,
      );
      return { checks, held, audits };
    };
    // r1 answered with its state at open and is bootstrapping now; r3 (the one that may hold
    // our older records) never answers.
    const refused = start([lost("r1"), down("r3")], ["r1"]);
    await expect(refused.checks.run()).rejects.toThrow("are bootstrapping themselves and r3 did not answer");
    expect(refused.audits).toEqual([]);
    // A peer with its state answered: go on, with what everyone holds.
    const one = start([lost("r1"), peer("r2", 3, false), down("r3")], ["r1", "r2"]);
    await one.checks.run();
    expect(one.held.has("t/k3")).toBe(true);
    expect(one.audits).toEqual([expect.objectContaining({ kind: "bootstrap", unreachable: ["r3"] })]);
    // Every peer answered, all bootstrapping (every region lost its store): nothing to wait for.
    const all = start([lost("r1"), lost("r2")], ["r1", "r2"]);
    await all.checks.run();
    expect(all.audits).toEqual([expect.objectContaining({ kind: "bootstrap", from: ["r1", "r2"] })]);
  });

  it("takes the newest stamp of another region it copied as the clock's floor only within the skew allowed (simulator seed 228: a peer's clock 71 s ahead), and its own records' always (review: a clock that came back slow)", async () => {
    const nowMs = 1_800_000_000_000;
    /**
     * r1 holds one record, stamped `aheadMs` ahead of our clock: of its own stream ("r1"), or
     * of our older incarnation ("r0", acknowledged by us before the disk was lost).
     */
    const copying = (origin: "r0" | "r1", aheadMs: number) => {
      const answered = { ...view("r1", origin === "r0" ? 1 : 0), clock: { wallMs: nowMs, logical: 0 } };
      if (origin === "r1")
        answered.streams = [{ origin: "r1", incarnation: answered.incarnation, lsn: 1, updatedAtMs: 1 }];
      const incarnation = origin === "r0" ? older : answered.incarnation;
      const record = { ...version(1), origin, incarnation, hlc: { wallMs: nowMs + aheadMs, logical: 3 } };
      const link = {
        ...peer("r1", 1, false),
        watermarks: async () => answered,
        streamRecords: async () => ({ versions: [record], next: undefined }),
      } as unknown as PeerLink;
      const clock = new HybridClock({ wallClock: () => nowMs, maxSkewMs: 60_000 });
      const { store, held } = memoryStore();
      const { checks } = checksOf([link], async () => new Map([["r1", answered]]), store, 20_000, clock);
      return { checks, clock, held };
    };
    const far = copying("r1", 71_000);
    await far.checks.run();
    expect(far.held.has("t/k1")).toBe(true); // copied all the same: it was acknowledged
    expect(far.clock.now().wallMs).toBe(nowMs);
    const near = copying("r1", 5_000);
    await near.checks.run();
    expect(near.clock.now()).toEqual({ wallMs: nowMs + 5_000, logical: 5 });
    // Our own record, 90 s ahead of a clock that came back slow: new records stamp above it.
    const own = copying("r0", 90_000);
    await own.checks.run();
    expect(own.held.has("t/k1")).toBe(true);
    expect(own.clock.now().wallMs).toBe(nowMs + 90_000);
  });

  /** An archive that fails its first `failures` reads, then restores one record of r0's older incarnation. */
  function archive(failures: number) {
    const calls = { n: 0 };
    const fromArchive = async (): Promise<ArchiveSeed> => {
      if (++calls.n <= failures) throw new Error("s3: connection refused");
      return {
        passedOver: [],
        records: 1,
        objects: 1,
        streams: [{ origin: "r0", incarnation: older, lsn: 1 }],
        newestMs: { own: 1_001 },
        cut: [],
      };
    };
    return { calls, fromArchive };
  }

  it("an archive it cannot read is asked again; past the bound the start is refused, not bootstrapped from the peers alone (the archive may hold what no peer does)", async () => {
    const links = [peer("r1", 3, false)];
    const views = async () => new Map([["r1", view("r1", 3)]]);
    const down = memoryStore();
    const never = archive(Infinity);
    const refused = checksOf(links, views, down.store, 300, undefined, { fromArchive: never.fromArchive });
    await expect(refused.checks.run()).rejects.toThrow(
      /could not restore its S3 archive within 300 ms \(s3: connection refused\).*without archive\.bootstrap/,
    );
    expect(never.calls.n).toBeGreaterThan(1);
    expect(refused.checks.state).toBe("refused");
    expect(down.held.size).toBe(0); // nothing copied from the peers
    expect(down.meta.get("bootstrap")).toBeUndefined(); // not done: the next start bootstraps again
    expect(refused.audits).toEqual([]);
    // An archive that comes back within the bound: its seed, then the rest from the peers.
    const up = memoryStore();
    const flaky = archive(2);
    const ok = checksOf(links, views, up.store, 20_000, undefined, { fromArchive: flaky.fromArchive });
    await ok.checks.run();
    expect(flaky.calls.n).toBe(3);
    expect(up.meta.get("bootstrap")).toBe("done");
    expect(up.held.has("t/k1")).toBe(false); // the archive's stream is not copied again
    expect(up.held.has("t/k3")).toBe(true);
    expect(ok.audits).toEqual([
      expect.objectContaining({
        kind: "bootstrap",
        from: ["r1"],
        archive: expect.objectContaining({ records: 1 }),
      }),
    ]);
  });

  it("a region without peers, or started alone, restores its archive before it is admitted (a single region that lost its disk has nothing else)", async () => {
    const none = async () => new Map<string, WatermarksView>();
    const single = memoryStore();
    const one = archive(0);
    const alone = checksOf([], none, single.store, 20_000, undefined, { fromArchive: one.fromArchive });
    await alone.checks.run();
    expect(one.calls.n).toBe(1);
    expect(single.meta.get("bootstrap")).toBe("done");
    expect(alone.audits).toEqual([
      expect.objectContaining({
        kind: "bootstrap",
        from: [],
        archive: expect.objectContaining({ records: 1 }),
      }),
    ]);
    const started = memoryStore();
    const two = archive(0);
    const links = [peer("r1", 3, false)];
    const operator = checksOf(links, none, started.store, 20_000, undefined, {
      fromArchive: two.fromArchive,
      startAlone: true,
    });
    await operator.checks.run();
    expect(two.calls.n).toBe(1);
    expect(started.held.size).toBe(0); // the peers are not asked
    expect(operator.audits).toEqual([
      expect.objectContaining({ kind: "start-alone", archive: expect.objectContaining({ records: 1 }) }),
    ]);
    // Without peers, an archive it cannot read refuses the start too.
    const lost = memoryStore();
    const refused = checksOf([], none, lost.store, 300, undefined, {
      fromArchive: archive(Infinity).fromArchive,
    });
    await expect(refused.checks.run()).rejects.toThrow("could not restore its S3 archive");
    expect(lost.meta.get("bootstrap")).toBeUndefined();
  });

  it("a restore longer than the bootstrap wait leaves the peers a whole wait of their own (a copy retried after it is not refused at once)", async () => {
    const links = [peer("r1", 3, true)]; // its first copy fails
    const { store, held } = memoryStore();
    const slow = archive(0);
    const fromArchive = async () => {
      await new Promise((resolve) => setTimeout(resolve, 400));
      return slow.fromArchive();
    };
    const { checks } = checksOf(links, async () => new Map([["r1", view("r1", 3)]]), store, 300, undefined, {
      fromArchive,
    });
    await checks.run();
    expect(held.has("t/k3")).toBe(true);
  });
  it("its own stream cut short in the archive (a hole, a damaged object) is refused once the peers' copy leaves LSNs the archive says it wrote missing, unless the operator accepts their loss (audited); another region's cut is left to the peers", async () => {
    const links = [peer("r1", 3, false)]; // r1 holds r0's older stream through LSN 3
    const views = async () => new Map([["r1", view("r1", 3)]]);
    const cutOf = (origin: string, archivedLsn = 5) => ({
      origin,
      incarnation: older,
      lsn: 1,
      archivedLsn,
      why: "archived x refused: bad seal",
    });
    const seeding = (cut: ReturnType<typeof cutOf>) => {
      const calls = { n: 0 };
      const fromArchive = async (): Promise<ArchiveSeed> => {
        calls.n++;
        return { passedOver: [], records: 1, objects: 1, streams: [], newestMs: {}, cut: [cut] };
      };
      return { calls, fromArchive };
    };
    const own = seeding(cutOf("r0"));
    const down = memoryStore();
    const refused = checksOf(links, views, down.store, 20_000, undefined, { fromArchive: own.fromArchive });
    await expect(refused.checks.run()).rejects.toThrow(
      /its own stream only in part; neither the archive nor the peers that answered hold r0\/a+ LSNs 4\.\.5, .*--accept-wal-loss/,
    );
    expect(own.calls.n).toBe(1); // not asked again: the archive holds what it holds
    expect(refused.audits).toEqual([]);
    expect(down.meta.get("bootstrap")).toBeUndefined();
    expect(down.marks.get(`r0/${older}`)).toBe(3); // where the peers' copy left it
    // The same cut, noted by that start (or by crr bootstrap --from s3): a start without the
    // archive configured refuses as well.
    const again = checksOf(links, views, down.store, 20_000);
    await expect(again.checks.run()).rejects.toThrow("r0/" + older + " LSNs 4..5");
    // The peers hold everything the archive says was written: no loss.
    const wholeStore = memoryStore();
    const whole = checksOf(links, views, wholeStore.store, 20_000, undefined, {
      fromArchive: seeding(cutOf("r0", 3)).fromArchive,
    });
    await whole.checks.run();
    expect(whole.audits).toEqual([
      expect.objectContaining({
        kind: "bootstrap",
        archive: expect.objectContaining({ cut: [cutOf("r0", 3)] }),
      }),
    ]);
    expect(whole.audits[0]!.lost).toBeUndefined();
    expect(wholeStore.meta.get("bootstrap_archive_cut")).toBe("[]"); // forgotten once done
    const acceptedStore = memoryStore();
    const accepted = checksOf(links, views, acceptedStore.store, 20_000, undefined, {
      fromArchive: seeding(cutOf("r0")).fromArchive,
      acceptWalLoss: true,
    });
    await accepted.checks.run();
    expect(accepted.audits).toEqual([
      expect.objectContaining({
        kind: "bootstrap",
        archive: expect.objectContaining({ cut: [cutOf("r0")] }),
        lost: [{ origin: "r0", incarnation: older, lsns: 2, ranges: [[4, 5]] }],
      }),
    ]);
    // Held or declared lost through the archive's last LSN: the watermark goes there, so the
    // shippers ship what is held past the cut and skip the rest as lost (found by review).
    expect(acceptedStore.marks.get(`r0/${older}`)).toBe(5);
    const other = checksOf(links, views, memoryStore().store, 20_000, undefined, {
      fromArchive: seeding(cutOf("r1")).fromArchive,
    });
    await other.checks.run();
    expect(other.audits).toEqual([
      expect.objectContaining({
        kind: "bootstrap",
        archive: expect.objectContaining({ cut: [cutOf("r1")] }),
      }),
    ]);
    // Without peers nothing fills it.
    const alone = checksOf([], async () => new Map(), memoryStore().store, 20_000, undefined, {
      fromArchive: seeding(cutOf("r0")).fromArchive,
    });
    await expect(alone.checks.run()).rejects.toThrow("LSNs 2..5");
    const aloneAccepted = memoryStore();
    await checksOf([], async () => new Map(), aloneAccepted.store, 20_000, undefined, {
      fromArchive: seeding(cutOf("r0")).fromArchive,
      acceptWalLoss: true,
    }).checks.run();
    expect(aloneAccepted.marks.get(`r0/${older}`)).toBe(5);
  });

  it("a peer whose watermark passes LSNs it does not hold (a policy that kept a tenant from it) does not fill its own cut stream: the records themselves are counted", async () => {
    const cut = {
      origin: "r0",
      incarnation: older,
      lsn: 0,
      archivedLsn: 3,
      why: "the archive holds no object with LSNs 1..2",
    };
    const fromArchive = async (): Promise<ArchiveSeed> => ({
      ...{ passedOver: [], records: 0, objects: 0, streams: [], newestMs: {} },
      cut: [cut],
    });
    const skipping = {
      ...peer("r1", 3, false),
      streamRecords: async (q: StreamQuery) => ({
        versions: [1, 3].map(version).filter((v) => v.lsn >= q.fromLsn && v.lsn <= q.toLsn),
        next: undefined,
      }),
    } as unknown as PeerLink;
    const { store, held } = memoryStore();
    const { checks } = checksOf(
      [skipping],
      async () => new Map([["r1", view("r1", 3)]]),
      store,
      20_000,
      undefined,
      {
        fromArchive,
      },
    );
    await expect(checks.run()).rejects.toThrow(/r0\/a+ LSNs 2, /);
    expect(held.has("t/k3")).toBe(true); // what r1 holds was copied; LSN 2 it never had
  });
});
