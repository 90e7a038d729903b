/**
 * The archive follower (S3 as a transport) against a real WAL, archiver, Reader and
 * SqliteStore, with a bucket in memory that lists like S3 (prefix, start-after, max keys,
 * common prefixes). Cases from a review: an origin restart, keys that are not the archive's,
 * a bad object in one incarnation, a follower of the wrong prefix, a restarted follower.
 */
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openStore } from "../../test/support/shipper-peer.js";
import { tempDir } from "../../test/support/tmp.js";
import { HybridClock } from "../clock/index.js";
import { silentLogger } from "../log.js";
import { IncarnationTracker } from "../node/incarnations.js";
import { Reader } from "../reader/index.js";
import { realRuntime } from "../runtime/index.js";
import { Wal } from "../wal/index.js";
import { ArchiveFollower } from "./follower.js";
import { audienceObjectKey, publishAudience } from "./audience.js";
import { segmentObjectKey } from "./keys.js";
import { sealObject, sha256Hex, type Seal } from "../protocol/index.js";
import { meshAudience, sealRing, testArchiver, testKeys } from "../../test/support/seal.js";
import { checkedFrames } from "./restore.js";
import { NoSuchObjectError, type ArchiveStore, type StoredObject } from "./s3-store.js";

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

function s3LikeBucket() {
  const objects = new Map<string, StoredObject>();
  const b = {
    objects,
    lists: 0,
    gets: [] as string[],
    calls: [] as string[],
    store: {
      async put(key: string, body: Buffer, seal: Seal) {
        objects.set(key, { body: Buffer.from(body), seal });
      },
      async get(key: string): Promise<StoredObject> {
        b.gets.push(key);
        b.calls.push(`get ${key}`);
        const o = objects.get(key);
        if (!o) throw new NoSuchObjectError(`no such key ${key}`);
        return { body: Buffer.from(o.body), seal: { ...o.seal } };
      },
      async list(prefix: string, startAfter: string | undefined, max: number) {
        b.lists++;
        b.calls.push(`list ${prefix}`);
        if (b.lists > 10_000) throw new Error("spinning: 10000 LISTs in one test");
        return [...objects.keys()]
          .filter((k) => k.startsWith(prefix) && (startAfter === undefined || k > startAfter))
          .sort()
          .slice(0, max);
      },
      async folders(prefix: string) {
        const set = new Set<string>();
        for (const k of objects.keys())
          if (k.startsWith(prefix) && k.slice(prefix.length).includes("/"))
            set.add(prefix + k.slice(prefix.length).split("/")[0]! + "/"); // S3's common prefixes: keys with a "/" after it
        return [...set].sort();
      },
      close() {},
    } satisfies ArchiveStore,
  };
  return b;
}

const origin = "us-east-1";
const self = "eu-west-1";

function reader(accepts: (o: string, t: string) => boolean = () => true) {
  const store = openStore(path.join(tempDir(), "peer.sqlite"));
  const r = new Reader({
    self,
    regions: [origin, self],
    store,
    clock: new HybridClock(),
    policy: {
      peers: [origin],
      filtersTenants: false,
      sendsTo: () => true,
      accepts,
      peersFor: () => [origin],
      regionTakes: () => true,
    },
    rule: "first-write-wins/1",
    incarnations: new IncarnationTracker(10_000),
    nowMs: Date.now,
    log: silentLogger(),
  });
  return { store, reader: r };
}

function follower(store: ArchiveStore, r: Reader, peer: ReturnType<typeof openStore>, prefix = "crr") {
  return new ArchiveFollower({
    origin,
    self,
    store,
    prefix,
    reader: r,
    keys: testKeys(self).keys,
    objectBytesMax: 1 << 24,
    applied: (o, inc) => peer.watermark(o, inc),
    pollMs: 60_000,
    runtime: realRuntime,
    log: silentLogger(),
  });
}

async function append(wal: Wal, n: number, from: number) {
  for (let i = from; i < from + n; i++) await wal.append({ key: `k${i}`, tenant: "t", outcome: "accepted" });
}

describe("archive follower", () => {
  it("an origin's restart keeps its keys a chain: the follower goes on from where it was", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const bucket = s3LikeBucket();
    const dataDir = tempDir();
    const a1 = testArchiver(wal, bucket.store, dataDir, undefined, meshAudience);
    await append(wal, 10, 0);
    await a1.pass(); // 1-10
    await append(wal, 5, 10);
    await a1.pass(); // 11-15 (a delta object)
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store);
    await f.poll();
    expect(await store.watermark(origin, wal.incarnation)).toBe(15);

    await append(wal, 5, 15);
    const a2 = testArchiver(wal, bucket.store, dataDir, undefined, meshAudience); // the origin restarted: its tail is in memory only
    await a2.pass(); // 16-20: from the LSN after its cursor, not the file's start
    await append(wal, 5, 20);
    await a2.pass(); // 21-25
    expect(a2.verifiedLsn).toBe(25); // the origin's retention now counts LSNs 1..25 as this peer's

    for (let i = 0; i < 20; i++) await f.poll();
    expect(await store.watermark(origin, wal.incarnation)).toBe(25);
    expect(f.status().lastError).toBeUndefined();
  });

  it("keys that are not the archive's are passed over (100 of them made one poll list forever)", async () => {
    const bucket = s3LikeBucket();
    const inc = "a".repeat(32);
    for (let i = 0; i < 100; i++)
      bucket.objects.set(`crr/${origin}/${inc}/0-junk-${String(i).padStart(3, "0")}`, {
        body: Buffer.alloc(1),
        seal: {},
      });
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store);
    await f.poll(); // before: on S3 this poll never ended (the in-memory bucket throws after 10,000 LISTs)
    expect(bucket.lists).toBeLessThan(10);
    await f.poll();
    expect(bucket.lists).toBeLessThan(10);
  });

  it("a key that sorts after every object key neither stalls the follower nor goes unsaid", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const bucket = s3LikeBucket();
    const arch = testArchiver(wal, bucket.store, tempDir(), undefined, meshAudience);
    await append(wal, 3, 0);
    await arch.pass();
    bucket.objects.set(`crr/${origin}/${wal.incarnation}/~junk`, { body: Buffer.alloc(1), seal: {} });
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store);
    await f.poll();
    expect(await store.watermark(origin, wal.incarnation)).toBe(3);
    expect(f.status().lastError).toContain("~junk");
    await append(wal, 3, 3);
    await arch.pass(); // an object key that sorts before ~junk
    await f.poll();
    expect(await store.watermark(origin, wal.incarnation)).toBe(6);
  });

  it("a bad object in one incarnation stops only that one, and shows", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const bucket = s3LikeBucket();
    await append(wal, 10, 0);
    await testArchiver(wal, bucket.store, tempDir(), undefined, meshAudience).pass();
    // An old incarnation's object that does not check (bit rot, a forgery, or a clock_skew refusal).
    const old = "0".repeat(32);
    bucket.objects.set(segmentObjectKey("crr", { origin, incarnation: old, firstLsn: 1, lastLsn: 3 }), {
      body: Buffer.from("junk"),
      seal: {},
    });
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store);
    await f.poll();
    expect(await store.watermark(origin, wal.incarnation)).toBe(10);
    expect(f.status().lastError).toContain(old);
  });

  it("a follower of a prefix the origin does not archive to says so", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const bucket = s3LikeBucket();
    await append(wal, 10, 0);
    await testArchiver(wal, bucket.store, tempDir(), undefined, meshAudience).pass(); // the origin archives under "crr"
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store, "crr-eu");
    for (let i = 0; i < 30; i++) await f.poll();
    const st = f.status();
    expect(st.lastError).toContain("no archive of us-east-1 under crr-eu/us-east-1/");
  });

  it("a restarted follower fetches no object it already holds", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const bucket = s3LikeBucket();
    const arch = testArchiver(wal, bucket.store, tempDir(), undefined, meshAudience);
    for (let i = 0; i < 50; i++) {
      await append(wal, 2, i * 2);
      await arch.pass();
    }
    const { store, reader: rd } = reader();
    await follower(bucket.store, rd, store).poll();
    let gets = 0;
    const counting = { ...bucket.store, get: (k: string) => (gets++, bucket.store.get(k)) };
    await follower(counting, rd, store).poll(); // the same region after a restart
    expect(gets).toBe(0);
  });

  it("a stream whose published audience does not send this region every record is not followed: no object of it is read, it shows, and following resumes once it does; each node of a region is judged by its own", async () => {
    // Two nodes of us-east-1 (a WAL each). Node b restarted under a selective policy that
    // keeps tenant t from eu-west-1 (eu-west-1's config may still say multi-way: only the
    // origin's own word counts); node a still runs the multi-way one.
    const [walA, walB] = [
      await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 }),
      await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 }),
    ] as const;
    opened.push(walA, walB);
    const bucket = s3LikeBucket();
    const selective = {
      ...meshAudience,
      mode: "selective" as const,
      sendsAllTo: [],
      tenants: { t: ["ap-south-1"] },
    };
    await append(walA, 5, 0);
    await append(walB, 5, 100);
    await testArchiver(walA, bucket.store, tempDir(), undefined, meshAudience).pass();
    await testArchiver(walB, bucket.store, tempDir(), undefined, selective).pass();
    bucket.gets.length = 0; // the archivers' read-back
    bucket.calls.length = 0;
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store);
    await f.poll();
    expect(await store.watermark(origin, walA.incarnation)).toBe(5);
    // The audience is read after the listing it judges, before any object of it.
    const ofA = bucket.calls.filter((c) => c.includes(walA.incarnation));
    expect(ofA.map((c) => c.split(" ")[0] + (c.endsWith(".audience.json") ? " audience" : ""))).toEqual(
      [
        "list",
        "get audience",
        "get",
        "list", // the next page: none
      ].slice(0, ofA.length),
    );
    expect(ofA.length).toBeGreaterThanOrEqual(3);
    expect(await store.watermark(origin, walB.incarnation)).toBe(0);
    expect(f.status().lastError).toContain(
      `us-east-1's archive (incarnation ${walB.incarnation}) is not for eu-west-1: its policy (selective`,
    );
    expect(bucket.gets.filter((k) => k.includes(walB.incarnation) && k.endsWith(".wal"))).toEqual([]);
    // Node b restarts multi-way again: its audience is published before its next object.
    await append(walB, 5, 105);
    await testArchiver(walB, bucket.store, tempDir(), undefined, meshAudience).pass();
    await f.poll();
    expect(await store.watermark(origin, walB.incarnation)).toBe(10);
    expect(f.status().lastError).toBeUndefined();
  });

  it("an origin without a published audience, or with one it did not seal, is not followed", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const bucket = s3LikeBucket();
    await append(wal, 5, 0);
    await testArchiver(wal, bucket.store, tempDir()).pass(); // a build that publishes none
    bucket.gets.length = 0; // the archiver's read-back
    const { store, reader: rd } = reader();
    const f = follower(bucket.store, rd, store);
    await f.poll();
    expect(f.status().lastError).toContain(
      `us-east-1 (incarnation ${wal.incarnation}) has published no audience at crr/us-east-1/${wal.incarnation}.audience.json`,
    );
    // Written by another region (every archiving region can write to the bucket), naming us.
    const body = Buffer.from(JSON.stringify({ ...meshAudience, incarnation: wal.incarnation, atMs: 1 }));
    const forged = sealObject(testKeys(self).signer, {
      origin,
      incarnation: `audience ${wal.incarnation}`,
      firstLsn: 0,
      lastLsn: 0,
      body,
    });
    bucket.objects.set(audienceObjectKey("crr", origin, wal.incarnation), { body, seal: forged });
    await f.poll();
    expect(f.status().lastError).toContain(
      `crr/us-east-1/${wal.incarnation}.audience.json: seal of us-east-1: unknown key`,
    );
    // us-east-1's genuine seal of a segment, put on the audience's bytes.
    const segment = [...bucket.objects].find(([k]) => k.endsWith(".wal"))![1].seal as Seal;
    bucket.objects.set(audienceObjectKey("crr", origin, wal.incarnation), {
      body,
      seal: { ...segment, sha256Hex: sha256Hex(body) },
    });
    await f.poll();
    expect(f.status().lastError).toContain("bad signature");
    expect(await store.watermark(origin, wal.incarnation)).toBe(0);
    expect(bucket.gets.filter((k) => k.endsWith(".wal"))).toEqual([]);
  });

  it("an object not sealed by its origin is refused: forged by another region, unsealed, or a genuine seal on other bytes", async () => {
    // The attacker holds write access to the bucket (every archiving region does) and its own
    // key, and writes records of us-east-1 (a WAL that says it is us-east-1) in an incarnation
    // of its own making.
    const forged = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(forged);
    await append(forged, 3, 100);
    const body = fs.readFileSync(forged.activeDurable().path).subarray(0, forged.activeDurable().bytes);
    const what = { origin, incarnation: forged.incarnation, firstLsn: 1, lastLsn: 3 };
    const key = segmentObjectKey("crr", what);
    const genuine = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
    opened.push(genuine);
    await append(genuine, 3, 0);
    const bucket = s3LikeBucket();
    await testArchiver(genuine, bucket.store, tempDir(), undefined, meshAudience).pass();
    const genuineSeal = [...bucket.objects].find(([k]) => k.endsWith(".wal"))![1].seal as Seal;
    const own = sealObject(testKeys(self).signer, { ...what, body }); // signed with its own key
    const attempts: Array<[string, Partial<Seal>]> = [
      ["unknown key", own], // us-east-1 has no such key
      ["bad signature", { ...own, keyId: genuineSeal.keyId }], // named as us-east-1's key
      ["unsealed", { sha256Hex: sha256Hex(body) }],
      ["bad signature", { ...genuineSeal, sha256Hex: sha256Hex(body) }], // the origin's seal of other bytes
    ];
    // Its incarnation given a genuine audience, so the object's own seal is what is judged
    // (without one, the follower stops at the missing audience, before any object).
    await publishAudience(bucket.store, testKeys(origin).signer, "crr", {
      ...meshAudience,
      incarnation: forged.incarnation,
    });
    for (const [why, seal] of attempts) {
      bucket.objects.set(key, { body, seal });
      const { store, reader: rd } = reader();
      const f = follower(bucket.store, rd, store);
      await f.poll();
      expect(await store.watermark(origin, forged.incarnation), why).toBe(0);
      expect(f.status().lastError).toContain(why);
      expect(await store.watermark(origin, genuine.incarnation)).toBe(3); // the genuine archive still applies
      expect(() => checkedFrames({ ...what, key }, { body, seal }, sealRing)).toThrow(why); // restore's check
    }
  });
});
