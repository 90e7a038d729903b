/**
 * Divergence detection, repair and rebuild against real `crr serve` processes: a hand-edited
 * store is found and classified, reconcile repairs it with audit entries, the audit chain
 * verifies (and fails when tampered with), records in flight raise no alarm, and a region
 * whose store file was corrupted is rebuilt to the same digest as its peers.
 */
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import {
  Cluster,
  testProxy,
  api,
  appendMany,
  status,
  testSecret,
  waitConverged,
} from "../support/cluster.js";
import { tempDir, waitFor } from "../support/tmp.js";

const env = { CRR_PEER_SECRET: testSecret };
const fast = { divergence: { intervalMs: 300, scrubIntervalMs: 200, scrubBucketsPerTick: 65536 } };

describe("divergence, reconcile, audit and rebuild", () => {
  it("finds a hand-edited and a deleted record, reconciles them from the origin's WAL, and audits every step", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "us-west-2", "eu-west-1"], common: fast });
    const [a, b, c] = ["us-east-1", "us-west-2", "eu-west-1"].map((n) => cluster.node(n)) as [
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
    ];
    await Promise.all([appendMany(a, "east", 200), appendMany(b, "west", 100)]);
    await waitConverged([a, b, c]);
    const clean = await runCrr(["verify", "--config", a.configFile], { env });
    expect(clean.stdout).toMatch(/no divergence/);
    expect(clean.code).toBe(0);

    // Outside the engine: change one outcome and delete one record in us-west-2's store.
    const raw = new Database(path.join(b.dataDir, "store.sqlite"));
    raw.prepare("UPDATE records SET outcome = 'tampered' WHERE key = 'east-7'").run();
    raw.prepare("DELETE FROM records WHERE key = 'east-9'").run();
    raw.close();

    await waitFor(
      async () => (await status(a)).divergence.findings >= 2 || undefined,
      "the detector to find both",
    );
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toMatch(/^crr_divergence_count 2$/m);
    const found = await runCrr(["verify", "--config", b.configFile], { env });
    expect(found.code).toBe(1);
    expect(found.stdout).toMatch(
      /DIVERGENT east-7: us-west-2 has 'tampered' \(us-east-1 LSN \d+\), us-east-1 has '\w+' \(us-east-1 LSN \d+\)/,
    );
    expect(found.stdout).toMatch(/MISSING {3}east-9: us-west-2 lacks '\w+' \(us-east-1 LSN \d+\)/);

    const plan = await runCrr(["reconcile", "--config", a.configFile], { env });
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(
      /east-7: winner '\w+' \(us-east-1 LSN \d+, from the origin's WAL\); would write to us-west-2/,
    );
    expect(plan.stdout).toMatch(/dry run: nothing written/);
    expect((await api(`${b.url}/v1/records/east-7`)).body).toMatchObject({ outcome: "tampered" });

    const applied = await runCrr(["reconcile", "--config", a.configFile, "--apply"], { env });
    expect(applied.stdout).toMatch(/repaired 2 copies/);
    const original = (await api<{ outcome: string }>(`${a.url}/v1/records/east-7`)).body.outcome;
    expect((await api(`${b.url}/v1/records/east-7`)).body).toMatchObject({ outcome: original });
    expect((await api(`${b.url}/v1/records/east-9`)).status).toBe(200);
    const after = await runCrr(["verify", "--config", b.configFile], { env });
    expect(after.stdout).toMatch(/no divergence/);
    expect(after.code).toBe(0);
    const all = await waitConverged([a, b, c]);
    expect(new Set(all.map((s) => s.store.digest)).size).toBe(1);

    // The audit logs: us-east-1 recorded the findings, us-west-2 the repairs; chains verify.
    const auditA = await runCrr(["audit", "verify", path.join(a.dataDir, "audit")]);
    expect(auditA.stdout).toMatch(/ok: \d+ entries in 1 files, chain intact/);
    const auditB = path.join(b.dataDir, "audit", "audit-000001.log");
    const lines = fs
      .readFileSync(auditB, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; key: string });
    expect(
      lines
        .filter((l) => l.kind === "repair")
        .map((l) => l.key)
        .sort(),
    ).toEqual(["east-7", "east-9"]);
    const head = (await status(b)).audit.hash;
    expect((await runCrr(["audit", "verify", auditB, "--expect-head", head])).code).toBe(0);

    const work = tempDir();
    const text = fs.readFileSync(auditB, "utf8");
    const flipped = path.join(work, "flipped.log");
    const i = text.indexOf("east-7");
    fs.writeFileSync(flipped, text.slice(0, i) + "east-8" + text.slice(i + 6));
    const broken = await runCrr(["audit", "verify", flipped]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(
      /BROKEN: .*flipped\.log line \d+ \(entry \d+\): the line does not match its own hash/,
    );
    const removed = path.join(work, "removed.log");
    const all2 = text.trimEnd().split("\n");
    fs.writeFileSync(removed, `${[...all2.slice(0, 1), ...all2.slice(2)].join("\n")}\n`);
    expect((await runCrr(["audit", "verify", removed])).stdout).toMatch(
      /line 2 \(entry 2\): prev does not match/,
    );
    const cut = path.join(work, "cut.log");
    fs.writeFileSync(cut, text.slice(0, -10));
    expect((await runCrr(["audit", "verify", cut])).stdout).toMatch(/truncated/);
    const dropped = path.join(work, "dropped.log");
    fs.writeFileSync(dropped, `${all2.slice(0, -1).join("\n")}\n`);
    expect((await runCrr(["audit", "verify", dropped, "--expect-head", head])).stdout).toMatch(
      /entries were removed from the end/,
    );
  });

  it("reports nothing for records merely in flight to a slowed peer", async () => {
    const proxy = await testProxy({ targetPort: 0 });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      route: (from, to) => (from === "us-east-1" && to === "eu-west-1" ? proxy : undefined),
      common: fast,
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await appendMany(a, "before", 50);
    await waitConverged([a, b]);
    // A slow link: every chunk held 400 ms, so batches lag behind a sustained load.
    proxy.setDelayMs(400);
    const load = appendMany(a, "during", 600, "tenant-a", 4);
    await waitFor(
      async () => (await status(a)).peers[0]!.behindRecords > 20 || undefined,
      "a backlog towards the slow peer",
    );
    for (const node of [a, b]) {
      const r = await runCrr(["verify", "--config", node.configFile], { env });
      expect(r.stdout, node.name).toMatch(/no divergence/);
      expect(r.code, node.name).toBe(0);
    }
    expect((await status(a)).divergence.findings).toBe(0);
    await load;
    proxy.setDelayMs(0);
    await waitConverged([a, b]);
  });

  it("rebuilds a region whose store file was corrupted: same digest as its peers, no record lost", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { ...fast, wal: { segmentBytesMax: 16384, retentionIntervalMs: 200 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await Promise.all([appendMany(a, "east", 300), appendMany(b, "west", 300)]);
    await waitConverged([a, b]);
    // Retention drops segments both sides applied, so eu-west-1's oldest records exist only in stores.
    await waitFor(
      async () => (await status(b)).wal.firstLsn > 1 || undefined,
      "retention to drop old segments",
    );
    await cluster.stopNode("eu-west-1");
    const file = path.join(b.dataDir, "store.sqlite");
    const bytes = fs.readFileSync(file);
    bytes.fill(0x5a, 0, 4096); // the header and first page
    fs.writeFileSync(file, bytes);
    const refused = await runCrr(["serve", "--config", b.configFile], { env });
    expect(refused.code).not.toBe(0);
    // The error names the damaged file and what to run (it used to say only "database disk image is malformed").
    expect(refused.stderr).toContain(file);
    expect(refused.stderr).toMatch(/crr rebuild/);
    const rebuilt = await runCrr(["rebuild", "--config", b.configFile], { env });
    expect(rebuilt.stdout).toMatch(/eu-west-1: replayed its WAL/);
    expect(rebuilt.stdout).toMatch(/copied \d+ versions from us-east-1/);
    expect(rebuilt.code).toBe(0);
    await cluster.startNode("eu-west-1");
    const [sa, sb] = await waitConverged([a, b]);
    expect(sb!.store.records).toBe(600);
    expect(sb!.store.digest).toBe(sa!.store.digest);
    expect((await runCrr(["verify", "--config", b.configFile], { env })).code).toBe(0);
  });
});
