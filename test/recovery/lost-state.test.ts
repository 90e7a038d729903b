/**
 * A region that lost part of its state (its store, its WAL, a start that never finished) or
 * whose data directory was copied: what it serves is checked against the client ledger and
 * what the mesh decided, never only against what it says of itself. Real processes. Each
 * case is one an outside review showed losing or re-deciding acknowledged records.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { describe, expect, it } from "vitest";
import { crrBin, repoRoot, runCrr } from "../support/cli.js";
import {
  Cluster,
  api,
  status,
  testProxy,
  testSecret,
  waitConverged,
  type TestNode,
} from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { tempDir, waitFor } from "../support/tmp.js";
import { flipBitIn, newestSegment } from "../support/wal-bytes.js";

const env = { CRR_PEER_SECRET: testSecret };
const fast = { health: { probeIntervalMs: 300 } };

function storeFiles(dataDir: string): string[] {
  return fs.readdirSync(dataDir).filter((n) => n.startsWith("store.sqlite"));
}

/** A config like `node`'s with another data directory (a second host, a replacement). */
function configWithDataDir(node: TestNode, dataDir: string, name: string): string {
  const cfg = YAML.parse(fs.readFileSync(node.configFile, "utf8")) as Record<string, unknown>;
  cfg.dataDir = dataDir;
  const file = path.join(path.dirname(dataDir), `${name}.yaml`);
  fs.writeFileSync(file, YAML.stringify(cfg));
  return file;
}

/** Every key the ledger acknowledged at `node` answers again as a duplicate with the same outcome and LSN. */
async function expectDecided(ledger: Ledger, node: TestNode, keys = ledger.acked): Promise<void> {
  for (const acked of keys) {
    const again = await api(`${node.url}/v1/records/${acked.key}`);
    expect(again.body, acked.key).toMatchObject({
      outcome: acked.outcome,
      lsn: acked.lsn,
      origin: acked.origin,
    });
  }
}

describe("a region that lost part of its state", () => {
  it("a copy of a running region's data directory (same incarnation) is refused, not served beside it", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"], common: fast });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "old", 20);
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1");
    const copy = path.join(tempDir("crr-copy-"), "us-east-1");
    fs.cpSync(a.dataDir, copy, { recursive: true }); // a backup, or a copy onto a second host
    await cluster.startNode("us-east-1");
    await ledger.appendMany(a, "new", 20);
    await waitConverged([a, b]);
    const refused = await runCrr(["serve", "--config", configWithDataDir(a, copy, "copy")], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /another node is serving region us-east-1 \(incarnation [0-9a-f]{32}, boot/,
    );
    await ledger.appendMany(a, "after", 10);
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
  });

  it("a store lost with its WAL kept copies what the mesh decided before it answers", async () => {
    const fromWest = await testProxy({ targetPort: 0 });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      route: (from, to) => (from === "eu-west-1" && to === "us-east-1" ? fromWest : undefined),
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "east", 10);
    await ledger.appendMany(b, "west", 10);
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1");
    for (const f of storeFiles(a.dataDir)) fs.rmSync(path.join(a.dataDir, f));
    fromWest.setMode("blackhole"); // eu-west-1 cannot ship to it: only its own bootstrap brings the mesh's records
    await cluster.startNode("us-east-1");
    expect(cluster.logs("us-east-1")).toMatch(/bootstrapped from peers/);
    await expectDecided(ledger, a);
    const again = await ledger.append(a, { key: "west-2", tenant: "tenant-a", outcome: "rejected" });
    expect(again.body).toMatchObject({ duplicate: true, origin: "eu-west-1" });
    fromWest.setMode("forward");
  });

  it("a replacement refused while the old node lived bootstraps when started again", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"], common: fast });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "decided", 10);
    await waitConverged([a, b]);
    const fresh = path.join(tempDir("crr-replacement-"), "us-east-1");
    const freshConfig = configWithDataDir(a, fresh, "replacement");
    const refused = await runCrr(["serve", "--config", freshConfig], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/another node is serving region us-east-1/);
    await cluster.stopNode("us-east-1", "SIGKILL"); // the old host is gone for good
    a.configFile = freshConfig;
    a.dataDir = fresh;
    await cluster.startNode("us-east-1");
    expect(cluster.logs("us-east-1")).toMatch(/bootstrapped from peers/);
    await expectDecided(ledger, a);
  });

  it("killed while its first start waited for the peers, it bootstraps when started again", async () => {
    const toWest = await testProxy({ targetPort: 0 });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      route: (from, to) => (from === "us-east-1" && to === "eu-west-1" ? toWest : undefined),
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "decided", 10);
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1", "SIGKILL");
    fs.rmSync(a.dataDir, { recursive: true }); // the disk is lost
    toWest.setMode("blackhole"); // and the peer unreachable for a while
    const first = spawn(process.execPath, [crrBin, "serve", "--config", a.configFile], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: "ignore",
    });
    const exited = new Promise((r) => first.on("exit", r));
    await waitFor(async () => {
      const url = fs.existsSync(path.join(a.dataDir, "node.json"))
        ? (JSON.parse(fs.readFileSync(path.join(a.dataDir, "node.json"), "utf8")) as { url: string }).url
        : undefined;
      const st = url ? await api(`${url}/v1/status`).catch(() => undefined) : undefined;
      return (
        (st?.body as { startup?: { state?: string } } | undefined)?.startup?.state === "checking" || undefined
      );
    }, "the first start to wait for its peers");
    first.kill("SIGKILL");
    await exited;
    toWest.setMode("forward");
    await cluster.startNode("us-east-1");
    expect(cluster.logs("us-east-1")).toMatch(/bootstrapped from peers/);
    await expectDecided(ledger, a);
  });

  it("two regions that lost their stores, their WALs trimmed by retention, start together: each answers the other while it waits, and what nobody holds is audited as lost", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { ...fast, wal: { segmentBytesMax: 4096, retentionIntervalMs: 100 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "east", 120, "tenant-a", 1);
    await ledger.appendMany(b, "west", 120, "tenant-a", 1);
    await waitConverged([a, b]);
    await waitFor(
      async () => ((await status(a)).wal.firstLsn > 10 && (await status(b)).wal.firstLsn > 10) || undefined,
      "retention to drop the oldest segments of both WALs",
    );
    await Promise.all([cluster.stopNode("us-east-1"), cluster.stopNode("eu-west-1")]);
    const walFirst = (n: TestNode) =>
      Math.min(
        ...fs
          .readdirSync(path.join(n.dataDir, "wal"))
          .filter((f) => f.endsWith(".wal"))
          .map((f) => Number(f.slice(0, 20))),
      );
    const first = { "us-east-1": walFirst(a), "eu-west-1": walFirst(b) };
    for (const n of [a, b]) for (const f of storeFiles(n.dataDir)) fs.rmSync(path.join(n.dataDir, f));
    // us-east-1 alone first: it serves its peers and waits for eu-west-1, which may hold its
    // lost records; meanwhile it does not answer reads from a store that lacks them.
    const startingA = cluster.startNode("us-east-1");
    const waiting = await waitFor(async () => {
      const st = await api<{ startup?: { state: string; detail: string } }>(`${a.url}/v1/status`).catch(
        () => undefined,
      );
      return st?.body.startup?.detail.includes("may be held by eu-west-1") ? st.body.startup : undefined;
    }, "us-east-1 to wait for eu-west-1");
    expect(waiting.state).toBe("checking");
    const read = await api<{ code: string }>(`${a.url}/v1/records/${ledger.acked[0]!.key}`);
    expect(read.status).toBe(503);
    expect(read.body.code).toBe("catching_up");
    // Then eu-west-1, which needs us-east-1's answer as much: before, each refused while the
    // other did not answer, and neither answered while it refused.
    await Promise.all([startingA, cluster.startNode("eu-west-1")]);
    for (const n of [a, b]) {
      const audit = fs.readFileSync(path.join(n.dataDir, "audit", "audit-000001.log"), "utf8");
      const lastLost = first[n.name as keyof typeof first] - 1;
      expect(audit).toMatch(
        new RegExp(`"kind":"records-lost".*"from":1,"to":${lastLost},"lost":${lastLost}`),
      );
      // What its WAL still held is served again, as acknowledged.
      const kept = ledger.acked.filter((r) => r.origin === n.name && r.lsn > lastLost);
      expect(kept.length).toBeGreaterThan(0);
      await expectDecided(ledger, n, kept);
    }
  });

  it("a WAL directory gone while the store holds its stream is refused; --accept-wal-loss starts a new incarnation, audited, its clock after its own records", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const a = cluster.node("us-east-1");
    const ledger = new Ledger();
    await ledger.appendMany(a, "before", 20);
    const before = (await status(a)).incarnation;
    await cluster.stopNode("eu-west-1"); // no peer to take a clock floor from
    await cluster.stopNode("us-east-1");
    fs.rmSync(path.join(a.dataDir, "wal"), { recursive: true });
    const refused = await runCrr(["serve", "--config", a.configFile], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /the WAL directory .* holds no segment, but the store holds this region's stream/,
    );
    expect(fs.existsSync(path.join(a.dataDir, "wal"))).toBe(false); // nothing was changed
    // Its wall clock is also a minute behind: only its own records in the store can floor it.
    // Its peer is away: after an accepted loss a region copies what its peers hold before it
    // answers (records the lost WAL held that the store lacked), so it starts alone.
    await cluster.startNode("us-east-1", ["--accept-wal-loss", "--start-alone"], {
      CRR_CLOCK_OFFSET_MS: "-60000",
    });
    expect((await status(a)).incarnation).not.toBe(before);
    const audit = fs.readFileSync(path.join(a.dataDir, "audit", "audit-000001.log"), "utf8");
    expect(audit).toMatch(/"kind":"wal-abandoned".*held no segment/);
    await expectDecided(ledger, a);
    const after = await ledger.append(a, { key: "after", tenant: "tenant-a", outcome: "accepted" });
    const newest = ledger.acked.slice(0, -1).reduce((m, x) => (x.hlc > m ? x.hlc : m), "");
    expect((after.body as { hlc: string }).hlc > newest).toBe(true);
  });

  it("--accept-wal-loss keeps every intact record of the old WAL: only the damaged one is lost, audited on both sides", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "old", 30, "tenant-a", 1);
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1");
    const storeCopy = tempDir("crr-store-");
    for (const f of storeFiles(a.dataDir)) fs.copyFileSync(path.join(a.dataDir, f), path.join(storeCopy, f));
    await cluster.stopNode("eu-west-1"); // the peer is away while 31..60 are acknowledged
    await cluster.startNode("us-east-1");
    await ledger.appendMany(a, "new", 30, "tenant-a", 1);
    await cluster.stopNode("us-east-1");
    // The store goes back to LSN 30 (restored from a copy) and the frame of LSN 58 is damaged:
    // nobody holds 58, so recovery refuses.
    for (const f of storeFiles(a.dataDir)) fs.rmSync(path.join(a.dataDir, f));
    for (const f of fs.readdirSync(storeCopy))
      fs.copyFileSync(path.join(storeCopy, f), path.join(a.dataDir, f));
    flipBitIn(newestSegment(path.join(a.dataDir, "wal")), 58);
    const refused = await runCrr(["serve", "--config", a.configFile], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/LSNs 58\.\.58/);
    await cluster.startNode("us-east-1", ["--accept-wal-loss", "--start-alone"]); // its peer is away
    const lost = (x: { lsn: number; key: string }) => x.key.startsWith("new-") && x.lsn === 58;
    await expectDecided(
      ledger,
      a,
      ledger.acked.filter((x) => !lost(x)),
    );
    await cluster.startNode("eu-west-1");
    await waitFor(
      async () => (await api(`${b.url}/v1/records/new-29`)).status === 200 || undefined,
      "the salvaged records to reach eu-west-1",
    );
    await expectDecided(
      ledger,
      b,
      ledger.acked.filter((x) => !lost(x)),
    );
    const auditA = fs.readFileSync(path.join(a.dataDir, "audit", "audit-000001.log"), "utf8");
    const auditB = fs.readFileSync(path.join(b.dataDir, "audit", "audit-000001.log"), "utf8");
    expect(auditA).toMatch(/"kind":"wal-abandoned"/);
    expect(auditA).toMatch(/"kind":"records-lost".*"peer":"eu-west-1","ranges":\[\[58,58\]\]/);
    expect(auditB).toMatch(/"kind":"gap-skipped".*"origin":"us-east-1".*"from":58,"to":58/);
  });
});
