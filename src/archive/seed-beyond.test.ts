/**
 * A bootstrap's seed past a cut: a hole or a damaged object in a stream stops its ordered
 * restore (the watermark stays before it, the peers give the rest), but what the intact
 * objects after it hold is written too. For the region's own stream those may be records of
 * a tenant it sends nowhere: no peer holds them, and without them the start is refused or the
 * operator declares them lost (startup.ts). Objects are cut from a real WAL's segment and
 * sealed with the origin's key, as the archiver uploads them.
 */
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { afterEach, describe, expect, it, vi } from "vitest";
import { s3Credentials, startS3 } from "../../test/support/s3.js";
import { frameBounds } from "../../test/support/segments.js";
import { testKeys } from "../../test/support/seal.js";
import { openStore } from "../../test/support/shipper-peer.js";
import { tempDir } from "../../test/support/tmp.js";
import { runBootstrap } from "../cli/bootstrap.js";
import { credentialsOf, parseConfig, type ReplicationPolicy } from "../config/index.js";
import { realRuntime } from "../runtime/index.js";
import { missingAfterCut } from "../node/copy.js";
import { sealObject, type Seal } from "../protocol/index.js";
import { Wal, encodeSegmentHeader } from "../wal/index.js";
import { segmentObjectKey } from "./keys.js";
import { listAll, planRestore, restoreInto, seedFromArchive } from "./restore.js";
import { s3ArchiveStore, type ArchiveStore, type StoredObject } from "./s3-store.js";

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

const origin = "us-east-1";

/** A WAL of `origin` with 18 records, tenants a, b, c in turn; its segment image. */
async function walImage(keyPrefix = "k") {
  const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
  opened.push(wal);
  for (let i = 1; i <= 18; i++)
    await wal.append({ key: `${keyPrefix}${i}`, tenant: ["a", "b", "c"][(i - 1) % 3]!, outcome: "accepted" });
  const image = fs.readFileSync(wal.activeDurable().path).subarray(0, wal.activeDurable().bytes);
  return { incarnation: wal.incarnation, image };
}

/** A bucket holding objects cut from WAL images: `put(first, last)` seals LSNs first..last. */
function bucket(incarnation: string) {
  const objects = new Map<string, StoredObject>();
  const keyOf = (first: number, last: number) =>
    segmentObjectKey("crr", { origin, incarnation, firstLsn: first, lastLsn: last });
  const put = (
    image: Buffer,
    first: number,
    last: number,
    damage = false,
    signer = testKeys(origin).signer,
  ) => {
    const { starts } = frameBounds(image);
    const body = Buffer.concat([
      encodeSegmentHeader({ region: origin, firstLsn: first, createdAtMs: 1, incarnation }),
      image.subarray(starts[first - 1], starts[last] ?? image.length),
    ]);
    const seal: Seal = sealObject(signer, {
      origin,
      incarnation,
      firstLsn: first,
      lastLsn: last,
      body,
    });
    if (damage) body[body.length - 3]! ^= 1;
    objects.set(keyOf(first, last), { body, seal });
    return { key: keyOf(first, last), body, seal };
  };
  const gets: string[] = [];
  const store: ArchiveStore = {
    put: async () => undefined,
    get: async (key: string) => {
      gets.push(key);
      const o = objects.get(key)!;
      return { body: Buffer.from(o.body), seal: { ...o.seal } };
    },
    list: async (prefix, after, max) =>
      [...objects.keys()]
        .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
        .sort()
        .slice(0, max),
    folders: async () => [],
    close: () => undefined,
  };
  return { store, put, keyOf, gets };
}

const everyTenant = { accepts: () => true } as unknown as ReplicationPolicy;

/** `self`'s seed from `store` into `into` (a new SQLite store by default). */
async function seedOf(
  store: ArchiveStore,
  self = origin,
  into = openStore(path.join(tempDir(), "seeded.sqlite")),
) {
  const seed = await seedFromArchive({
    store,
    prefix: "crr",
    origins: [origin, "eu-west-1"],
    into,
    policy: everyTenant,
    self,
    ...testKeys(origin),
  });
  return { seed, into };
}

const lsnsIn = async (into: ReturnType<typeof openStore>, incarnation: string) =>
  (await into.streamVersions(origin, incarnation, 1, 100, 100)).map((v) => v.lsn);

describe("a bootstrap's seed past a cut", () => {
  it("writes what the intact objects past a hole hold, without moving the watermark: only the hole's LSNs are left missing", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 13, 15);
    b.put(image, 16, 18);
    const { seed, into } = await seedOf(b.store);
    expect(seed.streams).toEqual([{ origin, incarnation, lsn: 6 }]);
    expect(seed.cut).toEqual([
      {
        origin,
        incarnation,
        lsn: 6,
        archivedLsn: 18,
        why: "the archive holds no object with LSNs 7..12",
        beyond: { records: 6, objects: 2, damaged: [] },
      },
    ]);
    expect(seed.records).toBe(12);
    expect(await into.watermark(origin, incarnation)).toBe(6);
    expect(await lsnsIn(into, incarnation)).toEqual([1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18]);
    expect((await into.get("k17"))?.tenant).toBe("b");
    expect(await missingAfterCut(into, seed.cut[0]!)).toEqual([[7, 12]]);
    // The newest restored time counts what was written past the cut (the clock's floor).
    expect(seed.newestMs.own).toBe((await into.get("k18"))!.hlc.wallMs);
  });

  it("past a damaged object too, passing over damaged objects after it and naming them", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 7, 12, true);
    b.put(image, 13, 15, true);
    b.put(image, 16, 18);
    const { seed, into } = await seedOf(b.store);
    const [cut] = seed.cut;
    expect(cut).toMatchObject({
      lsn: 6,
      archivedLsn: 18,
      why: expect.stringContaining(`${b.keyOf(7, 12)} refused`),
    });
    expect(cut!.beyond).toEqual({
      records: 3,
      objects: 1,
      damaged: [expect.stringMatching(new RegExp(`^archived ${b.keyOf(13, 15)} refused: `))],
    });
    expect(await lsnsIn(into, incarnation)).toEqual([1, 2, 3, 4, 5, 6, 16, 17, 18]);
    expect(await missingAfterCut(into, cut!)).toEqual([[7, 15]]);
  });

  it("a damaged object of the chain that an intact shorter copy shares LSNs with: the copy's LSNs are written too (found by review)", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 7, 12, true); // damaged, taken (the longest with first LSN 7)
    b.put(image, 7, 9); // an intact shorter copy (a re-archive after a lost cursor)
    b.put(image, 13, 18);
    const { seed, into } = await seedOf(b.store);
    expect(seed.cut[0]).toMatchObject({ lsn: 6, beyond: { records: 9, objects: 2, damaged: [] } });
    expect(await missingAfterCut(into, seed.cut[0]!)).toEqual([[10, 12]]);
    expect(await lsnsIn(into, incarnation)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 18]);
  });

  it("an LSN the store holds already past the cut is left as it is (crr rebuild replays the WAL first)", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 13, 18);
    const into = openStore(path.join(tempDir(), "seeded.sqlite"));
    const walVersion = {
      key: "from-the-wal",
      tenant: "a",
      outcome: "accepted",
      bodyJson: undefined,
      origin,
      incarnation,
      lsn: 14,
      hlc: { wallMs: 5, logical: 0 },
    };
    await into.repair([walVersion]);
    const { seed } = await seedOf(b.store, origin, into);
    expect(seed.cut[0]!.beyond).toEqual({ records: 5, objects: 1, damaged: [] });
    expect(await into.get("from-the-wal")).toEqual(walVersion);
    expect(await into.get("k14")).toBeUndefined();
    expect(await lsnsIn(into, incarnation)).toEqual([1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18]);
  });

  it("an object past the cut that another one covers again adds nothing; two versions of an LSN there write nothing past the cut", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 10, 18);
    b.put(image, 13, 15); // the same records again (an origin's restart re-archives)
    b.put(image, 16, 17, true); // damaged: read twice (it shares LSNs with 10..18), named once
    const same = await seedOf(b.store);
    expect(same.seed.cut[0]!.beyond).toEqual({
      records: 9,
      objects: 2,
      damaged: [expect.stringMatching(new RegExp(`^archived ${b.keyOf(16, 17)} refused: `))],
    });
    expect(await lsnsIn(same.into, incarnation)).toEqual([
      1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18,
    ]);
    // Other records sealed under LSNs 13..15 (LSNs issued twice): which was acknowledged is unknown.
    const other = await walImage("other");
    b.put(other.image, 13, 15);
    const two = await seedOf(b.store);
    expect(two.seed.cut[0]!.beyond).toEqual({
      records: 0,
      objects: 0,
      damaged: [
        `the archive holds two versions of LSN 13 of ${origin}/${incarnation} (${b.keyOf(10, 18)} and ${b.keyOf(13, 15)}): which one was acknowledged is unknown; nothing of this stream was restored past its cut`,
      ],
    });
    expect(await lsnsIn(two.into, incarnation)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await missingAfterCut(two.into, two.seed.cut[0]!)).toEqual([[7, 18]]);
    // Two versions before the cut: nothing of the stream, past it neither.
    const early = bucket(incarnation);
    early.put(image, 1, 6);
    early.put(other.image, 4, 6);
    early.put(image, 13, 18);
    const none = await seedOf(early.store);
    expect(none.seed.cut).toEqual([
      expect.objectContaining({
        lsn: 0,
        archivedLsn: 18,
        why: expect.stringContaining("two versions of LSN 4"),
      }),
    ]);
    expect(none.seed.cut[0]!.beyond).toBeUndefined();
    expect(await lsnsIn(none.into, incarnation)).toEqual([]);
  });

  it("a request past the cut that fails fails the seed (the node asks again): it is no damage", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 13, 18);
    const failing: ArchiveStore = {
      ...b.store,
      get: async (key, max) => {
        if (key === b.keyOf(13, 18)) throw new Error("connect ECONNREFUSED");
        return b.store.get(key, max);
      },
    };
    await expect(seedOf(failing)).rejects.toThrow("ECONNREFUSED");
  });

  it("of another region's stream, keeps past the cut only what this region's policy takes; a stream not cut reads nothing more", async () => {
    const { incarnation, image } = await walImage();
    const b = bucket(incarnation);
    b.put(image, 1, 6);
    b.put(image, 13, 18);
    const into = openStore(path.join(tempDir(), "restored.sqlite"));
    const plan = planRestore(await listAll(b.store, "crr/"), {
      prefix: "crr",
      origins: [origin],
      upToHoles: true,
    });
    const onlyA = { accepts: (_o: string, tenant: string) => tenant === "a" } as unknown as ReplicationPolicy;
    const report = await restoreInto({
      store: b.store,
      plan,
      into,
      toMs: undefined,
      policy: onlyA,
      self: "eu-west-1",
      keys: testKeys(origin).keys,
      objectBytesMax: 1 << 24,
      upToDamage: true,
    });
    expect(report.streams[0]).toMatchObject({ toLsn: 6, records: 2, beyond: { records: 2, objects: 1 } });
    expect(await lsnsIn(into, incarnation)).toEqual([1, 4, 13, 16]);
    expect(report.records).toBe(4);

    const whole = bucket(incarnation);
    whole.put(image, 1, 6);
    whole.put(image, 7, 18);
    const { seed } = await seedOf(whole.store);
    expect(seed.cut).toEqual([]);
    expect(whole.gets.sort()).toEqual([whole.keyOf(1, 6), whole.keyOf(7, 18)].sort());
  });

  it("crr bootstrap --from s3 says what it wrote past a cut, and notes the cut for the node's start", async () => {
    Object.assign(process.env, s3Credentials);
    const s3 = await startS3();
    opened.push({ close: () => s3.close() });
    const dir = tempDir();
    const raw = {
      region: origin,
      dataDir: path.join(dir, "data"),
      regions: { [origin]: { url: "http://127.0.0.1:7070" }, "eu-west-1": { url: "http://127.0.0.1:7071" } },
      crr: { enabled: true, peers: ["eu-west-1"] },
      auth: { peerSecret: "0123456789abcdef-bootstrap-secret" },
      archive: {
        s3: {
          bucket: s3.bucket,
          endpoint: s3.endpoint,
          forcePathStyle: true,
          region: "us-east-1",
          prefix: "crr",
        },
      },
    };
    const config = parseConfig(raw, "test", dir, {});
    const file = path.join(dir, "us-east-1.yaml");
    fs.writeFileSync(file, YAML.stringify(raw));
    // The region's own stream of an earlier incarnation (its disk lost), with a hole at 7..12.
    const { incarnation, image } = await walImage();
    const objects = bucket(incarnation);
    const remote = s3ArchiveStore({
      s3: config.archive.s3!,
      attempts: 1,
      requestTimeoutMs: 5000,
      runtime: realRuntime,
      onRequest: () => undefined,
    });
    opened.push({ close: async () => remote.close() });
    const { signer } = credentialsOf(config);
    for (const [first, last] of [
      [1, 6],
      [13, 18],
    ] as const) {
      const o = objects.put(image, first, last, false, signer);
      await remote.put(o.key, o.body, o.seal);
    }
    const said: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((x) => (said.push(String(x)), true));
    try {
      expect(await runBootstrap(["--config", file, "--from", "s3"])).toBe(0);
    } finally {
      write.mockRestore();
    }
    expect(said.join("")).toContain(
      `cut short at LSN 6 of 18: ${origin}/${incarnation} (the archive holds no object with LSNs 7..12); 6 records of the 1 intact objects past it restored; the peers give`,
    );
    const store = openStore(path.join(dir, "data", "store.sqlite"));
    expect(JSON.parse((await store.getMeta("bootstrap_archive_cut"))!)).toEqual([
      {
        origin,
        incarnation,
        lsn: 6,
        archivedLsn: 18,
        why: "the archive holds no object with LSNs 7..12",
        beyond: { records: 6, objects: 1, damaged: [] },
      },
    ]);
    expect(await lsnsIn(store, incarnation)).toEqual([1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18]);
  });
});
