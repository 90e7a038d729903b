/**
 * The archiver against a real WAL on disk and a bucket in memory that can lie: a copy that
 * reads back different (a corrupted object, a wrong checksum in its metadata, a short
 * object) is never counted as verified, and the next pass puts it again; object keys name
 * origin, incarnation and LSN range, and parse back.
 */
import fs from "node:fs";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../../test/support/tmp.js";
import { silentLogger } from "../log.js";
import { meshAudience, sealRing, testArchiver, testKeys } from "../../test/support/seal.js";
import { realRuntime } from "../runtime/index.js";
import type { Seal } from "../protocol/index.js";
import { Wal, segmentHeaderBytes } from "../wal/index.js";
import { Archiver } from "./archiver.js";
import { readAudience } from "./audience.js";
import { incarnationPrefix, parseSegmentObjectKey, segmentObjectKey } from "./keys.js";
import { ArchiveGapError, planRestore } from "./restore.js";
import { RequestTally, s3ArchiveStore, type ArchiveStore, type StoredObject } from "./s3-store.js";

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

/** A bucket in memory; `spoil` changes what the next get returns. */
function memoryBucket() {
  const objects = new Map<string, StoredObject>();
  const b = {
    objects,
    puts: 0,
    spoil: undefined as ((o: StoredObject) => void) | undefined,
    store: {
      async put(key: string, body: Buffer, seal: Seal) {
        b.puts++;
        objects.set(key, { body: Buffer.from(body), seal });
      },
      async get(key: string) {
        const o = objects.get(key);
        if (!o) throw new Error(`no such key ${key}`);
        const copy: StoredObject = { body: Buffer.from(o.body), seal: { ...o.seal } };
        const spoil = b.spoil;
        b.spoil = undefined;
        spoil?.(copy);
        return copy;
      },
      async list() {
        return [...objects.keys()].sort();
      },
      async folders() {
        return [];
      },
      close() {},
    } satisfies ArchiveStore,
  };
  return b;
}

/** The bucket, noting the key of every put that succeeded, in order. */
function s3LikeOrder(b: ReturnType<typeof memoryBucket>) {
  const order: string[] = [];
  const put = b.store.put;
  b.store.put = async (key, body, seal) => {
    await put(key, body, seal);
    order.push(key);
  };
  return { ...b, order };
}

async function walWithSegments(): Promise<Wal> {
  const wal = await Wal.open({ dir: tempDir(), region: "us-east-1", segmentBytesMax: 4096 });
  opened.push(wal);
  for (let i = 0; i < 200; i++)
    await wal.append({ key: `k${i}`, tenant: "t", outcome: "accepted", body: { pad: "x".repeat(60) } });
  expect(wal.sealedSegments().length).toBeGreaterThan(2);
  return wal;
}

describe("archiver", () => {
  it("publishes its audience, sealed, before its first object in each process; until it can, archives nothing", async () => {
    const wal = await walWithSegments();
    const bucket = s3LikeOrder(memoryBucket());
    let refuse = true;
    const put = bucket.store.put;
    bucket.store.put = async (key, body, seal) => {
      if (refuse && key.endsWith(".audience.json")) throw new Error("AccessDenied");
      return put(key, body, seal);
    };
    const arch = testArchiver(wal, bucket.store, tempDir(), undefined, meshAudience);
    await arch.pass();
    expect(arch.status().lastError).toBe("audience: AccessDenied");
    expect(bucket.order).toEqual([]);
    refuse = false;
    await arch.pass();
    expect(bucket.order[0]).toBe(`crr/us-east-1/${wal.incarnation}.audience.json`);
    expect(bucket.order.length).toBeGreaterThan(2);
    const a = await readAudience(bucket.store, sealRing, "crr", "us-east-1", wal.incarnation);
    expect(a).toEqual({ ...meshAudience, incarnation: wal.incarnation });
    // Once per process: a restarted one publishes again (its policy may have changed).
    await wal.append({ key: "more", tenant: "t", outcome: "accepted" });
    await arch.pass();
    expect(bucket.order.filter((k) => k.endsWith(".audience.json"))).toHaveLength(1);
    await testArchiver(wal, bucket.store, tempDir(), undefined, meshAudience).pass();
    expect(bucket.order.filter((k) => k.endsWith(".audience.json"))).toHaveLength(2);
  });

  it("verifies every copy it counts; a copy that reads back different is put again next pass", async () => {
    const wal = await walWithSegments();
    const bucket = memoryBucket();
    const arch = testArchiver(wal, bucket.store);
    const spoils: Array<[string, (o: StoredObject) => void]> = [
      ["reads back with SHA-256", (o) => void (o.body[200]! ^= 1)],
      ["its metadata says", (o) => void (o.seal.sha256Hex = "0".repeat(64))],
      ["unsealed", (o) => void (o.seal = { sha256Hex: o.seal.sha256Hex })],
      ["reads back with SHA-256", (o) => void (o.body = o.body.subarray(0, o.body.length - 3))],
    ];
    for (const [words, spoil] of spoils) {
      const before = arch.verifiedLsn;
      bucket.spoil = spoil;
      await arch.pass();
      expect(arch.status().lastError).toContain(words);
      expect(arch.verifiedLsn).toBe(before); // the spoilt copy's segment was not counted
    }
    await arch.pass();
    expect(arch.status().lastError).toBeUndefined();
    expect(arch.verifiedLsn).toBe(wal.durableLsn);
    expect(arch.status().lagSeconds).toBe(0);
    // One object per sealed segment and one for the durable prefix of the active one, named by range.
    const keys = [...bucket.objects.keys()].sort();
    const ranges = keys.map((k) => parseSegmentObjectKey(k)!);
    expect(ranges.map((r) => r.firstLsn)).toEqual([
      ...wal.sealedSegments().map((s) => s.firstLsn),
      wal.activeDurable().firstLsn,
    ]);
    expect(ranges.at(-1)!.lastLsn).toBe(wal.durableLsn);
  });

  it("archive.verify sampled reads back one object in N (the first always); complete reads back every one", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: "us-east-1", segmentBytesMax: 1 << 20 });
    opened.push(wal);
    const runs = async (sampleEvery: number) => {
      const bucket = memoryBucket();
      let gets = 0;
      const get = bucket.store.get;
      bucket.store.get = async (k) => (gets++, get(k));
      const arch = new Archiver({
        wal,
        region: "us-east-1",
        store: bucket.store,
        ...testKeys("us-east-1"),
        verify: { sampleEvery },
        prefix: "crr",
        where: `sampled ${sampleEvery}`,
        intervalMs: 60_000,
        dataDir: tempDir(),
        runtime: realRuntime,
        log: silentLogger(),
      });
      for (let i = 0; i < 6; i++) {
        await wal.append({ key: `s${sampleEvery}-${i}`, tenant: "t", outcome: "accepted" });
        await arch.pass();
      }
      expect(arch.status().objects).toBe(6);
      return { gets, readBack: arch.status().readBack };
    };
    expect(await runs(3)).toEqual({ gets: 2, readBack: 2 });
    expect(await runs(1)).toEqual({ gets: 6, readBack: 6 });
  });

  it("resumes from its cursor after a restart, and starts over for another incarnation", async () => {
    const wal = await walWithSegments();
    const bucket = memoryBucket();
    const dataDir = tempDir();
    await testArchiver(wal, bucket.store, dataDir).pass();
    const puts = bucket.puts;
    const again = testArchiver(wal, bucket.store, dataDir);
    expect(again.verifiedLsn).toBe(wal.durableLsn);
    await again.pass();
    expect(bucket.puts).toBe(puts); // nothing to do
    const other = await walWithSegments(); // another WAL: another incarnation
    expect(testArchiver(other, bucket.store, dataDir).verifiedLsn).toBe(0);
  });

  it("names what is archived by origin, incarnation and LSN range", () => {
    const o = {
      origin: "eu-west-1",
      incarnation: "00112233445566778899aabbccddeeff",
      firstLsn: 5,
      lastLsn: 2 ** 40,
    };
    const key = segmentObjectKey("/backups/crr/", o);
    expect(key).toBe(`backups/crr/eu-west-1/${o.incarnation}/00000000000000000005-00000001099511627776.wal`);
    expect(key.startsWith(incarnationPrefix("backups/crr", o.origin, o.incarnation))).toBe(true);
    expect(parseSegmentObjectKey(key)).toEqual(o);
    expect(segmentObjectKey("", o).startsWith("eu-west-1/")).toBe(true);
    for (const bad of [key.replace(".wal", ".tmp"), key.replace(o.incarnation, "zz"), "x.wal"])
      expect(parseSegmentObjectKey(bad)).toBeUndefined();
  });

  it("uploads a growing active segment once: each later pass sends only what was written since", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: "us-east-1" }); // one big segment
    opened.push(wal);
    const bucket = memoryBucket();
    const arch = testArchiver(wal, bucket.store);
    const sizes: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 50; i++)
        await wal.append({
          key: `r${round}-${i}`,
          tenant: "t",
          outcome: "accepted",
          body: { pad: "x".repeat(60) },
        });
      await arch.pass();
      expect(arch.status().lastError).toBeUndefined();
      expect(arch.verifiedLsn).toBe(wal.durableLsn);
    }
    const keys = [...bucket.objects.keys()].sort();
    expect(keys.map((k) => parseSegmentObjectKey(k)).map((o) => [o!.firstLsn, o!.lastLsn])).toEqual([
      [1, 50],
      [51, 100],
      [101, 150],
      [151, 200],
    ]);
    for (const k of keys) sizes.push(bucket.objects.get(k)!.body.length);
    // Every byte of the WAL once, plus one 128-byte header per later object.
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(wal.activeDurable().bytes + 3 * 128);
  });
});

describe("archiver under review's cases", () => {
  const append = (wal: Wal, n: number, tag = "r") =>
    (async () => {
      for (let i = 0; i < n; i++)
        await wal.append({
          key: `${tag}-${i}-${wal.durableLsn}`,
          tenant: "t",
          outcome: "accepted",
          body: { p: "x".repeat(60) },
        });
    })();
  const covered = (bucket: ReturnType<typeof memoryBucket>) => {
    const lsns = new Set<number>();
    for (const k of bucket.objects.keys()) {
      const o = parseSegmentObjectKey(k)!;
      for (let l = o.firstLsn; l <= o.lastLsn; l++) lsns.add(l);
    }
    return lsns;
  };

  it("a segment sealed while an upload runs is archived, never jumped over", async () => {
    const wal = await walWithSegments();
    const bucket = memoryBucket();
    let release!: () => void;
    let entered!: () => void;
    const inPut = new Promise<void>((r) => (entered = r));
    const held = new Promise<void>((r) => (release = r));
    const put = bucket.store.put;
    let first = true;
    bucket.store.put = async (k, b, seal) => {
      if (first) {
        first = false;
        entered();
        await held;
      }
      return put(k, b, seal);
    };
    const arch = testArchiver(wal, bucket.store);
    const pass = arch.pass();
    await inPut;
    const active = wal.activeDurable().firstLsn;
    while (wal.activeDurable().firstLsn === active) await append(wal, 1);
    await append(wal, 3);
    release();
    await pass;
    expect(arch.status().lastError).toBeUndefined();
    await arch.pass(); // what was written during the first pass
    const lsns = covered(bucket);
    for (let l = 1; l <= arch.verifiedLsn; l++) expect(lsns.has(l), `LSN ${l} in no object`).toBe(true);
    expect(arch.verifiedLsn).toBe(wal.durableLsn);
  });

  it("a pass archives what was durable when it began: appends during it wait for the next pass (one object per pass)", async () => {
    const wal = await Wal.open({ dir: tempDir(), region: "us-east-1", segmentBytesMax: 1 << 20 });
    opened.push(wal);
    await append(wal, 5);
    const bucket = memoryBucket();
    const put = bucket.store.put;
    bucket.store.put = async (k, b, seal) => {
      await append(wal, 5, "during"); // a busy region: more records while each upload runs
      return put(k, b, seal);
    };
    const arch = testArchiver(wal, bucket.store);
    await arch.pass();
    expect(bucket.puts).toBe(1);
    expect(arch.verifiedLsn).toBe(5);
    await arch.pass();
    expect(bucket.puts).toBe(2);
    expect(arch.verifiedLsn).toBe(10);
  });

  it("a cursor beyond the WAL is not trusted, and says so; a cursor of another bucket counts for nothing", async () => {
    const dir = tempDir();
    const dataDir = tempDir();
    const bucket = memoryBucket();
    let wal = await Wal.open({ dir, region: "us-east-1", segmentBytesMax: 1 << 20 });
    await append(wal, 20, "old");
    await testArchiver(wal, bucket.store, dataDir).pass();
    const file = wal.activeDurable().path;
    await wal.close();
    // The disk loses a synced tail (LSNs 11..20).
    const image = fs.readFileSync(file);
    let p = segmentHeaderBytes;
    for (let n = 0; n < 10; n++) p += 8 + image.readUInt32LE(p + 4);
    fs.truncateSync(file, p);
    wal = await Wal.open({ dir, region: "us-east-1", segmentBytesMax: 1 << 20 });
    opened.push(wal);
    await append(wal, 5, "new"); // LSNs 11..15 again
    const again = testArchiver(wal, bucket.store, dataDir);
    await again.pass();
    expect(again.verifiedLsn).toBe(15);
    expect(again.status().lastError).toContain("archive.json says LSNs up to 20");
    // The new LSNs 11..15 are archived (in an object of the whole file again).
    expect(
      [...bucket.objects.keys()].some((k) => k.endsWith("00000000000000000001-00000000000000000015.wal")),
    ).toBe(true);
    // Another bucket: everything again.
    const other = memoryBucket();
    const moved = testArchiver(wal, other.store, dataDir, "another bucket");
    expect(moved.verifiedLsn).toBe(0);
    await moved.pass();
    expect(covered(other).size).toBe(15);
  });

  it("an S3 endpoint that never answers fails the pass within its request timeout, counted and shown", async () => {
    process.env.AWS_ACCESS_KEY_ID ??= "test"; // the SDK's chain: none needed by this server
    process.env.AWS_SECRET_ACCESS_KEY ??= "test";
    const sockets: net.Socket[] = [];
    const server = net.createServer((sock) => void sockets.push(sock)); // accepts, never answers
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    opened.push({
      close: async () => {
        for (const sock of sockets) sock.destroy();
        await new Promise((r) => server.close(r));
      },
    });
    const wal = await Wal.open({ dir: tempDir(), region: "us-east-1" });
    opened.push(wal);
    await append(wal, 1);
    const errors: string[] = [];
    const arch = new Archiver({
      wal,
      region: "us-east-1",
      ...testKeys("us-east-1"),
      prefix: "crr",
      where: "hole",
      intervalMs: 60_000,
      dataDir: tempDir(),
      runtime: realRuntime,
      log: silentLogger(),
      onError: (stage) => errors.push(stage),
      store: s3ArchiveStore({
        s3: {
          bucket: "b",
          prefix: "crr",
          region: "us-east-1",
          endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
          forcePathStyle: true,
        },
        attempts: 2,
        requestTimeoutMs: 300,
        runtime: realRuntime,
        onRequest: () => undefined,
      }),
    });
    await arch.pass(); // ends: the test's own timeout is the bound
    expect(arch.status().lastError).toBeDefined();
    expect(errors.length).toBe(1);
  });

  it("lag is at most the time since the last pass that left nothing behind", async () => {
    let now = 1_000_000;
    const wal = await Wal.open({
      dir: tempDir(),
      region: "us-east-1",
      runtime: { ...realRuntime, nowMs: () => now },
    });
    opened.push(wal);
    const bucket = memoryBucket();
    const arch = new Archiver({
      wal,
      region: "us-east-1",
      store: bucket.store,
      ...testKeys("us-east-1"),
      prefix: "crr",
      where: "b",
      intervalMs: 60_000,
      dataDir: tempDir(),
      runtime: { ...realRuntime, nowMs: () => now },
      log: silentLogger(),
    });
    await append(wal, 1);
    now += 300_000; // the segment is 5 minutes old
    await arch.pass();
    expect(arch.status().lagSeconds).toBe(0);
    await append(wal, 1);
    now += 2_000;
    expect(arch.status().lagSeconds).toBe(2);
  });
});

describe("restore plan", () => {
  const inc = "00112233445566778899aabbccddeeff";
  const only = { prefix: "crr", origins: ["us-east-1", "eu-west-1"] };
  const key = (first: number, last: number, origin = "us-east-1") =>
    segmentObjectKey("crr", { origin, incarnation: inc, firstLsn: first, lastLsn: last });

  it("takes the longest object of each first LSN, follows the chain from LSN 1, per origin", () => {
    const plan = planRestore(
      [key(1, 10), key(11, 15), key(1, 20), key(21, 30), key(1, 4, "eu-west-1"), "crr/other.txt"],
      only,
    );
    expect(
      plan.map((s) => [s.origin, s.lastLsn, s.objects.map((o) => `${o.firstLsn}-${o.lastLsn}`)]),
    ).toEqual([
      ["eu-west-1", 4, ["1-4"]],
      ["us-east-1", 30, ["1-20", "21-30"]],
    ]);
  });

  it("takes only this deployment's keys of its regions (not another one nested under the prefix)", () => {
    const other = (prefix: string, origin: string) =>
      segmentObjectKey(prefix, { origin, incarnation: "d".repeat(32), firstLsn: 1, lastLsn: 9 });
    const plan = planRestore(
      [key(1, 10), other("crr/staging", "us-east-1"), other("crr", "not-a-region")],
      only,
    );
    expect(plan.map((s) => [s.origin, s.incarnation])).toEqual([["us-east-1", inc]]);
  });

  it("refuses a hole, or a stream whose archive does not start at LSN 1, naming the LSNs", () => {
    expect(() => planRestore([key(1, 10), key(12, 20)], only)).toThrow(ArchiveGapError);
    expect(() => planRestore([key(1, 10), key(12, 20)], only)).toThrow("LSNs 11..11 of us-east-1");
    expect(() => planRestore([key(5, 10)], only)).toThrow("LSNs 1..4 of us-east-1");
  });

  it("for a bootstrap, takes each stream's chain up to its first hole, the hole named (no object without LSN 1)", () => {
    const plan = planRestore(
      [key(1, 10), key(11, 15), key(17, 20), key(5, 9, "eu-west-1"), key(1, 4, "ap-south-1")],
      {
        prefix: "crr",
        origins: [...only.origins, "ap-south-1"],
        upToHoles: true,
      },
    );
    expect(plan.map((s) => [s.origin, s.lastLsn, s.objects.length, s.hole, s.archivedLsn])).toEqual([
      ["ap-south-1", 4, 1, undefined, 4],
      ["eu-west-1", 0, 0, { fromLsn: 1, toLsn: 4 }, 9],
      ["us-east-1", 15, 2, { fromLsn: 16, toLsn: 16 }, 20],
    ]);
  });

  it("counts S3 requests and gives a rate per hour after a minute", () => {
    const t = new RequestTally(0);
    for (let i = 0; i < 6; i++) t.add("put");
    t.add("list");
    expect(t.snapshot(30_000)).toEqual({ requests: { put: 6, get: 0, list: 1 }, perHour: undefined });
    expect(t.snapshot(360_000).perHour).toEqual({ put: 60, get: 0, list: 10 });
  });
});
