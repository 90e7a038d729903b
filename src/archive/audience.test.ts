/**
 * The audience each WAL incarnation publishes for its archive (which regions its origin's
 * policy sends what), and the two readers of other regions' objects that use it besides the
 * follower: a seed (bootstrap, rebuild) reads another region's stream only when it is sent
 * here whole, and `crr restore` keeps of it only the tenants its audience sends here, or,
 * without a trusted audience, what this region's policy takes, saying so. Whatever this
 * region's config says: configs may disagree (a rolling policy change).
 */
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { afterEach, describe, expect, it, vi } from "vitest";
import { meshAudience, testKeys } from "../../test/support/seal.js";
import { s3Credentials, startS3 } from "../../test/support/s3.js";
import { openStore } from "../../test/support/shipper-peer.js";
import { tempDir } from "../../test/support/tmp.js";
import { runRestore } from "../cli/restore.js";
import { credentialsOf, parseConfig, type NodeConfig } from "../config/index.js";
import { silentLogger } from "../log.js";
import type { KeyRing, Signer } from "../protocol/index.js";
import { realRuntime } from "../runtime/index.js";
import { Wal } from "../wal/index.js";
import { Archiver } from "./archiver.js";
import { audienceOf, sendsEverything, sendsTenant, type Policy } from "./audience.js";
import { seedFromArchive } from "./restore.js";
import { NoSuchObjectError, s3ArchiveStore, type ArchiveStore, type StoredObject } from "./s3-store.js";

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

function bucket(): ArchiveStore {
  const objects = new Map<string, StoredObject>();
  return {
    async put(key, body, seal) {
      objects.set(key, { body: Buffer.from(body), seal });
    },
    async get(key) {
      const o = objects.get(key);
      if (!o) throw new NoSuchObjectError(`no such key ${key}`);
      return { body: Buffer.from(o.body), seal: { ...o.seal } };
    },
    async list(prefix, after, max) {
      return [...objects.keys()]
        .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
        .sort()
        .slice(0, max);
    },
    async folders() {
      return [];
    },
    close() {},
  };
}

const crr = (c: Partial<NodeConfig["crr"]>): NodeConfig["crr"] => ({
  enabled: true,
  replicationMode: "multi-way",
  peers: [],
  targetRegions: [],
  policies: [],
  conflictRule: "first-write-wins",
  regionPriority: [],
  ...c,
});

/** `origin`'s WAL with six records of three tenants, archived with `audience` (none: a build before audiences). */
async function archived(
  store: ArchiveStore,
  origin: string,
  { signer, ring }: { signer: Signer; ring: KeyRing },
  audience: Policy | undefined,
): Promise<Wal> {
  const wal = await Wal.open({ dir: tempDir(), region: origin, segmentBytesMax: 1 << 20 });
  opened.push(wal);
  for (let i = 0; i < 6; i++)
    await wal.append({
      key: `${origin}-k${i}`,
      tenant: ["shared", "kept-from-eu", "no-policy"][i % 3]!,
      outcome: "accepted",
    });
  const archiver = new Archiver({
    wal,
    region: origin,
    store,
    signer,
    keys: ring,
    objectBytesMax: 1 << 24,
    prefix: "crr",
    where: "test",
    intervalMs: 60_000,
    dataDir: tempDir(),
    runtime: realRuntime,
    log: silentLogger(),
    ...(audience ? { audience: { ...audience, origin } } : {}),
  });
  await archiver.pass();
  expect(archiver.status().lastError).toBeUndefined();
  return wal;
}

const selectiveAudience: Policy = {
  ...meshAudience,
  mode: "selective",
  sendsAllTo: [],
  tenants: { shared: ["eu-west-1"], "kept-from-eu": ["ap-south-1"] },
};

describe("archive audience", () => {
  it("says what each policy sends whom: everything to multi-way's peers and two-region's target, per tenant under selective, nothing when off", () => {
    const of = (c: Partial<NodeConfig["crr"]>) => audienceOf({ region: "us-east-1", crr: crr(c) }, 7);
    const multi = of({ peers: ["eu-west-1", "ap-south-1"] });
    expect(multi).toEqual({
      origin: "us-east-1",
      mode: "multi-way",
      sendsAllTo: ["ap-south-1", "eu-west-1"],
      tenants: {},
      atMs: 7,
    });
    expect(of({ replicationMode: "two-region", targetRegions: ["eu-west-1"] }).sendsAllTo).toEqual([
      "eu-west-1",
    ]);
    const selective = of({
      replicationMode: "selective",
      policies: [
        { tenantID: "a", targetRegions: ["us-east-1", "eu-west-1"] },
        { tenantID: "b", targetRegions: ["ap-south-1"] },
      ],
    });
    expect(selective).toMatchObject({
      mode: "selective",
      sendsAllTo: [],
      tenants: { a: ["eu-west-1"], b: ["ap-south-1"] },
    });
    expect(of({ enabled: false })).toMatchObject({ mode: "off", sendsAllTo: [], tenants: {} });

    expect(sendsEverything(multi, "eu-west-1")).toBe(true);
    expect(sendsEverything(selective, "eu-west-1")).toBe(false);
    expect(sendsTenant(multi, "eu-west-1", "anything")).toBe(true);
    expect(sendsTenant(multi, "mars-1", "anything")).toBe(false);
    expect(sendsTenant(selective, "eu-west-1", "a")).toBe(true);
    expect(sendsTenant(selective, "eu-west-1", "b")).toBe(false);
    expect(sendsTenant(selective, "eu-west-1", "no-policy")).toBe(false); // stays in its region
    expect(sendsTenant(selective, "eu-west-1", "constructor")).toBe(false); // not Object.prototype's (review)
  });

  it("a seed (bootstrap, rebuild) takes another region's stream only when its audience sends this region everything; the others are left to the peers and said", async () => {
    const store = bucket();
    const east = await archived(
      store,
      "us-east-1",
      { ...testKeys("us-east-1"), ring: testKeys("us-east-1").keys },
      meshAudience,
    );
    const south = await archived(
      store,
      "ap-south-1",
      { ...testKeys("ap-south-1"), ring: testKeys("ap-south-1").keys },
      selectiveAudience,
    );
    const into = openStore(path.join(tempDir(), "seeded.sqlite")); // closed by its module
    const seed = await seedFromArchive({
      store,
      prefix: "crr",
      origins: ["us-east-1", "eu-west-1", "ap-south-1"],
      into,
      // eu-west-1 still runs multi-way: its own policy takes every tenant.
      policy: { accepts: () => true } as never,
      self: "eu-west-1",
      keys: testKeys("eu-west-1").keys,
      objectBytesMax: 1 << 24,
    });
    expect(seed.streams).toEqual([{ origin: "us-east-1", incarnation: east.incarnation, lsn: 6 }]);
    expect(seed.passedOver).toEqual([
      `ap-south-1/${south.incarnation}: its policy (selective) does not send eu-west-1 every record`,
    ]);
    expect(await into.watermark("ap-south-1", south.incarnation)).toBe(0);
    expect((await into.stats()).records).toBe(6);
  });

  it("a seed takes its own streams and every other it may whatever one audience read fails with; an incarnation that ended before audiences takes its origin's word from its others when they agree", async () => {
    const store = bucket();
    const keysOf = (r: string) => ({ ...testKeys(r), ring: testKeys(r).keys });
    const own = await archived(store, "eu-west-1", keysOf("eu-west-1"), meshAudience);
    const before = await archived(store, "us-east-1", keysOf("us-east-1"), undefined); // a node gone before audiences
    const east = await archived(store, "us-east-1", keysOf("us-east-1"), meshAudience);
    await archived(store, "ap-south-1", keysOf("ap-south-1"), meshAudience);
    const failing: ArchiveStore = {
      ...store,
      get: async (key, max) => {
        if (key.startsWith("crr/ap-south-1/") && key.endsWith(".audience.json"))
          throw new Error("503 SlowDown");
        return store.get(key, max);
      },
    };
    const seed = await seedFromArchive({
      store: failing,
      prefix: "crr",
      origins: ["us-east-1", "eu-west-1", "ap-south-1"],
      into: openStore(path.join(tempDir(), "seeded.sqlite")),
      policy: { accepts: () => true } as never,
      self: "eu-west-1",
      keys: testKeys("eu-west-1").keys,
      objectBytesMax: 1 << 24,
    });
    expect(seed.streams.map((s) => `${s.origin}/${s.incarnation}`).sort()).toEqual(
      [
        `eu-west-1/${own.incarnation}`,
        `us-east-1/${before.incarnation}`,
        `us-east-1/${east.incarnation}`,
      ].sort(),
    );
    expect(seed.passedOver).toEqual([
      expect.stringMatching(/^ap-south-1\/\w+: its audience could not be read \(503 SlowDown\)$/),
    ]);
  });

  it("a seed takes each stream up to a damaged object and says where it cut, instead of failing: another region's stream, and its own (which the node then refuses: startup.test.ts)", async () => {
    const store = bucket();
    const keysOf = (r: string) => ({ ...testKeys(r), ring: testKeys(r).keys });
    const own = await archived(store, "eu-west-1", keysOf("eu-west-1"), meshAudience);
    const east = await archived(store, "us-east-1", keysOf("us-east-1"), meshAudience);
    const south = await archived(store, "ap-south-1", keysOf("ap-south-1"), meshAudience);
    const flipped = (prefix: string): ArchiveStore => ({
      ...store,
      get: async (key, max) => {
        const got = await store.get(key, max);
        if (key.startsWith(prefix) && key.endsWith(".wal")) got.body[got.body.length - 3]! ^= 1;
        return got;
      },
    });
    /** eu-west-1's seed from `from` into a new store (`origins`: every region by default). */
    const seedOf = (
      from: ArchiveStore,
      into = openStore(path.join(tempDir(), "seeded.sqlite")),
      origins = ["us-east-1", "eu-west-1", "ap-south-1"],
    ) =>
      seedFromArchive({
        store: from,
        prefix: "crr",
        origins,
        into,
        policy: { accepts: () => true } as never,
        self: "eu-west-1",
        keys: testKeys("eu-west-1").keys,
        objectBytesMax: 1 << 24,
      });
    const into = openStore(path.join(tempDir(), "seeded.sqlite"));
    const seed = await seedOf(flipped("crr/ap-south-1/"), into);
    expect(seed.streams.map((s) => `${s.origin}/${s.incarnation}/${s.lsn}`).sort()).toEqual(
      [`eu-west-1/${own.incarnation}/6`, `us-east-1/${east.incarnation}/6`].sort(),
    );
    expect(seed.cut).toEqual([
      {
        origin: "ap-south-1",
        incarnation: south.incarnation,
        lsn: 0,
        archivedLsn: 6,
        why: expect.stringMatching(/^archived crr\/ap-south-1\/\w+\/\d+-\d+\.wal refused: /),
      },
    ]);
    expect((await into.stats()).records).toBe(12);
    const ownCut = await seedOf(flipped("crr/eu-west-1/"));
    expect(ownCut.cut.map((c) => [c.origin, c.lsn])).toEqual([["eu-west-1", 0]]);
    // A request that fails is not damage: the seed fails (the node asks again).
    const down: ArchiveStore = {
      ...store,
      get: async (key, max) => {
        if (key.endsWith(".wal")) throw new Error("connect ECONNREFUSED");
        return store.get(key, max);
      },
    };
    await expect(seedOf(down, undefined, ["eu-west-1"])).rejects.toThrow("ECONNREFUSED");
  });

  it("crr restore keeps of another region's stream only the tenants its audience sends here, though this region's config takes every tenant; a stream without an audience is kept by this region's policy, and said", async () => {
    Object.assign(process.env, s3Credentials);
    const s3 = await startS3();
    opened.push({ close: () => s3.close() });
    const dir = tempDir();
    const configOf = (region: string) =>
      parseConfig(
        {
          region,
          dataDir: path.join(dir, region),
          regions: Object.fromEntries(
            ["us-east-1", "eu-west-1", "ap-south-1"].map((r, i) => [
              r,
              { url: `http://127.0.0.1:${7070 + i}` },
            ]),
          ),
          crr: { enabled: true, peers: ["us-east-1", "eu-west-1", "ap-south-1"].filter((r) => r !== region) },
          auth: { peerSecret: "0123456789abcdef-restore-secret" },
          archive: {
            s3: {
              bucket: s3.bucket,
              endpoint: s3.endpoint,
              forcePathStyle: true,
              region: "us-east-1",
              prefix: "crr",
            },
          },
        },
        "test",
        dir,
        {},
      );
    const store = s3ArchiveStore({
      s3: configOf("eu-west-1").archive.s3!,
      attempts: 1,
      requestTimeoutMs: 5000,
      runtime: realRuntime,
      onRequest: () => undefined,
    });
    opened.push({ close: async () => store.close() });
    const east = await archived(store, "us-east-1", credentialsOf(configOf("us-east-1")), selectiveAudience);
    // ap-south-1 runs a build from before audiences: it publishes none.
    await archived(store, "ap-south-1", credentialsOf(configOf("ap-south-1")), undefined);
    const file = path.join(dir, "eu-west-1.yaml");
    const eu = configOf("eu-west-1");
    fs.writeFileSync(
      file,
      YAML.stringify({
        region: eu.region,
        dataDir: eu.dataDir,
        regions: eu.regions,
        crr: { enabled: true, peers: eu.crr.peers },
        auth: { peerSecret: eu.auth.peerSecret },
        archive: { s3: eu.archive.s3 },
      }),
    );
    const out = path.join(dir, "restored.sqlite");
    const said: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((s) => (said.push(String(s)), true));
    try {
      expect(await runRestore(["--config", file, "--out", out])).toBe(0);
    } finally {
      write.mockRestore();
    }
    expect(said.join("")).toMatch(/warning: ap-south-1 \(incarnation \w+\) has published no audience/);
    const restored = openStore(out); // closed by its module
    const held = (await restored.exportPage({ limit: 100 })).versions.map((r) => `${r.key} ${r.tenant}`);
    expect(held.sort()).toEqual([
      "ap-south-1-k0 shared",
      "ap-south-1-k1 kept-from-eu",
      "ap-south-1-k2 no-policy",
      "ap-south-1-k3 shared",
      "ap-south-1-k4 kept-from-eu",
      "ap-south-1-k5 no-policy",
      "us-east-1-k0 shared",
      "us-east-1-k3 shared",
    ]);
    // The rest of us-east-1's stream is a policy's hole, not a gap.
    expect(await restored.watermark("us-east-1", east.incarnation)).toBe(6);
  });
});
