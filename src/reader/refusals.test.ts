/**
 * The reader's checks, in process and in their documented order: each refusal answers its
 * status and code, is reported (metric label, log level), and changes nothing (no record,
 * no watermark, no clock). Real processes check the same refusals over HTTP; this file is
 * what lets mutation testing see them (those processes run dist/, not the mutated source).
 */
import { Writable } from "node:stream";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HybridClock, type Hlc } from "../clock/index.js";
import { createLogger } from "../log.js";
import { IncarnationTracker } from "../node/incarnations.js";
import {
  BATCH_FLAG_BACKFILL,
  BATCH_FLAG_SKIP_GAP,
  encodeBatch,
  type DecodedBatch,
} from "../protocol/index.js";
import { SqliteStore } from "../store/index.js";
import { encodeFrames, type WalRecord } from "../wal/index.js";
import { Reader, type ReplicateRequest } from "./reader.js";
import { tempDir } from "../../test/support/tmp.js";

const self = "eu-west-1";
const peer = "us-east-1";
const third = "ap-south-1";
const incA = "a".repeat(32);
const incB = "b".repeat(32);
const ruleText = "first-write-wins/1";
/** The reader's wall clock: fixed, so the skew bound is exact. */
const wallMs = 1_800_000_000_000;
const maxSkewMs = 1_000;

const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
});

function rec(lsn: number, o: { tenant?: string; key?: string; hlc?: Hlc } = {}): WalRecord {
  return {
    key: o.key ?? `k${lsn}`,
    tenant: o.tenant ?? "t",
    outcome: "accepted",
    bodyJson: `{"n":${lsn}}`,
    lsn,
    hlc: o.hlc ?? { wallMs: wallMs - 60_000 + lsn, logical: 0 },
    flags: 0,
  };
}

interface BatchSpec {
  origin?: string;
  incarnation?: string;
  firstLsn?: number;
  lastLsn?: number;
  flags?: number;
  records: WalRecord[];
}

function body(b: BatchSpec): Buffer {
  const firstLsn = b.firstLsn ?? b.records[0]!.lsn;
  return encodeBatch(
    {
      origin: b.origin ?? peer,
      incarnation: b.incarnation ?? incA,
      firstLsn,
      lastLsn: b.lastLsn ?? b.records.at(-1)?.lsn ?? firstLsn,
      recordCount: b.records.length,
      flags: b.flags ?? 0,
    },
    encodeFrames(b.records),
  );
}

function world(o: { refusesTenant?: string } = {}) {
  const store = new SqliteStore({
    path: path.join(tempDir(), "store.sqlite"),
    rule: { kind: "first-write-wins" },
  });
  stores.push(store);
  let nowMs = wallMs;
  const clock = new HybridClock({ wallClock: () => wallMs, maxSkewMs });
  const refused: Array<[string, string | undefined]> = [];
  const skipped: Array<{ origin: string; incarnation: string; from: number; to: number }> = [];
  const applied: DecodedBatch[] = [];
  const errors: unknown[] = [];
  const logs: Array<{ level: number; msg: string; code?: string }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const reader = new Reader({
    self,
    regions: [peer, self, third],
    store,
    clock,
    policy: {
      peers: [peer, third],
      filtersTenants: o.refusesTenant !== undefined,
      sendsTo: () => true,
      accepts: (_origin, tenant) => tenant !== o.refusesTenant,
      peersFor: () => [peer, third],
      regionTakes: () => true,
    },
    rule: ruleText,
    incarnations: new IncarnationTracker(10_000),
    nowMs: () => nowMs,
    log: createLogger({ level: "warn", destination }),
    onApplied: (b) => applied.push(b),
    onSkipped: async (origin, incarnation, s) => void skipped.push({ origin, incarnation, ...s }),
    onRefused: (reason, origin) => refused.push([reason, origin]),
    onError: (err) => errors.push(err),
  });
  const send = (
    b: Buffer | undefined,
    h: { sender?: string; rule?: string | null; inc?: string; boot?: string; sentAtMs?: number } = {},
  ) => {
    const headers: ReplicateRequest["headers"] = {
      "x-crr-incarnation": h.inc ?? incA,
      "x-crr-boot": h.boot ?? "boot-1",
    };
    if (h.sentAtMs !== undefined) headers["x-crr-timestamp"] = String(h.sentAtMs);
    if (h.rule !== null) headers["x-crr-rule"] = h.rule ?? ruleText;
    return reader.replicate({ sender: h.sender ?? peer, headers, body: b });
  };
  return {
    store,
    clock,
    reader,
    refused,
    skipped,
    applied,
    errors,
    logs,
    send,
    advance: (ms: number) => void (nowMs += ms),
    /** Nothing reached the store: no record, no watermark. */
    async untouched() {
      expect(await store.watermarks()).toEqual([]);
      expect(await store.isEmpty()).toBe(true);
    },
  };
}

describe("each refusal answers its code and changes nothing", () => {
  const cases: Array<{
    name: string;
    status: number;
    code: string;
    message: RegExp;
    send: (w: ReturnType<typeof world>) => ReturnType<Reader["replicate"]>;
    refusesTenant?: string;
    /** The region that signed the request, when not us-east-1. */
    sender?: string;
  }> = [
    {
      name: "no body",
      status: 400,
      code: "malformed",
      message: /octet-stream/,
      send: (w) => w.send(undefined),
    },
    {
      name: "an empty body",
      status: 400,
      code: "malformed",
      message: /octet-stream/,
      send: (w) => w.send(Buffer.alloc(0)),
    },
    {
      name: "no rule header",
      status: 409,
      code: "rule_mismatch",
      message: /us-east-1 merges by '\(unsaid\)', eu-west-1 by 'first-write-wins\/1'/,
      send: (w) => w.send(body({ records: [rec(1)] }), { rule: null }),
    },
    {
      name: "another rule",
      status: 409,
      code: "rule_mismatch",
      message: /merges by 'last-write-wins\/1'/,
      send: (w) => w.send(body({ records: [rec(1)] }), { rule: "last-write-wins/1" }),
    },
    {
      name: "a flipped bit in a record",
      status: 400,
      code: "bad_batch",
      message: /record at batch offset 182: checksum mismatch/,
      send: (w) => {
        const b = body({ records: [rec(1), rec(2)] });
        b[b.length - 3]! ^= 0x10;
        return w.send(b);
      },
    },
    {
      name: "an origin other than the signer",
      status: 403,
      code: "origin_mismatch",
      message: /batch from 'ap-south-1' signed by 'us-east-1'/,
      send: (w) => w.send(body({ origin: third, records: [rec(1)] })),
    },
    {
      name: "this region as the origin",
      status: 403,
      code: "unknown_origin",
      message: /origin 'eu-west-1' is not a peer region of 'eu-west-1'/,
      sender: self,
      send: (w) => w.send(body({ origin: self, records: [rec(1)] }), { sender: self }),
    },
    {
      name: "a region not in the deployment",
      status: 403,
      code: "unknown_origin",
      message: /origin 'sa-east-1' is not a peer region/,
      sender: "sa-east-1",
      send: (w) => w.send(body({ origin: "sa-east-1", records: [rec(1)] }), { sender: "sa-east-1" }),
    },
    {
      name: "one tenant the policy keeps out, among others",
      status: 403,
      code: "tenant_not_allowed",
      message: /tenant 'secret' \(LSN 2\) is not replicated to eu-west-1 by policy/,
      refusesTenant: "secret",
      send: (w) => w.send(body({ records: [rec(1), rec(2, { tenant: "secret" }), rec(3)] })),
    },
    {
      name: "a record stamped too far ahead (not the last one)",
      status: 400,
      code: "clock_skew",
      message: /is 1001 ms ahead of the local clock \(max skew 1000 ms\)/,
      send: (w) =>
        w.send(
          body({
            records: [rec(1), rec(2, { hlc: { wallMs: wallMs + maxSkewMs + 1, logical: 0 } }), rec(3)],
          }),
        ),
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const w = world({ refusesTenant: c.refusesTenant });
      const before = w.clock.peek();
      const answer = await c.send(w);
      expect(answer.status).toBe(c.status);
      expect(answer.body.code).toBe(c.code);
      expect(String(answer.body.message)).toMatch(c.message);
      await w.untouched();
      expect(w.clock.peek()).toEqual(before);
      expect(w.applied).toEqual([]);
      // Reported once, with its stable label and the signer; logged as a warning (an error
      // for a 409: two regions that can never converge).
      expect(w.refused).toEqual([[c.code, c.sender ?? peer]]);
      expect(w.logs).toEqual([
        expect.objectContaining({ level: c.status === 409 ? 50 : 40, msg: "refused a batch", code: c.code }),
      ]);
    });
  }

  it("a record exactly at the skew bound is taken", async () => {
    const w = world();
    const at = { wallMs: wallMs + maxSkewMs, logical: 0 };
    const answer = await w.send(body({ records: [rec(1, { hlc: at })] }));
    expect(answer.status).toBe(200);
    expect(w.clock.peek()).toEqual({ wallMs: at.wallMs, logical: 1 });
  });
});

describe("the order of the checks", () => {
  it("the rule before the body's checksums", async () => {
    const w = world();
    const b = body({ records: [rec(1)] });
    b[b.length - 3]! ^= 0x10;
    expect((await w.send(b, { rule: "last-write-wins/1" })).body.code).toBe("rule_mismatch");
  });

  it("the signer before the origin's membership", async () => {
    const w = world();
    const answer = await w.send(body({ origin: "sa-east-1", records: [rec(1)] }));
    expect(answer.body.code).toBe("origin_mismatch");
  });

  it("the origin before the second-node check, the second node before the tenants, the tenants before the clock", async () => {
    const w = world({ refusesTenant: "secret" });
    const ahead = { wallMs: wallMs + 10 * maxSkewMs, logical: 0 };
    // Two instances of us-east-1 heard, the later one (incB) while the first still speaks.
    await w.send(body({ records: [rec(1)] }), { inc: incA, boot: "boot-1" });
    w.advance(100);
    await w.send(body({ incarnation: incB, records: [rec(1)] }), { inc: incB, boot: "boot-2" });
    w.advance(100);
    await w.send(body({ records: [rec(2)] }), { inc: incA, boot: "boot-1" });
    w.advance(3_400); // still speaking a probe interval later (the tracker's aliveMs / 3)
    await w.send(body({ records: [rec(3)] }), { inc: incA, boot: "boot-1" });
    const fromB = { inc: incB, boot: "boot-2" };
    const bad = body({ origin: third, incarnation: incB, records: [rec(2, { tenant: "secret" })] });
    expect((await w.send(bad, fromB)).body.code).toBe("origin_mismatch");
    const refused = body({ incarnation: incB, records: [rec(2, { tenant: "secret", hlc: ahead })] });
    expect((await w.send(refused, fromB)).body.code).toBe("duplicate_region");
    const both = body({ records: [rec(3, { tenant: "secret", hlc: ahead })] });
    expect((await w.send(both)).body.code).toBe("tenant_not_allowed");
    expect((await w.send(body({ records: [rec(3, { hlc: ahead })] }))).body.code).toBe("clock_skew");
  });
});

describe("a second node with the sender's region name", () => {
  it("is refused while the first is still heard from after it appeared, and the first is not", async () => {
    const w = world();
    expect((await w.send(body({ records: [rec(1)] }), { inc: incA, boot: "boot-1" })).status).toBe(200);
    w.advance(100);
    // Another instance of us-east-1 appears (its own incarnation and boot)...
    const other = body({ incarnation: incB, records: [rec(1)] });
    expect((await w.send(other, { inc: incB, boot: "boot-2" })).status).toBe(200);
    w.advance(100);
    // ...and the first one is still speaking, over a probe interval: the later one is the second node.
    expect((await w.send(body({ records: [rec(2)] }), { inc: incA, boot: "boot-1" })).status).toBe(200);
    w.advance(100);
    expect((await w.send(body({ records: [rec(2)] }), { inc: incB, boot: "boot-2" })).status).toBe(200);
    w.advance(3_300);
    expect((await w.send(body({ records: [rec(3)] }), { inc: incA, boot: "boot-1" })).status).toBe(200);
    w.advance(100);
    const refused = await w.send(body({ incarnation: incB, records: [rec(2)] }), {
      inc: incB,
      boot: "boot-2",
    });
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe("duplicate_region");
    expect(String(refused.body.message)).toContain(`incarnation ${incA}, boot boot-1, heard 100 ms ago`);
    expect(await w.store.watermark(peer, incB)).toBe(1);
    expect(w.refused).toEqual([["duplicate_region", peer]]);
  });

  it("a request the earlier instance sent before the later one appeared is no rival, whenever it arrives", async () => {
    // Found by the simulator (seed 2): a region restarted in 120 ms; a request of its previous
    // boot, delayed 205 ms on the way, arrived after the new boot's first one, and the new
    // boot was refused as a second node (it then stopped taking appends for good).
    const w = world();
    const at = (ms: number) => wallMs + ms;
    const boot1 = { inc: incA, boot: "boot-1" };
    const boot2 = { inc: incA, boot: "boot-2" };
    expect((await w.send(body({ records: [rec(1)] }), { ...boot1, sentAtMs: at(0) })).status).toBe(200);
    w.advance(300);
    // The restarted node speaks first (sent at 250)...
    expect((await w.send(body({ records: [rec(2)] }), { ...boot2, sentAtMs: at(250) })).status).toBe(200);
    w.advance(50);
    // ...then the previous boot's last request arrives, sent at 100, before the restart.
    const late = await w.send(body({ records: [rec(2)] }), { ...boot1, sentAtMs: at(100) });
    expect(late.body.code).not.toBe("duplicate_region");
    w.advance(50);
    expect((await w.send(body({ records: [rec(3)] }), { ...boot2, sentAtMs: at(400) })).status).toBe(200);
    // Another, retransmitted for seconds, also sent before the restart: still no rival.
    w.advance(3_500);
    await w.send(body({ records: [rec(2)] }), { ...boot1, sentAtMs: at(120) });
    w.advance(50);
    expect((await w.send(body({ records: [rec(3)] }), { ...boot2, sentAtMs: at(3_950) })).status).toBe(200);
    expect(w.refused).toEqual([]);
    // The previous boot still sending after the new one appeared, over a probe interval, is a
    // second node: refused.
    w.advance(50);
    await w.send(body({ records: [rec(3)] }), { ...boot1, sentAtMs: at(4_000) });
    w.advance(3_400);
    await w.send(body({ records: [rec(4)] }), { ...boot1, sentAtMs: at(7_400) });
    w.advance(50);
    const second = await w.send(body({ records: [rec(4)] }), { ...boot2, sentAtMs: at(7_450) });
    expect(second.body.code).toBe("duplicate_region");
  });

  it("a live earlier instance whose clock runs behind is refused within aliveMs whatever its timestamps", async () => {
    // By timestamps alone, a copy whose clock is 20 s behind would pass for 20 s (found by review).
    const w = world(); // the tracker's aliveMs: 10 s
    const at = (ms: number) => wallMs + ms;
    const a = { inc: incA, boot: "boot-1" };
    const b = { inc: incA, boot: "boot-2" }; // a copied data directory started beside it
    await w.send(body({ records: [rec(1)] }), { ...a, sentAtMs: at(-20_000) });
    w.advance(100);
    expect((await w.send(body({ records: [rec(2)] }), { ...b, sentAtMs: at(100) })).status).toBe(200);
    let refused = false;
    for (let t = 1_000; t <= 20_000 && !refused; t += 1_000) {
      w.advance(1_000);
      await w.send(body({ records: [rec(2)] }), { ...a, sentAtMs: at(t - 20_000) });
      const answer = await w.send(body({ records: [rec(3)] }), { ...b, sentAtMs: at(t) });
      refused = answer.body.code === "duplicate_region";
      // aliveMs, then its requests over a probe interval (one step of this loop apart)
      if (refused) expect(t).toBeLessThanOrEqual(15_000);
    }
    expect(refused).toBe(true);
  });

  it("a late request of a previous boot whose clock ran ahead is no rival either (found by review)", async () => {
    // Each witness of the rule above is fooled here: the request arrives after the restarted
    // node's first, and its timestamp (the previous boot's clock, 0.5 s ahead) is after it too.
    // A dead boot's requests on the way all arrive at once; a live one keeps speaking.
    const w = world();
    const at = (ms: number) => wallMs + ms;
    const boot1 = { inc: incA, boot: "boot-1" };
    const boot2 = { inc: incA, boot: "boot-2" };
    expect((await w.send(body({ records: [rec(1)] }), { ...boot1, sentAtMs: at(500) })).status).toBe(200);
    w.advance(100);
    expect((await w.send(body({ records: [rec(2)] }), { ...boot1, sentAtMs: at(650) })).status).toBe(200);
    w.advance(100); // it crashed; the new boot's clock is right
    expect((await w.send(body({ records: [rec(3)] }), { ...boot2, sentAtMs: at(200) })).status).toBe(200);
    w.advance(150);
    await w.send(body({ records: [rec(2)] }), { ...boot1, sentAtMs: at(600) }); // sent before it crashed
    for (let i = 0; i < 3; i++) {
      w.advance(2_000);
      const answer = await w.send(body({ records: [rec(4 + i)] }), {
        ...boot2,
        sentAtMs: at(2_350 + 2_000 * i),
      });
      expect(answer.status).toBe(200);
    }
    expect(w.refused).toEqual([]);
  });

  it("a previous boot whose clock jumped ahead is no rival once it went silent", async () => {
    // Found by the simulator (seed 206): the previous boot's clock jumped 1.4 s ahead; by its
    // timestamps alone it still spoke after the restarted node's first request.
    const w = world();
    const at = (ms: number) => wallMs + ms;
    const boot1 = { inc: incA, boot: "boot-1" };
    const boot2 = { inc: incA, boot: "boot-2" };
    expect((await w.send(body({ records: [rec(1)] }), { ...boot1, sentAtMs: at(0) })).status).toBe(200);
    w.advance(100);
    expect((await w.send(body({ records: [rec(2)] }), { ...boot1, sentAtMs: at(1_500) })).status).toBe(200);
    w.advance(200);
    // It crashed; the node restarts with the right time.
    expect((await w.send(body({ records: [rec(3)] }), { ...boot2, sentAtMs: at(300) })).status).toBe(200);
    w.advance(100);
    expect((await w.send(body({ records: [rec(4)] }), { ...boot2, sentAtMs: at(400) })).status).toBe(200);
    expect(w.refused).toEqual([]);
  });

  it("a node shipping its own older incarnation's stream (backfill) is not a second node", async () => {
    const w = world();
    const older = "0".repeat(32);
    // The sender's headers name its current incarnation; the batch, the stream it carries.
    for (let lsn = 1; lsn <= 3; lsn++) {
      const own = await w.send(body({ records: [rec(lsn)] }), { inc: incA, boot: "boot-1" });
      expect(own.status).toBe(200);
      w.advance(100);
      const old = await w.send(body({ incarnation: older, records: [rec(lsn, { key: `old-${lsn}` })] }), {
        inc: incA,
        boot: "boot-1",
      });
      expect(old.status).toBe(200);
      w.advance(100);
    }
    expect(w.refused).toEqual([]);
    expect(await w.store.watermark(peer, older)).toBe(3);
  });

  it("a restarted region (its previous instance silent since) is not a second node", async () => {
    const w = world();
    expect((await w.send(body({ records: [rec(1)] }), { inc: incA, boot: "boot-1" })).status).toBe(200);
    w.advance(100);
    expect((await w.send(body({ records: [rec(2)] }), { inc: incA, boot: "boot-2" })).status).toBe(200);
    w.advance(100);
    expect((await w.send(body({ records: [rec(3)] }), { inc: incA, boot: "boot-2" })).status).toBe(200);
    expect(w.refused).toEqual([]);
  });
});

describe("an accepted batch", () => {
  it("answers what it applied; a second delivery applies nothing; a gap answers the watermark", async () => {
    const w = world();
    const first = await w.send(body({ records: [rec(1), rec(2), rec(3)] }));
    expect(first).toEqual({ status: 200, body: { watermark: 3, applied: 3, duplicates: 0, conflicts: 0 } });
    expect(w.applied.map((b) => [b.firstLsn, b.lastLsn])).toEqual([[1, 3]]);
    const again = await w.send(body({ records: [rec(1), rec(2), rec(3)] }));
    expect(again).toEqual({ status: 200, body: { watermark: 3, applied: 0, duplicates: 0, conflicts: 0 } });
    expect(w.applied).toHaveLength(1);
    const gap = await w.send(body({ records: [rec(6)] }));
    expect(gap.status).toBe(409);
    expect(gap.body).toMatchObject({ code: "watermark_gap", watermark: 3 });
    expect(String(gap.body.message)).toBe("batch starts at LSN 6; applied up to 3");
    // A gap is the normal rewind, neither a refusal nor a log line.
    expect(w.refused).toEqual([]);
    expect(w.logs).toEqual([]);
    expect(w.errors).toEqual([]);
  });

  it("counts the conflicts it lost or won", async () => {
    const w = world();
    const early = { wallMs: wallMs - 120_000, logical: 0 };
    await w.send(body({ records: [rec(1, { key: "shared" })] }));
    const b = body({ origin: third, incarnation: incB, records: [rec(1, { key: "shared", hlc: early })] });
    const answer = await w.send(b, { sender: third, inc: incB });
    expect(answer).toEqual({ status: 200, body: { watermark: 1, applied: 1, duplicates: 0, conflicts: 1 } });
  });

  it("moves the clock past the newest record of the batch, wherever it is", async () => {
    const w = world();
    const at = (logical: number) => ({ wallMs: wallMs + 10, logical });
    await w.send(body({ records: [rec(1, { hlc: at(5) }), rec(2, { hlc: at(9) }), rec(3, { hlc: at(2) })] }));
    expect(w.clock.peek()).toEqual({ wallMs: wallMs + 10, logical: 10 });
    const later = { wallMs: wallMs + 20, logical: 0 };
    await w.send(body({ records: [rec(4, { hlc: later }), rec(5, { hlc: at(30) })] }));
    expect(w.clock.peek()).toEqual({ wallMs: wallMs + 20, logical: 1 });
  });

  it("hands a backfill batch to the store as one: merged below the watermark, which stays", async () => {
    const w = world();
    await w.send(body({ records: [rec(1), rec(2), rec(3)] }));
    const late = (flags: number) =>
      body({ flags, firstLsn: 2, lastLsn: 2, records: [rec(2, { key: "late" })] });
    expect((await w.send(late(0))).body).toMatchObject({ applied: 0 });
    expect(await w.store.get("late")).toBeUndefined();
    expect((await w.send(late(BATCH_FLAG_BACKFILL))).body).toMatchObject({ watermark: 3, applied: 1 });
    expect(await w.store.get("late")).toBeDefined();
    expect(await w.store.watermark(peer, incA)).toBe(3);
  });

  it("a store failure is reported and the request fails", async () => {
    const w = world();
    await w.store.close();
    await expect(w.send(body({ records: [rec(1)] }))).rejects.toThrow();
    expect(w.errors).toHaveLength(1);
  });
});

describe("a batch that skips LSNs nobody holds", () => {
  const skip = (firstLsn: number, lastLsn: number) =>
    body({ flags: BATCH_FLAG_SKIP_GAP, firstLsn, lastLsn, records: [] });

  it("is audited for what it moves the watermark over, before the watermark moves", async () => {
    const w = world();
    await w.send(body({ records: [rec(1), rec(2)] }));
    const answer = await w.send(skip(3, 7));
    expect(answer.body).toMatchObject({ watermark: 7 });
    expect(w.skipped).toEqual([{ origin: peer, incarnation: incA, from: 3, to: 7 }]);
    expect(w.logs).toEqual([
      expect.objectContaining({
        level: 50,
        msg: "origin skips LSNs nobody holds (audited)",
        origin: peer,
        incarnation: incA,
        from: 3,
        to: 7,
      }),
    ]);
  });

  it("overlapping what is applied: only the part above the watermark", async () => {
    const w = world();
    await w.send(body({ records: [rec(1), rec(2), rec(3)] }));
    await w.send(skip(2, 6));
    expect(w.skipped).toEqual([{ origin: peer, incarnation: incA, from: 4, to: 6 }]);
    expect(await w.store.watermark(peer, incA)).toBe(6);
  });

  it("all below the watermark, or after a gap: not audited", async () => {
    const w = world();
    await w.send(body({ records: [rec(1), rec(2), rec(3)] }));
    await w.send(skip(1, 3));
    const gap = await w.send(skip(5, 9));
    expect(gap.body.code).toBe("watermark_gap");
    expect(w.skipped).toEqual([]);
    expect(await w.store.watermark(peer, incA)).toBe(3);
  });

  it("a batch without the flag is never audited", async () => {
    const w = world();
    await w.send(body({ firstLsn: 1, lastLsn: 4, records: [rec(4)] }));
    expect(w.skipped).toEqual([]);
  });
});

describe("a reader given only what it needs (no metrics, audit or error hooks)", () => {
  it("refuses, skips and fails as one with them", async () => {
    const store = new SqliteStore({
      path: path.join(tempDir(), "store.sqlite"),
      rule: { kind: "first-write-wins" },
    });
    stores.push(store);
    const reader = new Reader({
      self,
      regions: [peer, self],
      store,
      clock: new HybridClock({ wallClock: () => wallMs, maxSkewMs }),
      policy: {
        peers: [peer],
        filtersTenants: false,
        sendsTo: () => true,
        accepts: () => true,
        peersFor: () => [peer],
        regionTakes: () => true,
      },
      rule: ruleText,
      incarnations: new IncarnationTracker(10_000),
      nowMs: () => wallMs,
      log: createLogger({ level: "silent" }),
    });
    const send = (b: Buffer | undefined, rule = ruleText) =>
      reader.replicate({
        sender: peer,
        headers: { "x-crr-incarnation": incA, "x-crr-boot": "b", "x-crr-rule": rule },
        body: b,
      });
    expect((await send(undefined)).body.code).toBe("malformed");
    expect((await send(body({ records: [rec(1)] }), "last-write-wins/1")).body.code).toBe("rule_mismatch");
    expect(
      (await send(body({ flags: BATCH_FLAG_SKIP_GAP, firstLsn: 1, lastLsn: 4, records: [] }))).status,
    ).toBe(200);
    expect(await store.watermark(peer, incA)).toBe(4);
    await store.close();
    await expect(send(body({ records: [rec(5)] }))).rejects.toThrow(/closed|not open/i);
  });
});

describe("a batch read from a peer's archive", () => {
  it("keeps only the tenants this region's policy takes; the range still counts", async () => {
    const w = world({ refusesTenant: "secret" });
    const records = [rec(1), rec(2, { tenant: "secret" }), rec(3)];
    const batch = {
      origin: peer,
      incarnation: incA,
      firstLsn: 1,
      lastLsn: 3,
      recordCount: 3,
      flags: 0,
      records,
    };
    const answer = await w.reader.replicateArchived(batch);
    expect(answer).toEqual({ status: 200, body: { watermark: 3, applied: 2, duplicates: 0, conflicts: 0 } });
    expect(await w.store.get("k2")).toBeUndefined();
    expect(await w.store.get("k3")).toBeDefined();
  });

  it("refuses an unknown origin, this region's own, and a clock too far ahead", async () => {
    const w = world();
    const of = (origin: string, hlc?: Hlc) => ({
      origin,
      incarnation: incA,
      firstLsn: 1,
      lastLsn: 1,
      recordCount: 1,
      flags: 0,
      records: [rec(1, { hlc })],
    });
    expect((await w.reader.replicateArchived(of("sa-east-1"))).body).toMatchObject({
      code: "unknown_origin",
      message: "origin 'sa-east-1' is not a peer region of 'eu-west-1'",
    });
    expect((await w.reader.replicateArchived(of(self))).body.code).toBe("unknown_origin");
    const ahead = { wallMs: wallMs + maxSkewMs + 1, logical: 0 };
    expect((await w.reader.replicateArchived(of(peer, ahead))).body.code).toBe("clock_skew");
    await w.untouched();
  });
});
