import { describe, expect, it } from "vitest";
import type { PeerLink, StreamQuery, WatermarksView } from "../link/index.js";
import type { StoredRecord } from "../store/index.js";
import { copyHolesFromWal, copyStream, copyWinners, type CopyStore } from "./copy.js";

const incarnation = "e".repeat(32);

function version(lsn: number, intact = true): StoredRecord & { intact: boolean } {
  return {
    key: `k${lsn}`,
    tenant: lsn % 3 === 0 ? "other" : "t",
    outcome: "accepted",
    bodyJson: undefined,
    origin: "eu-west-1",
    incarnation,
    lsn,
    hlc: { wallMs: 1_000 + lsn, logical: 0 },
    intact,
  };
}

/**
 * A peer holding `versions`, answering pages of at most `pageMax` whatever the caller's limit;
 * those of a tenant in `withholds` it names as withheld (its policy keeps them from the asker).
 */
function peerHolding(
  versions: Array<StoredRecord & { intact: boolean }>,
  pageMax: number,
  withholds: readonly string[] = [],
) {
  const asked: StreamQuery[] = [];
  const link = {
    streamRecords: async (q: StreamQuery) => {
      asked.push(q);
      const inRange = versions.filter((v) => v.lsn >= q.fromLsn && v.lsn <= q.toLsn);
      const page = inRange.slice(0, Math.min(q.limit, pageMax));
      const more = inRange.length > page.length;
      return {
        versions: page.filter((v) => !withholds.includes(v.tenant)),
        withheld: page
          .filter((v) => withholds.includes(v.tenant))
          .map((v) => ({ lsn: v.lsn, tenant: v.tenant })),
        next: more ? page.at(-1)!.lsn + 1 : undefined,
      };
    },
    walRecords: async (lsns: number[]) => {
      const held = versions.filter((v) => lsns.includes(v.lsn));
      return {
        incarnation,
        records: held.filter((v) => !withholds.includes(v.tenant)),
        withheld: held
          .filter((v) => withholds.includes(v.tenant))
          .map((v) => ({ lsn: v.lsn, tenant: v.tenant })),
      };
    },
  } as unknown as PeerLink;
  return { link, asked };
}

function memoryStore(): CopyStore & { held: Map<string, StoredRecord> } {
  const held = new Map<string, StoredRecord>();
  return {
    held,
    repair: async (vs) => vs.map((v) => (held.set(v.key, v), v.key)),
    getMeta: async () => undefined,
    setMeta: async () => undefined,
    resetWatermark: async () => undefined,
    watermark: async () => 0,
    streamVersions: async (o, i, from, to) =>
      [...held.values()]
        .filter((v) => v.origin === o && v.incarnation === i && v.lsn >= from && v.lsn <= to)
        .map((v) => ({ ...v, intact: true })),
  };
}

/** A peer's watermarks answer: its own current stream `incarnation` held through `lsn`. */
function ownStreamView(region: string, incarnation: string, lsn: number): WatermarksView {
  return {
    region,
    incarnation,
    watermarks: {},
    streams: [{ origin: region, incarnation, lsn, updatedAtMs: 0 }],
    rule: "first-write-wins",
    formatVersion: 1,
    clock: { wallMs: 0, logical: 0 },
    seen: [],
  };
}

describe("copyStream", () => {
  it("follows the peer's cursor through every page, even pages shorter than asked", async () => {
    const versions = Array.from({ length: 25 }, (_, i) => version(i + 1));
    const { link, asked } = peerHolding(versions, 7);
    const store = memoryStore();
    const s = { origin: "eu-west-1", incarnation, fromLsn: 1, toLsn: 25 };
    const r = await copyStream(link, store, s, () => true);
    expect(r).toMatchObject({ copied: 25, coveredThrough: 25, newest: { wallMs: 1_025, logical: 0 } });
    expect(asked.map((q) => q.fromLsn)).toEqual([1, 8, 15, 22]);
  });

  it("a copy that is not intact is not copied, the stream counts as covered only below it, and the rest is still copied", async () => {
    const versions = Array.from({ length: 25 }, (_, i) => version(i + 1, i + 1 !== 10));
    const { link } = peerHolding(versions, 7);
    const store = memoryStore();
    const s = { origin: "eu-west-1", incarnation, fromLsn: 1, toLsn: 25 };
    const r = await copyStream(link, store, s, () => true);
    expect(r.coveredThrough).toBe(9);
    expect(store.held.has("k10")).toBe(false);
    expect([...store.held.keys()]).toHaveLength(24);
  });

  it("copies only what `keep` accepts, and counts a stream without records as covered", async () => {
    const versions = Array.from({ length: 9 }, (_, i) => version(i + 1));
    const store = memoryStore();
    const s = { origin: "eu-west-1", incarnation, fromLsn: 1, toLsn: 9 };
    const r = await copyStream(peerHolding(versions, 100).link, store, s, (v) => v.tenant === "t");
    expect([...store.held.keys()]).toEqual(["k1", "k2", "k4", "k5", "k7", "k8"]);
    expect(r.coveredThrough).toBe(9);
    const empty = await copyStream(peerHolding([], 100).link, memoryStore(), s, () => true);
    expect(empty).toMatchObject({ copied: 0, coveredThrough: 9, newest: undefined });
  });

  it("from the stream's origin (complete), an LSN it lacks is a lost record: covered only below the first hole", async () => {
    const versions = Array.from({ length: 20 }, (_, i) => version(i + 1)).filter(
      (v) => v.lsn !== 8 && v.lsn !== 15,
    );
    const s = { origin: "eu-west-1", incarnation, fromLsn: 1, toLsn: 20 };
    const complete = await copyStream(peerHolding(versions, 6).link, memoryStore(), s, () => true, true);
    expect(complete).toMatchObject({ copied: 18, coveredThrough: 7 });
    // A hole at the end counts too; without `complete`, holes are tenants the peer was never sent.
    const tail = versions.filter((v) => v.lsn <= 12);
    expect(
      (await copyStream(peerHolding(tail, 6).link, memoryStore(), s, () => true, true)).coveredThrough,
    ).toBe(7);
    const endHole = Array.from({ length: 5 }, (_, i) => version(i + 1));
    expect(
      (await copyStream(peerHolding(endHole, 6).link, memoryStore(), s, () => true, true)).coveredThrough,
    ).toBe(5);
    expect(
      (await copyStream(peerHolding(versions, 6).link, memoryStore(), s, () => true)).coveredThrough,
    ).toBe(20);
  });
});

describe("LSNs a peer withheld (a tenant its policy keeps from this region)", () => {
  // Every third LSN is tenant "other", which the peer withholds.
  const versions = Array.from({ length: 20 }, (_, i) => version(i + 1));
  const s = { origin: "eu-west-1", incarnation, fromLsn: 1, toLsn: 20 };
  const takesT = (v: { tenant: string }) => v.tenant === "t";

  it("count as held when this region does not take their tenant either: the whole stream is covered", async () => {
    const { link } = peerHolding(versions, 7, ["other"]);
    const store = memoryStore();
    const r = await copyStream(link, store, s, takesT, true);
    expect(r).toMatchObject({ copied: 14, coveredThrough: 20, holes: [] });
    expect([...store.held.values()].every((v) => v.tenant === "t")).toBe(true);
  });

  it.each([true, false])(
    "when this region takes their tenant (the two policies differ): covered only below the first, complete %s, and not holes to ask the WAL for",
    async (complete) => {
      const { link } = peerHolding(versions, 7, ["other"]);
      const r = await copyStream(link, memoryStore(), s, () => true, complete);
      expect(r).toMatchObject({ coveredThrough: 2, holes: [], copied: 14 });
    },
  );

  it("from export pages: a tenant left out that this region takes fails the copy (asked again), one it does not take is fine", async () => {
    const page = { versions: [version(1)], withheldTenants: ["other"], next: undefined };
    const link = { peer: "eu-west-1", exportPage: async () => page } as unknown as PeerLink;
    const keepAll = () => true;
    const store = memoryStore();
    await expect(
      copyWinners(link, store, keepAll, undefined, "us-east-1", (t) => t === "other"),
    ).rejects.toThrow(
      "peer eu-west-1 withholds tenant(s) other that this region's policy takes: the two regions' policies differ",
    );
    expect(store.held.size).toBe(0);
    const r = await copyWinners(link, store, keepAll, undefined, "us-east-1", (t) => t === "t");
    expect(r.copied).toBe(1);
  });

  it("from the origin's WAL: given when not taken here, unfilled when taken", async () => {
    const { link } = peerHolding(versions, 7, ["other"]);
    const holes = [{ from: 1, to: 20 }];
    const notTaken = await copyHolesFromWal(link, memoryStore(), incarnation, holes, takesT);
    expect(notTaken).toMatchObject({ copied: 14, firstUnfilled: undefined });
    const taken = await copyHolesFromWal(link, memoryStore(), incarnation, holes, () => true);
    expect(taken).toMatchObject({ copied: 14, firstUnfilled: 3 });
  });
});

describe("copyMesh", () => {
  it("copies the winners every peer holds: one held only as a winner, without a stream watermark, by the second peer asked", async () => {
    const { copyMesh } = await import("./copy.js");
    // A record of an incarnation whose region lost its disk: no region has a watermark for
    // that stream; only us-east-1 holds the record (found by the simulator, seed 4).
    const orphan: StoredRecord = {
      ...version(4),
      key: "orphan",
      origin: "ap-south-1",
      incarnation: "a".repeat(32),
    };
    const view = (region: string): WatermarksView => ({
      region,
      incarnation: region[0]!.repeat(32),
      watermarks: {},
      streams: [],
      rule: "first-write-wins",
      formatVersion: 1,
      clock: { wallMs: 0, logical: 0 },
      seen: [],
    });
    const exporting = (versions: StoredRecord[]) =>
      ({ exportPage: async () => ({ versions, next: undefined }) }) as unknown as PeerLink;
    const store = memoryStore();
    await copyMesh({
      region: "eu-west-1",
      views: new Map([
        ["us-west-2", view("us-west-2")],
        ["us-east-1", view("us-east-1")],
      ]),
      links: new Map([
        ["us-west-2", exporting([])],
        ["us-east-1", exporting([orphan])],
      ]),
      store,
      accepts: () => true,
    });
    expect(store.held.get("orphan")).toMatchObject({ origin: "ap-south-1", lsn: 4 });
  });

  it("raises our older incarnation's watermark past an LSN one peer holds damaged when another gave it intact (simulator seed 98)", async () => {
    const { copyMesh } = await import("./copy.js");
    const old = "0".repeat(32);
    const ours = (lsn: number, intact = true) => ({
      ...version(lsn, intact),
      origin: "eu-west-1",
      incarnation: old,
    });
    const view = (region: string): WatermarksView => ({
      region,
      incarnation: region[0]!.repeat(32),
      watermarks: {},
      streams: [{ origin: "eu-west-1", incarnation: old, lsn: 5, updatedAtMs: 0 }],
      rule: "first-write-wins",
      formatVersion: 1,
      clock: { wallMs: 0, logical: 0 },
      seen: [],
    });
    const holding = (versions: Array<StoredRecord & { intact: boolean }>) =>
      ({
        ...peerHolding(versions, 100).link,
        exportPage: async () => ({ versions: [], next: undefined }),
      }) as unknown as PeerLink;
    const copyWith = async (peers: Array<[string, Array<StoredRecord & { intact: boolean }>]>) => {
      const store = memoryStore();
      const marks = new Map<string, number>();
      store.resetWatermark = async (origin, incarnation, lsn) =>
        void marks.set(`${origin}/${incarnation}`, lsn);
      await copyMesh({
        region: "eu-west-1",
        views: new Map(peers.map(([p]) => [p, view(p)])),
        links: new Map(peers.map(([p, vs]) => [p, holding(vs)])),
        store,
        accepts: () => true,
      });
      return marks.get(`eu-west-1/${old}`);
    };
    const edited = [1, 2, 3, 4, 5].map((l) => ours(l, l !== 3)); // LSN 3 changed by hand there
    const whole = [1, 2, 3, 4, 5].map((l) => ours(l));
    expect(
      await copyWith([
        ["us-east-1", edited],
        ["us-west-2", whole],
      ]),
    ).toBe(5);
    expect(await copyWith([["us-east-1", edited]])).toBe(2); // nobody gave LSN 3 intact: below it
  });

  it("asks every peer for our older incarnation up to the furthest watermark, also one whose own watermark is below what it holds (simulator seed 298)", async () => {
    const { copyMesh } = await import("./copy.js");
    const old = "0".repeat(32);
    const ours = (lsn: number) => ({ ...version(lsn), origin: "eu-west-1", incarnation: old });
    const view = (region: string, lsn: number | undefined): WatermarksView => ({
      ...ownStreamView(region, region[0]!.repeat(32), 1),
      streams: lsn === undefined ? [] : [{ origin: "eu-west-1", incarnation: old, lsn, updatedAtMs: 0 }],
    });
    const holding = (versions: Array<StoredRecord & { intact: boolean }>) =>
      ({
        ...peerHolding(versions, 100).link,
        exportPage: async () => ({ versions: [], next: undefined }),
      }) as unknown as PeerLink;
    const store = memoryStore();
    await copyMesh({
      region: "eu-west-1",
      views: new Map([
        ["us-east-1", view("us-east-1", 5)],
        // Holds LSN 3 (a conflict loser, say) with no watermark for the stream at all.
        ["us-west-2", view("us-west-2", undefined)],
      ]),
      links: new Map([
        ["us-east-1", holding([1, 2, 4, 5].map(ours))],
        ["us-west-2", holding([ours(3)])],
      ]),
      store,
      accepts: () => true,
    });
    expect([...store.held.values()].map((v) => v.lsn).sort()).toEqual([1, 2, 3, 4, 5]);
  });

  it("takes the records a peer's own current stream lacks in its store from its WAL (simulator seed 106)", async () => {
    const { copyMesh } = await import("./copy.js");
    // us-east-1's operator deleted LSN 3 from its store by hand; its WAL still holds LSNs 2..6
    // (retention removed 1). A copy of the store alone would lose LSN 3 everywhere.
    const current = "u".repeat(32);
    const theirs = (lsn: number) => ({ ...version(lsn), origin: "us-east-1", incarnation: current });
    const view = ownStreamView("us-east-1", current, 6);
    const asked: number[][] = [];
    const link = (walIncarnation: string) =>
      ({
        ...peerHolding([1, 2, 4, 5].map(theirs), 100).link,
        exportPage: async () => ({ versions: [], next: undefined }),
        walRecords: async (lsns: number[]) => {
          asked.push(lsns);
          const held = lsns.filter((l) => l >= 2).map(theirs);
          return { incarnation: walIncarnation, records: held.map(({ intact: _i, ...v }) => v) };
        },
      }) as unknown as PeerLink;
    let watermark = -1;
    const copy = async (walIncarnation: string, accepts = () => true) => {
      const store = memoryStore();
      store.resetWatermark = async (_o, _i, lsn) => void (watermark = lsn);
      await copyMesh({
        region: "eu-west-1",
        views: new Map([["us-east-1", view]]),
        links: new Map([["us-east-1", link(walIncarnation)]]),
        store,
        accepts,
      });
      return [...store.held.values()].map((v) => v.lsn).sort((a, b) => a - b);
    };
    expect(await copy(current)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(watermark).toBe(6);
    // Only the holes are asked for (LSN 6 is past the last record the store returned).
    expect(asked).toEqual([[3], [6]]);
    // A WAL that now speaks for another incarnation is no evidence for this stream: the
    // stream counts as covered only below the first hole, and its origin ships the rest.
    expect(await copy("n".repeat(32))).toEqual([1, 2, 4, 5]);
    expect(watermark).toBe(2);
    // The policy still decides what this region may hold (a record not kept is no hole).
    expect(await copy(current, () => false)).toEqual([]);
    expect(watermark).toBe(6);
  });

  it("counts a peer's current stream as covered only below a hole neither its store nor its WAL fills (simulator seed 631)", async () => {
    const { copyMesh } = await import("./copy.js");
    // us-east-1 answered with its watermark 6 before it lost its store; now its store holds
    // nothing of its stream and its WAL (retention) only LSNs 4..6.
    const current = "u".repeat(32);
    const theirs = (lsn: number) => {
      const { intact: _i, ...v } = version(lsn);
      return { ...v, origin: "us-east-1", incarnation: current };
    };
    const view = ownStreamView("us-east-1", current, 6);
    const link = {
      ...peerHolding([], 100).link,
      exportPage: async () => ({ versions: [], next: undefined }),
      walRecords: async (lsns: number[]) => ({
        incarnation: current,
        records: lsns.filter((l) => l >= 4).map(theirs),
      }),
    } as unknown as PeerLink;
    const store = memoryStore();
    const marks: number[] = [];
    store.resetWatermark = async (_o, _i, lsn) => void marks.push(lsn);
    await copyMesh({
      region: "eu-west-1",
      views: new Map([["us-east-1", view]]),
      links: new Map([["us-east-1", link]]),
      store,
      accepts: () => true,
    });
    expect([...store.held.values()].map((v) => v.lsn).sort((a, b) => a - b)).toEqual([4, 5, 6]);
    // Nothing raised past the hole at 1: us-east-1 ships 1.. itself once it has them back.
    expect(marks.every((m) => m < 1)).toBe(true);
  });
});
