/**
 * The shipper against the real reader and store of a peer, in one process (the transport is
 * the only fake): skips that must never cover records the origin holds, widened policies,
 * older incarnations with holes, and a peer restored from a backup. Each case is one an
 * outside review showed losing records or stopping replication for good; the records the
 * origin holds are the ledger every assertion is checked against.
 */
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WalClosedError } from "../../src/errors.js";
import type { PeerShipper } from "../../src/shipper/index.js";
import { encodeFrames, type WalRecord } from "../../src/wal/index.js";
import { BATCH_FLAG_BACKFILL } from "../../src/protocol/index.js";
import type { ReplicateAnswer } from "../../src/link/index.js";
import {
  ReaderPeer,
  TestWal,
  current,
  openStore,
  origin,
  ownRecords,
  record,
  testShipper,
} from "../support/shipper-peer.js";
import { logged } from "../support/logged.js";
import { tempDir, waitFor } from "../support/tmp.js";

const running: PeerShipper[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop();
});

function start(o: Parameters<typeof testShipper>[0]) {
  const made = testShipper(o);
  running.push(made.shipper);
  made.shipper.start();
  return made;
}

async function stop(s: PeerShipper): Promise<void> {
  running.splice(running.indexOf(s), 1);
  await s.stop();
}

/** The origin: a store holding `records` of stream `incarnation` (through `lastLsn`), and a WAL of the current one. */
function originWith(dir: string) {
  const file = path.join(dir, "origin.sqlite");
  const store = openStore(file);
  const hold = (incarnation: string, lastLsn: number, records: WalRecord[]) =>
    store.applySync({ origin, incarnation, firstLsn: 1, lastLsn, records });
  return { file, store, hold, wal: new TestWal(), own: ownRecords(store) };
}

/** The peer's store replaced by an empty one. */
async function loseEverything(peer: ReaderPeer): Promise<void> {
  await peer.store.close();
  for (const f of fs.readdirSync(path.dirname(peer.file)))
    if (f.startsWith(path.basename(peer.file))) fs.rmSync(path.join(path.dirname(peer.file), f));
  peer.reopen();
}

const caughtUp = (s: PeerShipper, lsn: number) => () =>
  (s.state === "caught-up" && s.acked === lsn) || undefined;

describe("a peer that restarted (peerRestarted)", () => {
  it("ships again from what it holds, though nothing new is durable; its ack is in doubt until a session read it, however long it cannot be reached", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 10 }, (_, i) => record(i + 1));
    o.wal.add(all);
    const peer = new ReaderPeer();
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    await waitFor(caughtUp(shipper, 10), "caught up");
    // The peer's store is put back from an empty copy, and the new instance is unreachable
    // after it spoke once.
    await loseEverything(peer);
    const answer = peer.watermarks.bind(peer);
    peer.watermarks = () => Promise.reject(new Error("connection refused"));
    shipper.peerRestarted();
    expect(shipper.ackInDoubt).toBe(true);
    await waitFor(() => shipper.state === "failing" || undefined, "the new session failing");
    expect(shipper.ackInDoubt).toBe(true); // acked is still its predecessor's 10
    peer.watermarks = answer;
    await waitFor(caughtUp(shipper, 10), "caught up again");
    expect(shipper.ackInDoubt).toBe(false);
    expect(peer.holds(all)).toEqual(all.map((r) => r.key));
  });
});

describe("a peer that restarted while a session asked what it holds", () => {
  it("keeps the ack in doubt after an answer asked before, until the next session's answer", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    o.wal.add(Array.from({ length: 3 }, (_, i) => record(i + 1)));
    const peer = new ReaderPeer();
    const answer = peer.watermarks.bind(peer);
    const asked: Array<() => void> = [];
    peer.watermarks = () => new Promise((resolve) => asked.push(() => resolve(answer())));
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    await waitFor(() => asked.length === 1 || undefined, "the first session asking");
    shipper.peerRestarted(); // the new instance speaks while the old one's answer is on the way
    asked[0]!();
    await waitFor(() => asked.length === 2 || undefined, "the resync's session asking");
    expect(shipper.ackInDoubt).toBe(true); // the first answer may be the predecessor's
    asked[1]!();
    await waitFor(() => !shipper.ackInDoubt || undefined, "the doubt cleared by the new answer");
  });
});

describe("an operator's skip", () => {
  it("never covers records the origin holds, even behind a pipelined batch that failed", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 30 }, (_, i) => record(i + 1));
    o.hold(
      current,
      30,
      all.filter((r) => r.lsn <= 10 || r.lsn > 20),
    ); // 11..20: held by nobody
    o.wal.add(all);
    o.wal.firstLsn = 21; // retention removed 1..20 from the WAL
    const peer = new ReaderPeer();
    // The first batch (1..10, from the store) is lost after the next one could have been sent behind it.
    peer.before = async (n) => {
      if (n === 1) {
        await new Promise((r) => setTimeout(r, 100));
        throw new Error("connection reset before the peer read the batch");
      }
    };
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json"), inflight: 2 });
    shipper.allowSkip(20); // crr skip-gap --through 20
    await waitFor(caughtUp(shipper, 30), "caught up past the skip");
    const held = all.filter((r) => r.lsn <= 10 || r.lsn > 20);
    expect(peer.holds(all)).toEqual(held.map((r) => r.key));
    expect(peer.skipped).toEqual([{ incarnation: current, from: 11, to: 20 }]);
  });

  it("is not taken without the operator: the shipper fails with the command to run and the peer stays put", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 20 }, (_, i) => record(i + 1));
    o.hold(
      current,
      20,
      all.filter((r) => r.lsn !== 5),
    );
    o.wal.add(all);
    o.wal.firstLsn = 11;
    const peer = new ReaderPeer();
    const { log, lines } = logged();
    const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json"), log });
    await waitFor(
      () => failures.filter((f) => f === "stream_gap").length >= 2 || undefined,
      "the gap reported",
    );
    expect(shipper.state).toBe("failing");
    // An error for the operator, logged once however often the session meets it.
    expect(lines.filter((l) => l.msg.startsWith("shipping to peer is failing"))).toEqual([
      expect.objectContaining({ level: 50, reason: "stream_gap" }),
    ]);
    expect(shipper.lastError).toMatch(/LSNs 5\.\.5 .* crr skip-gap --url .* --peer eu-west-1 --through 5/);
    expect(shipper.acked).toBe(4);
    expect(peer.skipped).toEqual([]);
  });
});

describe("an operator's skip, used", () => {
  it("is spent once the peer passed it: a peer that lost what it had meets the gap again and waits for a new command", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 21 }, (_, i) => record(i + 1));
    const held = all.filter((r) => r.lsn !== 5);
    o.hold(current, 20, held.slice(0, 19));
    o.wal.add(all.slice(0, 20));
    o.wal.firstLsn = 11; // 1..10 only in the store, which lacks 5
    const peer = new ReaderPeer();
    const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    shipper.allowSkip(5); // crr skip-gap --through 5
    await waitFor(caughtUp(shipper, 20), "caught up past the skip");
    expect(peer.skipped).toEqual([{ incarnation: current, from: 5, to: 5 }]);
    expect(failures).not.toContain("stream_gap");
    // The peer loses everything (its store replaced by an empty one); the next batch finds it at 0.
    await loseEverything(peer);
    o.wal.add([all[20]!]);
    await waitFor(() => failures.includes("stream_gap") || undefined, "the gap reported again");
    expect(shipper.acked).toBe(4);
    expect(peer.skipped).toEqual([{ incarnation: current, from: 5, to: 5 }]); // nothing skipped again
    shipper.allowSkip(5);
    await waitFor(caughtUp(shipper, 21), "caught up past the second skip");
    expect(peer.holds(all)).toEqual(held.map((r) => r.key));
  });
});

describe("an operator's skip through the stream's last LSN", () => {
  it("is spent when the peer reaches exactly that LSN: a peer that lost everything meets the gap again", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 5 }, (_, i) => record(i + 1));
    o.hold(current, 5, all.slice(0, 4)); // nobody holds 5, the last LSN
    o.wal.add(all);
    o.wal.firstLsn = 6; // and the WAL holds none of them
    const peer = new ReaderPeer();
    const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    shipper.allowSkip(5);
    await waitFor(caughtUp(shipper, 5), "caught up through the skip");
    expect(peer.skipped).toEqual([{ incarnation: current, from: 5, to: 5 }]);
    await loseEverything(peer);
    o.wal.add([record(6)]); // wakes the session, whose next batch finds the peer at 0
    await waitFor(() => failures.includes("stream_gap") || undefined, "the gap reported again");
    expect(shipper.acked).toBe(4);
    expect(peer.skipped).toHaveLength(1);
  });
});

describe("a widened policy", () => {
  const mixed = () => Array.from({ length: 20 }, (_, i) => record(i + 1, i % 2 === 0 ? "A" : "B"));

  async function shippedSelectively(dir: string) {
    const o = originWith(dir);
    const recs = mixed();
    o.hold(current, 20, recs);
    o.wal.add(recs);
    const peer = new ReaderPeer();
    const stateFile = path.join(dir, "eu.json");
    const first = start({ ...o, peer, stateFile, tenants: ["A"] });
    await waitFor(caughtUp(first.shipper, 20), "selective shipping caught up");
    await stop(first.shipper);
    expect(peer.holds(recs)).toEqual(recs.filter((r) => r.tenant === "A").map((r) => r.key));
    return { o, recs, peer, stateFile };
  }

  it("to every tenant (multi-way) backfills what the selective policy kept from the peer", async () => {
    const { o, recs, peer, stateFile } = await shippedSelectively(tempDir());
    const { shipper } = start({ ...o, peer, stateFile }); // tenants undefined: every record
    await waitFor(() => peer.holds(recs).length === 20 || undefined, "every record at the peer");
    expect(shipper.acked).toBe(20);
  });

  it("keeps shipping new records after the backfill (its answer is not taken for an ack)", async () => {
    const { o, recs, peer, stateFile } = await shippedSelectively(tempDir());
    const { shipper, failures } = start({ ...o, peer, stateFile, tenants: ["A", "B"] });
    const later = [record(21, "A"), record(22, "B")];
    o.wal.add(later);
    await waitFor(caughtUp(shipper, 22), "the new records acknowledged");
    expect(peer.holds([...recs, ...later])).toHaveLength(22);
    expect(failures).not.toContain("ack_beyond_sent");
  });

  it("to a peer bootstrapping under an older policy: backfills once it is done what its copy left out (simulator seed 5)", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const recs = mixed();
    o.hold(current, 20, recs);
    o.wal.add(recs);
    const peer = new ReaderPeer();
    peer.bootstrapping = true;
    // It takes nothing from us while it copies from the other regions.
    peer.before = async () => {
      if (peer.bootstrapping) throw new Error("connection refused: still bootstrapping");
    };
    const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    await waitFor(() => failures.length > 0 || undefined, "a session against the bootstrapping peer");
    // Its bootstrap copies our stream from a region that, by the old policy, held tenant A only.
    peer.store.applySync({
      origin,
      incarnation: current,
      firstLsn: 1,
      lastLsn: 20,
      records: recs.filter((r) => r.tenant === "A"),
    });
    peer.bootstrapping = false;
    await waitFor(() => peer.holds(recs).length === 20 || undefined, "tenant B backfilled too");
    expect(shipper.acked).toBe(20);
  });

  it("reads a record from the WAL when the store's copy was changed outside the engine", async () => {
    const { o, recs, peer, stateFile } = await shippedSelectively(tempDir());
    const raw = new Database(o.file);
    raw.prepare("UPDATE records SET outcome = 'tampered' WHERE key = 'k4'").run(); // LSN 4, tenant B
    raw.close();
    start({ ...o, peer, stateFile, tenants: ["A", "B"] });
    await waitFor(() => peer.holds(recs).length === 20 || undefined, "every record at the peer");
    expect(peer.store.getSync("k4")?.outcome).toBe("accepted");
  });
});

describe("older incarnations", () => {
  const older = "0".repeat(32);
  const olderRecords = (lsns: number[]) => lsns.map((l) => record(l, "t", `old${l}`));

  it("with a hole nobody holds: the current incarnation still ships, the hole is audited on both sides", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const old = olderRecords([1, 2, 4, 5]); // LSN 3 was lost with that disk
    o.hold(older, 5, old);
    const cur = Array.from({ length: 10 }, (_, i) => record(i + 1));
    o.hold(current, 10, cur);
    o.wal.add(cur);
    const peer = new ReaderPeer();
    const lost: Array<[string, Array<[number, number]>]> = [];
    const { shipper } = start({
      ...o,
      peer,
      stateFile: path.join(dir, "eu.json"),
      reportLost: async (inc, ranges) => void lost.push([inc, ranges]),
    });
    await waitFor(caughtUp(shipper, 10), "the current incarnation caught up");
    expect(peer.holds([...old, ...cur])).toHaveLength(14);
    expect(lost).toEqual([[older, [[3, 3]]]]);
    expect(peer.skipped).toEqual([{ incarnation: older, from: 3, to: 3 }]);
    expect(await peer.watermarks()).toMatchObject({
      streams: expect.arrayContaining([expect.objectContaining({ incarnation: older, lsn: 5 })]),
    });
  });

  it("taken by the peer after a failure count as recovered shipping, before the current stream", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const old = olderRecords(Array.from({ length: 20 }, (_, i) => i + 1));
    o.hold(older, 20, old);
    const cur = [record(1)];
    o.hold(current, 1, cur);
    o.wal.add(cur);
    const peer = new ReaderPeer();
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    peer.before = async (n) => {
      if (n === 1) throw new Error("connection reset");
      if (n === 3) await gate; // the second older batch of the next session waits
    };
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    await waitFor(() => peer.batches >= 3 || undefined, "the next session's second older batch sent");
    expect([shipper.state, shipper.lastError]).toEqual(["shipping", undefined]);
    open();
    await waitFor(caughtUp(shipper, 1), "caught up");
    expect(peer.holds([...old, ...cur])).toHaveLength(21);
  });

  it("are shipped again to a peer restored from a backup taken before they reached it", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const old = olderRecords([1, 2, 3, 4, 5]);
    o.hold(older, 5, old);
    const cur = Array.from({ length: 10 }, (_, i) => record(i + 1));
    o.hold(current, 10, cur);
    o.wal.add(cur);
    const peer = new ReaderPeer();
    const backup = path.join(dir, "peer-backup.sqlite");
    await peer.store.close();
    fs.copyFileSync(peer.file, backup); // the peer's backup, before anything of ours reached it
    peer.reopen();
    const stateFile = path.join(dir, "eu.json");
    const first = start({ ...o, peer, stateFile });
    await waitFor(() => peer.holds([...old, ...cur]).length === 15 || undefined, "everything shipped");
    await stop(first.shipper);

    await peer.store.close();
    for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(peer.file + suffix, { force: true });
    fs.copyFileSync(backup, peer.file);
    peer.reopen();
    expect(peer.holds([...old, ...cur])).toEqual([]);

    start({ ...o, peer, stateFile });
    await waitFor(() => peer.holds([...old, ...cur]).length === 15 || undefined, "everything shipped again");
  });
});

describe("the window", () => {
  /** The most batches the peer had received and not yet answered at once, shipping 60 records. */
  async function mostInFlight(inflightBytes?: number): Promise<number> {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 60 }, (_, i) => record(i + 1));
    o.hold(current, 60, all);
    o.wal.add(all);
    const peer = new ReaderPeer();
    let active = 0;
    let most = 0;
    peer.before = async () => {
      most = Math.max(most, ++active);
      await new Promise((r) => setTimeout(r, 20)); // a round trip
      active--;
    };
    const { shipper } = start({
      ...o,
      peer,
      stateFile: path.join(dir, "eu.json"),
      inflight: 8,
      inflightBytes,
    });
    await waitFor(caughtUp(shipper, 60), "caught up");
    expect(peer.holds(all)).toHaveLength(60);
    return most;
  }

  it("keeps several batches in flight, and no more bytes than shipper.inflightBytesMax (one batch always goes)", async () => {
    expect(await mostInFlight()).toBeGreaterThan(1);
    expect(await mostInFlight(1)).toBe(1);
  });

  /**
   * The origin with `n` durable records, and a peer that holds every batch unanswered until
   * `open()`: what the window sends before any answer.
   */
  function heldAnswers(dir: string, n: number) {
    const o = originWith(dir);
    const all = Array.from({ length: n }, (_, i) => record(i + 1));
    o.hold(current, n, all);
    o.wal.add(all);
    const peer = new ReaderPeer();
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let waiting = 0;
    peer.before = async () => {
      waiting++;
      await gate;
    };
    return { o, all, peer, open, waiting: () => waiting };
  }

  it("holds exactly inflightBatchesMax unanswered batches, or what fits in inflightBytesMax", async () => {
    for (const [inflight, inflightBytes, expected] of [
      [3, undefined, 3],
      // The bytes of the first two batches (10 records each): a third does not fit.
      [
        8,
        encodeFrames([...Array(10)].map((_, i) => record(i + 1))).length +
          encodeFrames([...Array(10)].map((_, i) => record(i + 11))).length,
        2,
      ],
    ] as const) {
      const dir = tempDir();
      const h = heldAnswers(dir, 100);
      const { shipper } = start({
        ...h.o,
        peer: h.peer,
        stateFile: path.join(dir, "eu.json"),
        inflight,
        inflightBytes,
      });
      await waitFor(() => h.waiting() >= expected || undefined, `${expected} batches sent`);
      // Nothing more is sent while they are unanswered (a shipper past its window would have by now).
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 50));
      expect(h.waiting()).toBe(expected);
      h.open();
      await waitFor(caughtUp(shipper, 100), "caught up");
      expect(h.peer.holds(h.all)).toHaveLength(100);
    }
  });

  it("sends records that became durable while earlier batches wait for their answers", async () => {
    const dir = tempDir();
    const h = heldAnswers(dir, 5);
    const { shipper } = start({ ...h.o, peer: h.peer, stateFile: path.join(dir, "eu.json"), inflight: 4 });
    await waitFor(() => h.waiting() >= 1 || undefined, "the first batch sent");
    const later = [record(6), record(7)];
    h.o.wal.add(later);
    await waitFor(() => h.waiting() >= 2 || undefined, "the new records sent before the first answer");
    h.open();
    await waitFor(caughtUp(shipper, 7), "caught up");
  });

  it("counts the answers of batches still in flight when an earlier one failed", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 30 }, (_, i) => record(i + 1));
    o.hold(current, 30, all);
    o.wal.add(all);
    const peer = new ReaderPeer();
    const reader = peer.replicate.bind(peer);
    let first = true;
    let released: () => void = () => undefined;
    const laterAnswered = new Promise<void>((r) => (released = r));
    // The first batch lands, but its answer is lost once the two behind it were answered.
    peer.replicate = async (body) => {
      const answer = await reader(body);
      if (ReaderPeer.header(body).firstLsn === 21) released();
      if (!first) return answer;
      first = false;
      await laterAnswered;
      throw new Error("connection reset after the peer applied the batch");
    };
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json"), inflight: 3 });
    const acks: number[] = [];
    shipper.on("ack", (lsn) => acks.push(lsn));
    await waitFor(caughtUp(shipper, 30), "caught up");
    expect(acks).toEqual([20, 30]); // the two later answers, before the next session asks the peer
  });
});

describe("what a session backfills, by what the state file says the peer was sent", () => {
  const other = "d".repeat(32);
  /**
   * The origin holds 20 records of tenants A and B (alternating); the peer holds A's through
   * `peerHolds` and the state file says `state`. Returns the keys the session backfilled once
   * caught up, and the state file then.
   */
  async function backfilled(o: {
    state?: { tenants?: string[] | "*"; acked?: number; incarnation?: string };
    now?: string[];
    peerHolds?: number;
    peerHoldsOthers?: boolean;
  }) {
    const { log, lines } = logged();
    const dir = tempDir();
    const origin_ = originWith(dir);
    const recs = Array.from({ length: 20 }, (_, i) => record(i + 1, i % 2 === 0 ? "A" : "B"));
    origin_.hold(current, 20, recs);
    origin_.wal.add(recs);
    const peer = new ReaderPeer();
    const holds = o.peerHolds ?? 20;
    if (holds > 0)
      peer.store.applySync({
        origin,
        incarnation: current,
        firstLsn: 1,
        lastLsn: holds,
        records: recs.filter((r) => r.tenant === "A" && r.lsn <= holds),
      });
    if (o.peerHoldsOthers)
      peer.store.applySync({
        origin: "ap-south-1",
        incarnation: other,
        firstLsn: 1,
        lastLsn: 1,
        records: [record(1, "A", "x1")],
      });
    const stateFile = path.join(dir, "eu.json");
    if (o.state)
      fs.writeFileSync(
        stateFile,
        JSON.stringify({
          peer: "eu-west-1",
          incarnation: o.state.incarnation ?? current,
          acked: o.state.acked ?? 20,
          tenants: o.state.tenants,
        }),
      );
    const { shipper } = start({ ...origin_, peer, stateFile, tenants: o.now, log });
    await waitFor(caughtUp(shipper, 20), "caught up");
    await stop(shipper);
    const keys = peer.sent.filter((b) => (b.flags & BATCH_FLAG_BACKFILL) !== 0).flatMap((b) => b.keys);
    const state = JSON.parse(fs.readFileSync(stateFile, "utf8")) as { tenants?: unknown };
    // The warning an operator reads: only when there is something to fill in.
    const announced = lines.some((l) => l.msg === "the peer receives tenants it did not before: backfilling");
    const wentBack = lines.find((l) => l.msg === "peer went back; redoing backfills");
    return { keys: keys.sort(), state, recs, announced, wentBack };
  }
  const keysOf = (
    recs: Array<{ key: string; lsn: number; tenant: string }>,
    keep: (r: { lsn: number; tenant: string }) => boolean,
  ) =>
    recs
      .filter(keep)
      .map((r) => r.key)
      .sort();

  /** What a session did: the keys it backfilled, and whether it told the operator so. */
  const did = async (o: Parameters<typeof backfilled>[0]) => {
    const r = await backfilled(o);
    return { keys: r.keys, announced: r.announced, wentBack: r.wentBack !== undefined };
  };
  const nothing = { keys: [], announced: false, wentBack: false };

  it("a tenant added to a selective policy: its records below the peer's watermark, and no other tenant's", async () => {
    const { keys, state, recs, announced } = await backfilled({ state: { tenants: ["A"] }, now: ["B", "A"] });
    expect(keys).toEqual(keysOf(recs, (r) => r.tenant === "B"));
    expect(announced).toBe(true);
    expect(state.tenants).toEqual(["A", "B"]); // sorted, as every later comparison reads it
  });

  it("nothing, and no warning, when the peer was sent every tenant, or is sent fewer now, or the same", async () => {
    expect(await did({ state: { tenants: "*" }, now: ["A", "B"] })).toEqual(nothing);
    expect(await did({ state: { tenants: ["A", "B"] }, now: ["A"] })).toEqual(nothing);
    const same = await backfilled({ state: { tenants: ["A", "B"] }, now: ["A", "B"] });
    expect([same.keys, same.announced]).toEqual([[], false]);
    expect(same.state.tenants).toEqual(["A", "B"]);
    expect((await backfilled({ state: { tenants: "*" } })).state.tenants).toBe("*");
  });

  it("with no state file: every tenant sent, below the watermark of a peer that holds some of ours; nothing to a peer that holds none", async () => {
    const unknown = await backfilled({ now: ["A", "B"] });
    expect(unknown.keys).toEqual(keysOf(unknown.recs, () => true));
    const onlyA = await backfilled({ now: ["A"] });
    expect(onlyA.keys).toEqual(keysOf(onlyA.recs, (r) => r.tenant === "A"));
    // A peer that holds only another region's records has nothing of ours to fill in.
    expect(await did({ now: ["A", "B"], peerHolds: 0, peerHoldsOthers: true })).toEqual(nothing);
  });

  it("a peer that went back below what it acknowledged: every tenant again, below where it is now (logged)", async () => {
    const back = await backfilled({
      state: { tenants: ["A", "B"], acked: 20 },
      now: ["A", "B"],
      peerHolds: 10,
    });
    expect(back.keys).toEqual(keysOf(back.recs, (r) => r.lsn <= 10));
    expect(back.wentBack).toMatchObject({ level: 40, was: 20, now: 10 });
    // At what it acknowledged, or acknowledged for another incarnation of ours: not gone back.
    expect(await did({ state: { tenants: ["A", "B"], acked: 20 }, now: ["A", "B"] })).toEqual(nothing);
    const otherIncarnation = { tenants: ["A", "B"], acked: 20, incarnation: other };
    expect(await did({ state: otherIncarnation, now: ["A", "B"], peerHolds: 10 })).toEqual(nothing);
  });
});

describe("a peer still bootstrapping", () => {
  it("forgets what the peer was sent, and looks again every retryDelayMsMax while it bootstraps", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const recs = Array.from({ length: 10 }, (_, i) => record(i + 1));
    o.hold(current, 10, recs);
    o.wal.add(recs);
    const peer = new ReaderPeer();
    peer.bootstrapping = true;
    const stateFile = path.join(dir, "eu.json");
    fs.writeFileSync(
      stateFile,
      JSON.stringify({ peer: "eu-west-1", incarnation: current, acked: 0, tenants: "*" }),
    );
    const { shipper, failures } = start({ ...o, peer, stateFile });
    await waitFor(caughtUp(shipper, 10), "caught up");
    // Caught up, only the look-again timer starts a session: several, one after the other.
    const sessions = peer.sessions;
    await waitFor(() => peer.sessions >= sessions + 3 || undefined, "three more sessions");
    expect(failures).toEqual([]);
    expect(JSON.parse(fs.readFileSync(stateFile, "utf8"))).not.toHaveProperty("tenants");
    peer.bootstrapping = false;
    await waitFor(
      () => JSON.parse(fs.readFileSync(stateFile, "utf8")).tenants === "*" || undefined,
      "the tenants recorded once it is done",
    );
  });
});

describe("a resync", () => {
  it("of an idle shipper starts a new session at once, without a new record; twice, twice", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const recs = Array.from({ length: 5 }, (_, i) => record(i + 1));
    o.hold(current, 5, recs);
    o.wal.add(recs);
    const peer = new ReaderPeer();
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    await waitFor(caughtUp(shipper, 5), "caught up");
    for (const n of [1, 2]) {
      const sessions = peer.sessions;
      shipper.resync();
      await waitFor(() => peer.sessions > sessions || undefined, `resync ${n}: a new session`);
      await waitFor(caughtUp(shipper, 5), `resync ${n}: caught up again`);
    }
    expect(peer.sent.map((b) => [b.firstLsn, b.lastLsn])).toEqual([[1, 5]]); // nothing sent twice
  });
});

describe("records the WAL no longer holds", () => {
  it("are shipped from the store, and the shipper says so (the region logs it)", async () => {
    const dir = tempDir();
    const o = originWith(dir);
    const all = Array.from({ length: 20 }, (_, i) => record(i + 1));
    o.hold(current, 20, all);
    o.wal.add(all);
    o.wal.firstLsn = 11; // retention removed 1..10
    const peer = new ReaderPeer();
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    const fallbacks: Error[] = [];
    shipper.on("fallback", (err) => fallbacks.push(err));
    await waitFor(caughtUp(shipper, 20), "caught up");
    expect(peer.holds(all)).toHaveLength(20);
    expect(fallbacks.length).toBeGreaterThan(0);
    expect(fallbacks[0]!.message).toMatch(/LSN 1\b/);
  });
});

/** The real peer, with its answer to the `n`th batch (and the batch itself) seen or replaced by `answer`. */
class AnsweringPeer extends ReaderPeer {
  answer:
    | ((
        n: number,
        batch: { firstLsn: number; lastLsn: number; flags: number },
        real: ReplicateAnswer,
      ) => ReplicateAnswer)
    | undefined;

  override async replicate(body: Buffer): Promise<ReplicateAnswer> {
    const real = await super.replicate(body);
    return this.answer ? this.answer(this.batches, ReaderPeer.header(body), real) : real;
  }
}

describe("the answers the shipper checks", () => {
  /** An origin whose WAL and store hold `n` records of the current stream (tenant A, B alternating). */
  function shipping(n: number) {
    const dir = tempDir();
    const o = originWith(dir);
    const recs = Array.from({ length: n }, (_, i) => record(i + 1, i % 2 === 0 ? "A" : "B"));
    o.hold(current, n, recs);
    o.wal.add(recs);
    const peer = new AnsweringPeer();
    peer.before = async () => undefined; // so the peer counts its batches
    return { dir, o, recs, peer };
  }

  it("a WAL closed under a caught-up shipper is a failure it retries with backoff, never a loop that waits for nothing", async () => {
    const { dir, o, peer } = shipping(10);
    const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    await waitFor(caughtUp(shipper, 10), "caught up");
    let waits = 0;
    o.wal.waitForDurable = () => {
      waits++;
      return Promise.reject(new WalClosedError("/data/wal"));
    };
    o.wal.add([record(11, "A")]); // wakes the idle wait; the next one finds the WAL closed
    await waitFor(
      () => failures.length >= 2 || undefined,
      "the closed WAL reported, then again after a backoff",
    );
    expect(waits).toBeLessThan(20 * failures.length);
  });

  it("an acknowledgement past what the batch carried is a protocol error, never the shipper's watermark", async () => {
    const { dir, o, recs, peer } = shipping(10);
    peer.answer = (n, b, real) => (n === 1 ? { kind: "ok", watermark: b.lastLsn + 5 } : real);
    const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    const acks: number[] = [];
    shipper.on("ack", (w: number) => acks.push(w));
    await waitFor(caughtUp(shipper, 10), "caught up after the untrusted answer");
    expect(failures[0]).toBe("ack_beyond_sent");
    expect(acks.filter((w) => w > 10)).toEqual([]); // (the next session learns 10 from the peer's watermarks)
    expect(peer.holds(recs)).toHaveLength(10);
  });

  it("a rewind to the batch's first LSN or past it is a protocol error; one to just before it is a rewind", async () => {
    for (const [back, reason] of [
      [0, "ack_beyond_sent"],
      [1, "rewind"],
    ] as const) {
      const { dir, o, peer } = shipping(10);
      peer.answer = (n, b, real) => (n === 1 ? { kind: "gap", watermark: b.firstLsn - back } : real);
      const { shipper, failures } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
      await waitFor(caughtUp(shipper, 10), `caught up after a rewind to first LSN - ${back}`);
      expect(failures[0]).toBe(reason);
    }
  });

  it("each acknowledgement counts the records its batch carried to this peer (its policy's only)", async () => {
    const { dir, o, peer } = shipping(20);
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json"), tenants: ["A"] });
    const sent: number[] = [];
    shipper.on("ack", (_w: number, n: number) => sent.push(n));
    await waitFor(caughtUp(shipper, 20), "caught up");
    expect(sent.reduce((a, b) => a + b, 0)).toBe(10);
  });

  it("a backfill batch the peer refuses is sent again: every record of the added tenant arrives", async () => {
    const { dir, o, recs, peer } = shipping(20);
    const stateFile = path.join(dir, "eu.json");
    const first = start({ ...o, peer, stateFile, tenants: ["A"] });
    await waitFor(caughtUp(first.shipper, 20), "tenant A shipped");
    await stop(first.shipper);
    let refused = 0;
    const real = peer.replicate.bind(peer);
    peer.replicate = async (body: Buffer) => {
      if ((ReaderPeer.header(body).flags & BATCH_FLAG_BACKFILL) !== 0 && refused++ === 0)
        throw new Error("connection reset");
      return real(body);
    };
    const { shipper, failures } = start({ ...o, peer, stateFile, tenants: ["A", "B"] });
    await waitFor(() => peer.holds(recs).length === 20 || undefined, "tenant B backfilled after the refusal");
    expect(failures.length).toBeGreaterThan(0);
    expect(shipper.acked).toBe(20);
  });

  it("an older incarnation's answers never move the current stream's watermark", async () => {
    const { dir, o, peer } = shipping(3);
    const older = "0".repeat(32);
    o.hold(
      older,
      30,
      Array.from({ length: 30 }, (_, i) => record(i + 1, "t", `old${i + 1}`)),
    );
    const { shipper } = start({ ...o, peer, stateFile: path.join(dir, "eu.json") });
    const acks: number[] = [];
    shipper.on("ack", (w: number) => acks.push(w));
    await waitFor(caughtUp(shipper, 3), "the current stream caught up");
    expect(Math.max(...acks)).toBe(3);
    expect(await peer.watermarks()).toMatchObject({
      streams: expect.arrayContaining([expect.objectContaining({ incarnation: older, lsn: 30 })]),
    });
  });
});
