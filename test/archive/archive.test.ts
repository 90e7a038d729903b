/**
 * The S3 archive against a real S3-protocol server (s3rver on loopback) and real nodes:
 * - what the archive holds replays to exactly what clients were told (the ledger of
 *   acknowledged appends), LSN by LSN, with nothing missing up to the verified LSN;
 * - WAL retention removes a local segment only once its archived copy was read back and
 *   verified: with the bucket unreachable, segments every peer acknowledged stay, the
 *   failure shows in status and metrics at once, and archiving resumes when it is back;
 * - S3 as a transport (`regions.X.via: s3`): with the HTTP link between two regions cut,
 *   each still gets every record the other acknowledged, through the other's archive;
 * - `crr restore` rebuilds from the archive alone a store whose digest equals the live
 *   regions', and as of a time exactly the records acknowledged before it; an archive with
 *   a missing object is refused, naming the LSNs, and no file is written.
 */
import fs from "node:fs";
import path from "node:path";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { decodeFrames, scanSegment, segmentHeaderBytes, type WalRecord } from "../../src/wal/index.js";
import { formatHlc } from "../../src/clock/index.js";
import { Cluster, append, status, testProxy, waitConverged, type TestNode } from "../support/cluster.js";
import { s3Credentials, startS3, type TestS3 } from "../support/s3.js";
import { runCrr } from "../support/cli.js";
import { frameBounds } from "../support/segments.js";
import { tempDir, waitFor } from "../support/tmp.js";

const closing: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c();
});

interface Ack {
  key: string;
  outcome: string;
  lsn: number;
  hlc: string;
  origin: string;
  body: unknown;
}

async function appendLedger(
  node: TestNode,
  prefix: string,
  count: number,
  tenant = "tenant-a",
): Promise<Ack[]> {
  const acks: Ack[] = [];
  for (let i = 0; i < count; i++) {
    const body = { i, pad: "p".repeat(40) };
    const r = await append(node, { key: `${prefix}-${i}`, tenant, outcome: "accepted", body });
    expect(r.status).toBe(200);
    acks.push({ ...(r.body as unknown as Ack), body });
  }
  return acks;
}

interface ArchiveView {
  verifiedLsn: number;
  lagSeconds: number;
  lastError?: string;
  objects: number;
}

async function archiveOf(node: TestNode): Promise<ArchiveView> {
  return ((await status(node)) as unknown as { archive: ArchiveView }).archive;
}

async function metric(node: TestNode, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name) && /^[a-z_]+(\{[^}]*\})? /.test(line)) sum += Number(line.split(" ").at(-1));
  return sum;
}

/** Every record the archive holds for one incarnation, by LSN (overlapping objects must agree). */
async function archivedRecords(s3: TestS3, prefix: string): Promise<Map<number, WalRecord>> {
  const byLsn = new Map<number, WalRecord>();
  for (const key of await s3.keys(prefix)) {
    const bytes = await s3.object(key);
    const scan = scanSegment(bytes, { file: key, last: false });
    const records = decodeFrames(bytes.subarray(segmentHeaderBytes), {
      source: key,
      firstLsn: scan.header.firstLsn,
    });
    for (const r of records) {
      const seen = byLsn.get(r.lsn);
      if (seen) expect(r, `LSN ${r.lsn} differs between archived objects`).toEqual(seen);
      byLsn.set(r.lsn, r);
    }
  }
  return byLsn;
}

/** The `archive.s3` block of every test: one bucket on the test's s3rver, prefix "crr". */
function bucketAt(endpoint: string, bucket: string) {
  return { bucket, endpoint, forcePathStyle: true, region: "us-east-1", prefix: "crr" };
}

async function archivedCluster(s3Endpoint: string, bucket: string) {
  return Cluster.start({
    regions: ["us-east-1", "eu-west-1"],
    env: s3Credentials,
    common: {
      wal: { segmentBytesMax: 4096, retentionIntervalMs: 200 },
      archive: {
        s3: bucketAt(s3Endpoint, bucket),
        intervalMs: 200,
        requestAttempts: 2,
      },
    },
  });
}

describe("S3 archive", () => {
  it("archives sealed segments and the durable tail, verified; the archive replays to what clients were told; retention follows it", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const cluster = await archivedCluster(s3.endpoint, s3.bucket);
    const a = cluster.node("us-east-1");
    const acks = await appendLedger(a, "k", 120);
    await waitConverged([a, cluster.node("eu-west-1")]);
    const durable = (await status(a)).wal.durableLsn;
    await waitFor(
      async () => (await archiveOf(a)).verifiedLsn >= durable,
      "the archive to verify every durable LSN",
    );
    const { incarnation } = await status(a);
    const archived = await archivedRecords(s3, `crr/us-east-1/${incarnation}/`);
    expect([...archived.keys()].sort((x, y) => x - y)).toEqual(
      Array.from({ length: durable }, (_, i) => i + 1),
    );
    for (const ack of acks) {
      const r = archived.get(ack.lsn);
      expect(r, `acknowledged ${ack.key} (LSN ${ack.lsn}) is not in the archive`).toBeDefined();
      expect({
        key: r!.key,
        outcome: r!.outcome,
        hlc: formatHlc(r!.hlc),
        body: JSON.parse(r!.bodyJson!),
      }).toEqual({
        key: ack.key,
        outcome: ack.outcome,
        hlc: ack.hlc,
        body: ack.body,
      });
    }
    // Retention removed the segments both the peer and the archive hold.
    await waitFor(async () => (await status(a)).wal.firstLsn > 1, "retention to remove archived segments");
    expect(await metric(a, "crr_archive_lag_seconds")).toBe(0);
    expect(await metric(a, 'crr_archive_requests_total{op="put",outcome="ok"}')).toBeGreaterThan(0);
    await cluster.stop();
  });

  it("never removes a segment whose archived copy is not verified: with the bucket unreachable segments stay, the failure shows, and archiving resumes", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const proxy = await testProxy({ targetPort: s3.port });
    const cluster = await archivedCluster(proxy.url, s3.bucket);
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await appendLedger(a, "before", 30);
    await waitConverged([a, b]);
    const before = (await status(a)).wal.durableLsn;
    await waitFor(async () => (await archiveOf(a)).verifiedLsn >= before, "the first records to be archived");
    proxy.setTarget(0); // the bucket is down
    const acks = await appendLedger(a, "during", 120);
    await waitConverged([a, b]); // the peer acknowledged everything
    await waitFor(async () => (await archiveOf(a)).lastError, "the failure to show in status");
    const runs = await metric(a, "crr_retention_runs_total");
    await waitFor(
      async () => (await metric(a, "crr_retention_runs_total")) >= runs + 3,
      "three retention passes",
    );
    const s = await status(a);
    const archive = await archiveOf(a);
    expect(archive.verifiedLsn).toBeLessThan(s.wal.durableLsn);
    // Nothing above the verified LSN left the WAL (the peer's acknowledgements alone would allow it).
    expect(s.wal.firstLsn).toBeLessThanOrEqual(archive.verifiedLsn + 1);
    expect(s.wal.segments).toBeGreaterThan(3);
    expect(await metric(a, "crr_archive_errors_total")).toBeGreaterThan(0);
    expect(await metric(a, "crr_archive_lag_seconds")).toBeGreaterThan(0);
    proxy.setTarget(s3.port); // back
    const durable = s.wal.durableLsn;
    // The error clears when a pass ends with nothing left behind (a pass may still be writing
    // its cursor, fsynced, when the verified LSN already shows).
    await waitFor(
      async () => {
        const now = await archiveOf(a);
        return now.verifiedLsn >= durable && now.lastError === undefined;
      },
      "archiving to resume and its error to clear",
      60_000,
    );
    const archived = await archivedRecords(s3, `crr/us-east-1/${s.incarnation}/`);
    for (const ack of acks) expect(archived.get(ack.lsn)?.key, `LSN ${ack.lsn}`).toBe(ack.key);
    await waitFor(async () => (await status(a)).wal.firstLsn > archive.verifiedLsn + 1, "retention to go on");
    await cluster.stop();
  });

  it("crr restore: everything archived has the live digest; as of a time, exactly what was acknowledged before it; a hole is refused", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const cluster = await archivedCluster(s3.endpoint, s3.bucket);
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const early = [...(await appendLedger(a, "early-a", 40)), ...(await appendLedger(b, "early-b", 40))];
    await appendLedger(b, "early-a", 5); // conflicts: both regions decided these keys
    await waitConverged([a, b]);
    await new Promise((r) => setTimeout(r, 50)); // a millisecond boundary between the phases
    const t = Date.now();
    await new Promise((r) => setTimeout(r, 50));
    const late = [...(await appendLedger(a, "late-a", 30)), ...(await appendLedger(b, "late-b", 30))];
    const live = await waitConverged([a, b]);
    for (const n of [a, b]) {
      const durable = (await status(n)).wal.durableLsn;
      await waitFor(async () => (await archiveOf(n)).verifiedLsn >= durable, `${n.name}'s archive`);
    }
    const out = tempDir("crr-restore-");
    const all = await runCrr(["restore", "--config", a.configFile, "--out", path.join(out, "all.sqlite")], {
      env: { ...s3Credentials, ...cluster.secrets() },
    });
    expect(all.stderr).not.toMatch(/error/i);
    expect(all.code).toBe(0);
    expect(all.stdout).toContain(`digest ${live[0]!.store.digest}`);
    const asOf = await runCrr(
      ["restore", "--config", a.configFile, "--to", String(t), "--out", path.join(out, "t.sqlite")],
      { env: { ...s3Credentials, ...cluster.secrets() } },
    );
    expect(asOf.code).toBe(0);
    const db = new Database(path.join(out, "t.sqlite"), { readonly: true });
    const keys = new Set((db.prepare("SELECT key FROM records").pluck().all() as string[]).map(String));
    for (const ack of early) {
      expect(keys.has(ack.key), `${ack.key}, acknowledged before the time, is missing`).toBe(true);
      // The winner the live regions agree on (early keys were all decided before the time).
      const winner = (await (await fetch(`${a.url}/v1/records/${ack.key}`)).json()) as {
        origin: string;
        lsn: number;
      };
      const row = db.prepare("SELECT origin, lsn FROM records WHERE key = ?").get(ack.key) as {
        origin: string;
        lsn: number;
      };
      expect(row).toEqual({ origin: winner.origin, lsn: winner.lsn });
    }
    for (const ack of late) expect(keys.has(ack.key), `${ack.key} came after the time`).toBe(false);
    db.close();
    // An object gone from the archive: refused, named, and no file written.
    // Delete every object that starts at one LSN in the middle (a sealed segment and the
    // earlier copies of its durable prefix): nothing else covers those LSNs.
    const objects = await s3.keys(`crr/us-east-1/${live[0]!.incarnation}/`);
    const first = (k: string) => /\/(\d{20})-/.exec(k)![1];
    const middle = first(objects[Math.floor(objects.length / 2)]!);
    const gone = objects.filter((k) => first(k) === middle);
    expect(gone.length).toBeLessThan(objects.length);
    for (const Key of gone) await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key }));
    const holed = await runCrr(
      ["restore", "--config", a.configFile, "--out", path.join(out, "holed.sqlite")],
      {
        env: { ...s3Credentials, ...cluster.secrets() },
      },
    );
    expect(holed.code).not.toBe(0);
    expect(holed.stderr).toMatch(/holds no object with LSNs \d+\.\.\d+ of us-east-1/);
    expect(fs.existsSync(path.join(out, "holed.sqlite"))).toBe(false);
    await cluster.stop();
  });

  it("S3 as a transport: with the HTTP link cut both ways, each region gets every record the other acknowledged", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const links = new Map<string, Awaited<ReturnType<typeof testProxy>>>();
    for (const l of ["us-east-1>eu-west-1", "eu-west-1>us-east-1"])
      links.set(l, await testProxy({ targetPort: 0 }));
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      env: s3Credentials,
      route: (from, to) => links.get(`${from}>${to}`),
      common: {
        regions: { "us-east-1": { via: "s3" }, "eu-west-1": { via: "s3" } },
        wal: { segmentBytesMax: 4096 },
        archive: {
          s3: bucketAt(s3.endpoint, s3.bucket),
          intervalMs: 200,
          pollMs: 200,
        },
      },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    for (const link of links.values()) link.setTarget(0); // the HTTP link is down, both ways
    const acks = [...(await appendLedger(a, "via-a", 60)), ...(await appendLedger(b, "via-b", 60))];
    const [sa, sb] = [await status(a), await status(b)];
    await waitFor(
      async () =>
        ((await status(b)).watermarks["us-east-1"] ?? 0) >= sa.wal.durableLsn &&
        ((await status(a)).watermarks["eu-west-1"] ?? 0) >= sb.wal.durableLsn,
      "each region to apply the other's records from its archive",
      60_000,
    );
    for (const ack of acks) {
      for (const n of [a, b]) {
        const r = (await (await fetch(`${n.url}/v1/records/${ack.key}`)).json()) as {
          origin: string;
          lsn: number;
        };
        expect({ at: n.name, key: ack.key, origin: r.origin, lsn: r.lsn }).toEqual({
          at: n.name,
          key: ack.key,
          origin: ack.origin,
          lsn: ack.lsn,
        });
      }
    }
    // Nothing went over HTTP: the shippers failed all along.
    const following = ((await status(b)) as unknown as { following: Array<{ objects: number }> }).following;
    expect(following[0]!.objects).toBeGreaterThan(0);
    expect((await status(a)).peers[0]!.ackedLsn).toBe(0);
    // What it cost: every request counted, shown by crr status.
    const cost = ((await status(b)) as unknown as { archive: { s3: { requests: Record<string, number> } } })
      .archive.s3;
    expect(cost.requests.put).toBeGreaterThan(0);
    expect(cost.requests.list).toBeGreaterThan(0);
    const shown = await runCrr(["status", "--url", b.url]);
    expect(shown.stdout).toMatch(/S3 +\d+ PUT, \d+ GET, \d+ LIST since start/);
    expect(shown.stdout).toMatch(/following us-east-1's archive: \d+ objects/);
    await cluster.stop();
  });

  it("a region added to a running mesh bootstraps from the archive: every acknowledged record, the peers copying only what the archive lacks", async () => {
    await addRegion("archive.bootstrap");
  });

  it("crr bootstrap seeds a stopped new region from a peer, then from S3; its node then copies nothing again", async () => {
    await addRegion("crr bootstrap");
  });

  it("recovery takes LSNs its WAL lost from the archive instead of issuing them again (no store, no cursor, no peer)", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const cluster = await Cluster.start({
      regions: ["us-east-1"],
      env: s3Credentials,
      common: {
        archive: {
          s3: bucketAt(s3.endpoint, s3.bucket),
          intervalMs: 200,
        },
      },
    });
    const a = cluster.node("us-east-1");
    const acks = await appendLedger(a, "k", 30);
    const { incarnation } = await status(a);
    await waitFor(async () => (await archiveOf(a)).verifiedLsn >= 30, "the archive to verify every LSN");
    await cluster.stopNode("us-east-1", "SIGKILL");
    // The data directory as an old snapshot leaves it: the WAL's last 10 records, the store
    // and the archiver's cursor gone; only the archive still holds LSNs 21..30.
    const walDir = path.join(a.dataDir, "wal");
    const segment = path.join(
      walDir,
      fs
        .readdirSync(walDir)
        .filter((f) => f.endsWith(".wal"))
        .sort()
        .at(-1)!,
    );
    fs.truncateSync(segment, frameBounds(fs.readFileSync(segment)).ends[19]!);
    for (const f of fs
      .readdirSync(a.dataDir)
      .filter((f) => f.startsWith("store.sqlite") || f === "archive.json"))
      fs.rmSync(path.join(a.dataDir, f));
    await cluster.startNode("us-east-1", ["--start-alone"]);
    expect((await status(a)).incarnation).toBe(incarnation);
    for (const ack of acks) {
      const r = (await (await fetch(`${a.url}/v1/records/${ack.key}`)).json()) as {
        lsn: number;
        hlc: string;
      };
      expect({ key: ack.key, lsn: r.lsn, hlc: r.hlc }).toEqual({ key: ack.key, lsn: ack.lsn, hlc: ack.hlc });
    }
    const next = await append(a, { key: "after", tenant: "tenant-a", outcome: "accepted" });
    expect((next.body as { lsn: number }).lsn).toBe(31); // not LSN 21 again
    await cluster.stop();
  });

  it("a region that lost its disk gets back from the archive a tenant it sends nowhere; while the archive cannot be read its start is refused, not bootstrapped from the peers alone", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      env: s3Credentials,
      crr: () => ({
        enabled: true,
        replicationMode: "selective",
        policies: [{ tenantID: "tenant-shared", targetRegions: ["us-east-1", "eu-west-1"] }],
      }),
      common: {
        archive: { s3: bucketAt(s3.endpoint, s3.bucket), intervalMs: 200, bootstrap: true },
        recovery: { bootstrapWaitMs: 3000 },
      },
    });
    const a = cluster.node("us-east-1");
    const acks = [
      ...(await appendLedger(a, "local", 20, "tenant-local")), // sent nowhere: only us-east-1 and its archive
      ...(await appendLedger(a, "shared", 20, "tenant-shared")),
    ];
    await waitFor(async () => (await archiveOf(a)).verifiedLsn >= 40, "the archive to verify every LSN");
    await cluster.stopNode("us-east-1", "SIGKILL");
    fs.rmSync(a.dataDir, { recursive: true, force: true }); // the disk is lost
    const env = { ...s3Credentials, ...cluster.secrets() };
    const unreadable = path.join(path.dirname(a.configFile), "us-east-1-archive-down.yaml");
    fs.writeFileSync(
      unreadable,
      fs.readFileSync(a.configFile, "utf8").replaceAll(s3.endpoint, "http://127.0.0.1:1"),
    );
    const refused = await runCrr(["serve", "--config", unreadable], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/could not restore its S3 archive within 3000 ms/);
    await cluster.startNode("us-east-1");
    for (const ack of acks) {
      const r = (await (await fetch(`${a.url}/v1/records/${ack.key}`)).json()) as {
        lsn: number;
        hlc: string;
      };
      expect({ key: ack.key, lsn: r.lsn, hlc: r.hlc }).toEqual({ key: ack.key, lsn: ack.lsn, hlc: ack.hlc });
    }
    // Not decided again: the region answers with what it told the client the first time.
    const again = await append(a, { key: "local-0", tenant: "tenant-local", outcome: "rejected" });
    expect(again.body).toMatchObject({ duplicate: true, outcome: "accepted", lsn: acks[0]!.lsn });
    await cluster.stop();
  });

  it("crr rebuild takes a peer's records from the archive while that peer is down", async () => {
    const s3 = await startS3();
    closing.push(() => s3.close());
    const cluster = await archivedCluster(s3.endpoint, s3.bucket);
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await appendLedger(a, "a", 40);
    const fromB = await appendLedger(b, "b", 60);
    await waitConverged([a, b]);
    for (const n of [a, b]) {
      const durable = (await status(n)).wal.durableLsn;
      await waitFor(async () => (await archiveOf(n)).verifiedLsn >= durable, `${n.name}'s archive`);
    }
    await cluster.stopNode("eu-west-1"); // the peer is down for the whole rebuild
    await cluster.stopNode("us-east-1");
    // An archive that cannot be read fails the rebuild: it may hold what no peer does.
    const unreadable = path.join(path.dirname(a.configFile), "us-east-1-archive-down.yaml");
    fs.writeFileSync(
      unreadable,
      fs.readFileSync(a.configFile, "utf8").replaceAll(s3.endpoint, "http://127.0.0.1:1"),
    );
    const failed = await runCrr(["rebuild", "--config", unreadable], {
      env: { ...s3Credentials, ...cluster.secrets() },
    });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("the archive (archive.s3) could not be read");
    expect(failed.stdout).not.toContain("copied");
    const r = await runCrr(["rebuild", "--config", a.configFile], {
      env: { ...s3Credentials, ...cluster.secrets() },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/the archive: \d+ records/);
    expect(r.stdout).toContain("eu-west-1: unavailable");
    const db = new Database(path.join(a.dataDir, "store.sqlite"), { readonly: true });
    try {
      for (const ack of fromB) {
        const row = db.prepare("SELECT origin, lsn FROM records WHERE key = ?").get(ack.key) as
          { origin: string; lsn: number } | undefined;
        expect({ key: ack.key, ...row }).toEqual({ key: ack.key, origin: "eu-west-1", lsn: ack.lsn });
      }
    } finally {
      db.close();
    }
    await cluster.stop();
  });
});

/**
 * Three regions archiving to one bucket; the third is stopped and wiped at once (a region
 * added to a running two-region mesh), the other two take acknowledged appends and archive
 * them, then the third starts empty, seeded by `archive.bootstrap` or by `crr bootstrap`.
 * It must hold every acknowledged record, and its bootstrap copy none again.
 */
async function addRegion(how: "archive.bootstrap" | "crr bootstrap"): Promise<void> {
  const s3 = await startS3();
  closing.push(() => s3.close());
  const archive = {
    s3: bucketAt(s3.endpoint, s3.bucket),
    intervalMs: 200,
  };
  const cluster = await Cluster.start({
    regions: [
      "us-east-1",
      "eu-west-1",
      { name: "ap-south-1", config: { archive: { ...archive, bootstrap: how === "archive.bootstrap" } } },
    ],
    env: s3Credentials,
    common: { wal: { segmentBytesMax: 4096 }, archive },
  });
  const [a, b, c] = ["us-east-1", "eu-west-1", "ap-south-1"].map((n) => cluster.node(n)) as [
    TestNode,
    TestNode,
    TestNode,
  ];
  await cluster.stopNode("ap-south-1");
  fs.rmSync(c.dataDir, { recursive: true, force: true }); // a new region: nothing of its own
  const acks = [...(await appendLedger(a, "from-a", 80)), ...(await appendLedger(b, "from-b", 80))];
  for (const n of [a, b]) {
    const durable = (await status(n)).wal.durableLsn;
    await waitFor(
      async () => (await archiveOf(n)).verifiedLsn >= durable,
      `${n.name}'s archive to verify everything`,
    );
  }
  const env = { ...s3Credentials, ...cluster.secrets() };
  if (how === "crr bootstrap") {
    const fromPeer = await runCrr(["bootstrap", "--config", c.configFile, "--from", "eu-west-1"], { env });
    expect(fromPeer.stderr).not.toMatch(/error/i);
    expect(fromPeer.stdout).toContain("seeded ap-south-1 from eu-west-1: 80 records in 1 streams");
    const fromS3 = await runCrr(["bootstrap", "--config", c.configFile, "--from", "s3"], { env });
    expect(fromS3.code).toBe(0);
    expect(fromS3.stdout).toContain("seeded ap-south-1 from the archive");
  }
  await cluster.startNode("ap-south-1");
  await waitConverged([a, b, c]);
  for (const ack of acks) {
    const r = (await (await fetch(`${c.url}/v1/records/${ack.key}`)).json()) as {
      origin: string;
      lsn: number;
      outcome: string;
    };
    expect({ key: ack.key, origin: r.origin, lsn: r.lsn, outcome: r.outcome }).toEqual({
      key: ack.key,
      origin: ack.origin,
      lsn: ack.lsn,
      outcome: ack.outcome,
    });
  }
  // The seed gave every record; the peers' copy (streams after the seeded LSNs, winners the
  // seed does not cover) gave none again.
  const entries = fs
    .readdirSync(path.join(c.dataDir, "audit"))
    .flatMap((f) => fs.readFileSync(path.join(c.dataDir, "audit", f), "utf8").split("\n"))
    .filter((l) => l.trim() !== "")
    .map(
      (l) =>
        JSON.parse(l) as { kind: string; copied?: number; archive?: { records: number; error?: string } },
    );
  const boot = entries.find((e) => e.kind === "bootstrap");
  expect(boot?.copied).toBe(0);
  if (how === "archive.bootstrap") {
    expect(boot?.archive?.error).toBeUndefined();
    expect(boot?.archive?.records).toBe(acks.length);
  }
  await cluster.stop();
  if (how === "crr bootstrap") {
    // A region with state of its own is not seeded again.
    const again = await runCrr(["bootstrap", "--config", c.configFile, "--from", "s3"], { env });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("holds state of its own");
  }
}
