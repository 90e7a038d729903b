/**
 * `crr verify`'s check of the streams a store holds against its peers' copies: a copy of
 * another region's record deleted by hand, whose key another version won since, is in no
 * winner digest of that region, and only this check finds it (simulator seeds 314, 454).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { PeerLink, StreamQuery } from "../link/index.js";
import { silentLogger } from "../log.js";
import { SqliteStore, type StoredRecord } from "../store/index.js";
import type { Region } from "./region.js";
import { restoreStreamsFromPeers } from "./repair.js";
import { realRuntime } from "../runtime/index.js";
import {
  askPeers,
  holeWindows,
  missingRanges,
  splitByWinner,
  streamCheckLsns,
  toRanges,
} from "./stream-check.js";

const eu = "eu-west-1";
const ap = "ap-south-1";
const euInc = "e".repeat(32);
const apInc = "a".repeat(32);
const ownInc = "u".repeat(32);

describe("missingRanges", () => {
  it("gives the LSNs a window lacks as ranges", () => {
    expect(missingRanges(1, 10, new Set([1, 2, 5, 6, 10]))).toEqual([
      { from: 3, to: 4 },
      { from: 7, to: 9 },
    ]);
    expect(missingRanges(3, 4, new Set([3, 4]))).toEqual([]);
    expect(toRanges([8])).toEqual([{ from: 8, to: 8 }]);
  });

  it("asks for interleaved holes (a selective policy's) one window at a time, not one request per hole", () => {
    // Every other LSN missing (a selective policy's), over two windows' worth of LSNs.
    const odd = toRanges(Array.from({ length: streamCheckLsns }, (_, i) => 2 * i + 1));
    const windows = holeWindows(odd);
    expect(windows.map((w) => w.window)).toEqual([
      { from: 1, to: streamCheckLsns - 1 },
      { from: streamCheckLsns + 1, to: 2 * streamCheckLsns - 1 },
    ]);
    expect(windows.map((w) => w.lsns.length)).toEqual([streamCheckLsns / 2, streamCheckLsns / 2]);
    expect(windows[0]!.lsns.slice(0, 3)).toEqual([1, 3, 5]);
    expect(holeWindows([])).toEqual([]);
  });
});

const version = (
  origin: string,
  incarnation: string,
  lsn: number,
  key: string,
  wallMs: number,
  tenant = "t",
) => ({
  key,
  tenant,
  outcome: `${origin}-${lsn}`,
  bodyJson: undefined,
  origin,
  incarnation,
  lsn,
  hlc: { wallMs, logical: 0 },
  flags: 0,
});

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function openStore(): SqliteStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-stream-check-"));
  dirs.push(dir);
  const s = new SqliteStore({ path: path.join(dir, "store.sqlite"), rule: { kind: "first-write-wins" } });
  stores.push(s);
  return s;
}

/** A peer answering stream reads from its own store (or failing, or answering a copy changed by hand). */
function peerOf(
  name: string,
  store: SqliteStore,
  o: { fails?: boolean; damaged?: number[]; withholds?: string } = {},
): PeerLink {
  const asked: StreamQuery[] = [];
  return {
    peer: name,
    asked,
    streamRecords: async (q: StreamQuery) => {
      asked.push(q);
      if (o.fails) throw new Error(`${name} is unreachable`);
      const versions = (await store.streamVersions(q.origin, q.incarnation, q.fromLsn, q.toLsn, q.limit)).map(
        (v) => ({ ...v, intact: v.intact && !o.damaged?.includes(v.lsn) }),
      );
      const last = versions[versions.length - 1];
      // A tenant its policy keeps from the asker: named by LSN and tenant, not sent.
      const kept = versions.filter((v) => v.tenant === o.withholds);
      return {
        versions: versions.filter((v) => v.tenant !== o.withholds),
        withheld: kept.map((v) => ({ lsn: v.lsn, tenant: v.tenant })),
        next: versions.length === q.limit && last ? last.lsn + 1 : undefined,
      };
    },
  } as unknown as PeerLink;
}

function regionOf(
  store: SqliteStore,
  links: PeerLink[],
  o: { walFirstLsn?: number; excluded?: string } = {},
) {
  const audited: unknown[] = [];
  const region = {
    name: "us-east-1",
    wal: { incarnation: ownInc, firstLsn: o.walFirstLsn ?? 1 },
    store,
    links: new Map(links.map((l) => [l.peer, l])),
    policy: { accepts: (_origin: string, tenant: string) => tenant !== o.excluded },
    log: silentLogger(),
    runtime: realRuntime,
    auditPump: { record: async (e: unknown) => void audited.push(e), pump: async () => undefined },
  } as unknown as Region;
  return { region, audited };
}

async function apply(
  store: SqliteStore,
  origin: string,
  incarnation: string,
  records: ReturnType<typeof version>[],
) {
  await store.applyBatch({
    origin,
    incarnation,
    firstLsn: records[0]!.lsn,
    lastLsn: records[records.length - 1]!.lsn,
    records,
  });
}

function deleteByHand(store: SqliteStore, key: string): void {
  const db = new Database(store.file);
  db.prepare("DELETE FROM records WHERE key = ?").run(key);
  db.close();
}

const ids = (vs: StoredRecord[]) => vs.map((v) => `${v.origin}/${v.lsn}/${v.key}`);

describe("restoreStreamsFromPeers (crr verify)", () => {
  const euStream = [
    version(eu, euInc, 1, "a", 1000),
    version(eu, euInc, 2, "b", 2000),
    version(eu, euInc, 3, "c", 3000),
  ];

  it("puts back a hand-deleted copy of a peer's record that another version beat since (simulator seed 314)", async () => {
    const here = openStore();
    const origin = openStore();
    await apply(here, eu, euInc, euStream);
    await apply(origin, eu, euInc, euStream);
    deleteByHand(here, "b");
    // An older version of "b" arrives and wins (first write wins); eu's copy would have lost to it.
    await apply(here, ap, apInc, [version(ap, apInc, 1, "b", 500)]);
    await apply(origin, ap, apInc, [version(ap, apInc, 1, "b", 500)]);
    const { region, audited } = regionOf(here, [peerOf(eu, origin)]);
    expect(await restoreStreamsFromPeers(region)).toEqual({ restored: 1, changed: [], failed: [] });
    // The winner is unchanged; eu's version is kept as its loser, as in the origin's store.
    expect(await here.get("b")).toMatchObject({ origin: ap, lsn: 1 });
    expect(ids((await here.conflicts()).map((c) => c.loser))).toEqual([`${eu}/2/b`]);
    expect(ids(await here.streamVersions(eu, euInc, 1, 3, 10))).toEqual([
      `${eu}/1/a`,
      `${eu}/2/b`,
      `${eu}/3/c`,
    ]);
    expect(audited).toHaveLength(0); // no winner changed: the conflict is what the audit pump records
    // Nothing missing now: nothing written again.
    expect(await restoreStreamsFromPeers(region)).toEqual({ restored: 0, changed: [], failed: [] });
    expect(await here.conflicts()).toHaveLength(1);
  });

  it("puts back a peer's record whose loser row here was edited by hand (its LSN was held, but not intact), over the same row", async () => {
    const here = openStore();
    const origin = openStore();
    // ap's older version of "b" wins everywhere; eu's copy is a conflict loser in both stores.
    for (const s of [here, origin]) {
      await apply(s, ap, apInc, [version(ap, apInc, 1, "b", 500)]);
      await apply(s, eu, euInc, euStream);
    }
    const db = new Database(here.file);
    db.prepare("UPDATE conflicts SET outcome = 'edited by hand' WHERE key = 'b'").run();
    db.close();
    const [loserRow] = await here.conflicts();
    expect((await here.streamVersions(eu, euInc, 2, 2, 1))[0]).toMatchObject({ intact: false });
    const { region } = regionOf(here, [peerOf(eu, origin)]);
    expect(await restoreStreamsFromPeers(region)).toEqual({ restored: 1, changed: [], failed: [] });
    // The loser is the origin's version again, intact, in the same row; the winner is unchanged.
    expect((await here.streamVersions(eu, euInc, 2, 2, 1))[0]).toMatchObject({
      key: "b",
      outcome: `${eu}-2`,
      intact: true,
    });
    expect((await here.conflicts()).map((c) => c.id)).toEqual([loserRow!.id]);
    expect(await here.get("b")).toMatchObject({ origin: ap, lsn: 1 });
    expect(await restoreStreamsFromPeers(region)).toEqual({ restored: 0, changed: [], failed: [] });
  });

  it("asks for a winner edited here too, and leaves it to the divergence check (nothing written over it)", async () => {
    const here = openStore();
    const origin = openStore();
    await apply(here, eu, euInc, euStream);
    await apply(origin, eu, euInc, euStream);
    const db = new Database(here.file);
    db.prepare("UPDATE records SET outcome = 'edited by hand' WHERE key = 'c'").run();
    db.close();
    const link = peerOf(eu, origin);
    const { region } = regionOf(here, [link]);
    expect(await restoreStreamsFromPeers(region)).toEqual({ restored: 0, changed: [], failed: [] });
    expect((link as unknown as { asked: StreamQuery[] }).asked).toMatchObject([{ fromLsn: 3, toLsn: 3 }]);
    expect(await here.get("c")).toMatchObject({ outcome: "edited by hand" });
  });

  it("leaves a missing version that would win its key here to the divergence check", async () => {
    const here = openStore();
    const origin = openStore();
    await apply(here, eu, euInc, euStream);
    await apply(origin, eu, euInc, euStream);
    deleteByHand(here, "b");
    deleteByHand(here, "c");
    // A later version of "b" arrives: with nothing left for "b" here, it became the winner.
    await apply(here, ap, apInc, [version(ap, apInc, 1, "b", 5000)]);
    const { region } = regionOf(here, [peerOf(eu, origin)]);
    expect(await restoreStreamsFromPeers(region)).toEqual({ restored: 0, changed: [], failed: [] });
    expect(await here.get("b")).toMatchObject({ origin: ap });
    expect(await here.get("c")).toBeUndefined();
    expect(await here.conflicts()).toHaveLength(0);
  });

  it("asks the origin first, takes only intact copies, and goes on past a peer that fails", async () => {
    const here = openStore();
    const origin = openStore();
    const other = openStore();
    for (const s of [here, origin, other]) await apply(s, eu, euInc, euStream);
    deleteByHand(here, "b");
    deleteByHand(here, "c");
    // Older versions of both arrive and win here (eu's copies would have lost to them).
    const older = [version(ap, apInc, 1, "b", 500), version(ap, apInc, 2, "c", 600)];
    await apply(here, ap, apInc, older);
    const down = peerOf("aa-down-1", other, { fails: true });
    const euLink = peerOf(eu, origin, { damaged: [2] });
    const otherLink = peerOf("ca-central-1", other);
    const { region } = regionOf(here, [down, otherLink, euLink]);
    const r = await restoreStreamsFromPeers(region);
    expect(r.restored).toBe(2);
    expect(r.failed).toEqual([{ peer: "aa-down-1", error: "stream check: aa-down-1 is unreachable" }]);
    const asked = (l: PeerLink) => (l as unknown as { asked: StreamQuery[] }).asked;
    // The origin was asked for both; its copy of LSN 2 was changed by hand, so the next peer gave it.
    expect(asked(euLink).map((q) => [q.fromLsn, q.toLsn])).toEqual([[2, 3]]);
    expect(asked(otherLink).map((q) => [q.fromLsn, q.toLsn])).toEqual([[2, 2]]);
    expect(asked(down)).toHaveLength(1);
    expect(ids(await here.streamVersions(eu, euInc, 1, 3, 10))).toEqual([
      `${eu}/1/a`,
      `${eu}/2/b`,
      `${eu}/3/c`,
    ]);
  });

  it("leaves out what the policy does not send here, and the own stream the WAL still holds", async () => {
    const here = openStore();
    const origin = openStore();
    const stream = [version(eu, euInc, 1, "a", 1000), version(eu, euInc, 2, "x", 2000, "excluded")];
    await apply(origin, eu, euInc, stream);
    await here.applyBatch({ origin: eu, incarnation: euInc, firstLsn: 1, lastLsn: 2, records: [stream[0]!] });
    const own = [1, 2, 3].map((l) => version("us-east-1", ownInc, l, `own${l}`, 100 * l));
    await here.applyLocal({
      origin: "us-east-1",
      incarnation: ownInc,
      firstLsn: 1,
      lastLsn: 3,
      records: own,
    });
    await origin.applyBatch({
      origin: "us-east-1",
      incarnation: ownInc,
      firstLsn: 1,
      lastLsn: 3,
      records: own,
    });
    deleteByHand(here, "own1");
    deleteByHand(here, "own3");
    await apply(here, ap, apInc, [version(ap, apInc, 1, "own1", 50), version(ap, apInc, 2, "own3", 60)]);
    const euLink = peerOf(eu, origin);
    // The WAL starts at LSN 3: LSN 1 is only in the peers now, LSN 3 is restoreOwnFromWal's.
    const { region } = regionOf(here, [euLink], { walFirstLsn: 3, excluded: "excluded" });
    expect(await restoreStreamsFromPeers(region)).toMatchObject({ restored: 1 });
    expect(await here.get("x")).toBeUndefined();
    expect(ids((await here.conflicts()).map((c) => c.loser))).toEqual([`us-east-1/1/own1`]);
  });

  it("takes an LSN a peer withheld (a tenant kept from this region by both policies) as answered; one this region takes stays unanswered", async () => {
    const here = openStore();
    const origin = openStore();
    const stream = [
      version(eu, euInc, 1, "a", 1000),
      version(eu, euInc, 2, "x", 2000, "excluded"),
      version(eu, euInc, 3, "y", 3000, "taken-here"),
    ];
    await apply(origin, eu, euInc, stream);
    await here.applyBatch({ origin: eu, incarnation: euInc, firstLsn: 1, lastLsn: 3, records: [stream[0]!] });
    const holes = [{ origin: eu, incarnation: euInc, holes: [{ from: 2, to: 3 }] }];
    const check = (withholds: string) => ({
      self: "us-east-1",
      incarnation: ownInc,
      walFirstLsn: 1,
      store: here,
      rule: { kind: "first-write-wins" } as const,
      yieldTurn: async () => undefined,
      links: new Map([[eu, peerOf(eu, origin, { withholds })]]),
      accepts: (_o: string, tenant: string) => tenant !== "excluded",
    });
    const agreed = await askPeers(check("excluded"), holes);
    expect(agreed.found.map((v) => v.key)).toEqual(["y"]);
    expect(agreed.unanswered.size).toBe(0);
    const differ = await askPeers(check("taken-here"), holes);
    expect(differ.found).toEqual([]);
    expect([...differ.unanswered]).toEqual([[`${eu}/${euInc}`, 1]]);
  });
});

describe("splitByWinner", () => {
  it("tells a version that loses here, this store's own winner (its copy changed by hand), and one that would win", async () => {
    const here = openStore();
    const winner = version(eu, euInc, 1, "k", 2000);
    await apply(here, eu, euInc, [winner]);
    const loser = version(ap, apInc, 1, "k", 3000); // later: loses under first-write-wins
    const earlier = version(ap, apInc, 2, "k", 1000); // earlier: would win
    const split = await splitByWinner({ store: here, rule: { kind: "first-write-wins" } }, [
      loser,
      winner,
      earlier,
    ]);
    expect(ids(split.losers)).toEqual([ids([loser])[0]]);
    expect(ids(split.changedHere)).toEqual([ids([winner])[0]]);
    expect(ids(split.left)).toEqual([ids([earlier])[0]]);
  });
});
