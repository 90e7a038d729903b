/**
 * The node as operators run it: the outside contract (commands, routes, metric names)
 * against real `crr serve` processes, graceful shutdown under load, drain, the data
 * directory lock, config errors and the demo.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import { Cluster, api, append, appendMany, status, testSecret, waitConverged } from "../support/cluster.js";
import { tempDir, waitFor } from "../support/tmp.js";
import { crrBin, repoRoot } from "../support/cli.js";

const contractMetrics = [
  "crr_lag_seconds",
  "crr_wal_fsync_seconds",
  "crr_shipped_records_total",
  "crr_ship_errors_total",
  "crr_applied_records_total",
  "crr_duplicates_total",
  "crr_conflicts_total",
  "crr_divergence_count",
  "crr_region_health_status",
  "crr_watermark_lsn",
];

async function metrics(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/text\/plain/);
  return res.text();
}

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describe("the node's outside contract", () => {
  it("serves every route and metric the design names, with lag that is right when caught up, while a peer is down and after a restart", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2"],
      common: { health: { probeIntervalMs: 200 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    expect((await api(`${a.url}/healthz`)).body).toMatchObject({ status: "ok" });
    expect((await api(`${a.url}/readyz`)).body).toMatchObject({
      ready: true,
      walWritable: true,
      storeOpen: true,
      draining: false,
    });
    await appendMany(a, "m", 50);
    await append(a, { key: "m-0", tenant: "tenant-a", outcome: "rejected" }); // a duplicate
    await waitConverged([a, b]);
    expect((await api(`${a.url}/v1/watermarks`)).body).toMatchObject({
      region: "us-east-1",
      watermarks: { "us-east-1": 50 },
    });
    let text = await metrics(a.url);
    for (const name of contractMetrics) expect(text, name).toContain(`# TYPE ${name} `);
    expect(text).toContain("crr_process_cpu_seconds_total"); // default process metrics
    expect(sample(text, "crr_shipped_records_total", { peer: "us-west-2" })).toBe(50);
    expect(sample(text, "crr_applied_records_total", { origin: "us-east-1" })).toBe(50);
    expect(sample(text, "crr_duplicates_total", { origin: "us-east-1" })).toBe(1);
    expect(sample(text, "crr_watermark_lsn", { origin: "us-east-1" })).toBe(50);
    expect(sample(text, "crr_wal_fsync_seconds_count")).toBeGreaterThan(0);
    expect(sample(text, "crr_lag_seconds", { peer: "us-west-2" })).toBe(0);
    await waitFor(
      async () =>
        sample(await metrics(a.url), "crr_region_health_status", { region: "us-west-2" }) === 1 || undefined,
      "peer health 1",
    );

    // Peer down: lag grows, health drops, readiness stays.
    await cluster.stopNode("us-west-2", "SIGKILL");
    await appendMany(a, "while-down", 5);
    const lag1 = await waitFor(
      async () => sample(await metrics(a.url), "crr_lag_seconds", { peer: "us-west-2" }) || undefined,
      "lag above 0",
    );
    await waitFor(
      async () =>
        (sample(await metrics(a.url), "crr_lag_seconds", { peer: "us-west-2" }) ?? 0) > lag1 || undefined,
      "lag to grow",
    );
    await waitFor(
      async () =>
        sample(await metrics(a.url), "crr_region_health_status", { region: "us-west-2" }) === 0 || undefined,
      "peer health 0",
    );
    expect((await api(`${a.url}/readyz`)).status).toBe(200);
    // Counted by reason: refused (the node's port is closed) or reset (the test's front for it answers RST).
    await waitFor(async () => {
      const text = await metrics(a.url);
      const count = (reason: string) =>
        sample(text, "crr_ship_errors_total", { peer: "us-west-2", reason }) ?? 0;
      return count("connection_refused") + count("connection_reset") > 0 || undefined;
    }, "ship errors counted by reason");

    // Origin restarted while the backlog exists: lag is not reset to 0.
    await cluster.stopNode("us-east-1", "SIGTERM");
    await cluster.startNode("us-east-1");
    text = await metrics(a.url);
    expect(sample(text, "crr_lag_seconds", { peer: "us-west-2" })).toBeGreaterThan(lag1);
    await cluster.startNode("us-west-2");
    await waitConverged([a, b]);
    await waitFor(
      async () => sample(await metrics(a.url), "crr_lag_seconds", { peer: "us-west-2" }) === 0 || undefined,
      "lag back to 0",
    );
  });

  it("`crr status` shows peers, watermarks, lag, WAL and health; --json for scripts", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const a = cluster.node("us-east-1");
    await appendMany(a, "s", 10);
    await waitConverged([a, cluster.node("eu-west-1")]);
    const table = await runCrr(["status", "--url", a.url]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/region us-east-1 .* ready {2}accepting appends/);
    expect(table.stdout).toMatch(/WAL {4}durable LSN 10/);
    expect(table.stdout).toMatch(/eu-west-1\s+caught-up\s+\S+\s+10\s+0\s+0\.000 s/);
    const json = await runCrr(["status", "--url", a.url, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      region: "us-east-1",
      caughtUp: true,
      wal: { durableLsn: 10 },
    });
    const down = await runCrr(["status", "--url", "http://127.0.0.1:9"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9\/v1\/status: ECONNREFUSED/);
    for (const cmd of ["serve", "status", "drain", "undrain", "demo", "wal"]) {
      const h = await runCrr(cmd === "wal" ? ["wal", "inspect", "--help"] : [cmd, "--help"]);
      expect(h.code, cmd).toBe(0);
      expect(h.stdout, cmd).toMatch(/^crr /);
    }
  });

  it("drain refuses appends with 503 and Retry-After, exits 0 once every peer caught up; undrain reverses it; a drain that cannot finish times out", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "us-west-2"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    await appendMany(a, "d", 200);
    // The contract's way: only the URL, and the deployment's secret in the environment.
    const drain = await runCrr(["drain", "--url", a.url], { env: { CRR_PEER_SECRET: testSecret } });
    expect(drain.code).toBe(0);
    expect(drain.stdout).toMatch(/us-east-1 is draining/);
    expect(drain.stdout).toMatch(/drained in [\d.]+ s: every peer has acknowledged LSN 200/);
    expect((await status(b)).watermarks["us-east-1"]).toBe(200);
    const refused = await fetch(`${a.url}/v1/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "x", tenant: "t", outcome: "a" }),
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("5");
    expect(await refused.json()).toMatchObject({ code: "draining" });
    expect((await api(`${a.url}/readyz`)).status).toBe(503);
    expect((await runCrr(["undrain", "--url", a.url])).stderr).toMatch(/401.*admin routes need/);
    expect(
      (await runCrr(["undrain", "--url", a.url], { env: { CRR_ADMIN_TOKEN: cluster.adminToken } })).stdout,
    ).toMatch(/us-east-1 accepts appends again/);
    expect((await append(a, { key: "x", tenant: "t", outcome: "a" })).status).toBe(200);

    await cluster.stopNode("us-west-2", "SIGKILL");
    await appendMany(a, "stuck", 5);
    const stuck = await runCrr(["drain", "--url", a.url, "--timeout-ms", "1500"], { env: cluster.secrets() });
    expect(stuck.code).toBe(1);
    expect(stuck.stdout).toMatch(/timed out after 1500 ms: us-west-2 \d+ behind/);
  });

  it("SIGTERM under load: readiness goes false first, every acknowledged append is in the WAL and shipped after restart", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2"],
      common: { shutdown: { readinessGraceMs: 800 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    await cluster.stopNode("us-west-2", "SIGKILL"); // nothing ships until the restart
    const acked: string[] = [];
    let stop = false;
    const writers = Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const key = `t-${w}-${i}`;
        const r = await append(a, { key, tenant: "tenant-a", outcome: "accepted" }).catch(() => undefined);
        if (r?.status === 200) acked.push(key);
        else if (r === undefined || r.status === 503) return;
      }
    });
    await waitFor(() => acked.length > 300 || undefined, "load to run");
    const exited = new Promise<number | null>((resolve) =>
      cluster.node("us-east-1").proc!.on("exit", (code) => resolve(code)),
    );
    cluster.node("us-east-1").proc!.kill("SIGTERM");
    const notReady = await waitFor(
      async () =>
        (await fetch(`${a.url}/readyz`)
          .then((r) => r.status)
          .catch(() => 0)) === 503 || undefined,
      "readiness false",
    );
    expect(notReady).toBe(true);
    expect(await exited).toBe(0);
    stop = true;
    await Promise.all(writers);
    cluster.node("us-east-1").proc = undefined;
    await Promise.all([cluster.startNode("us-east-1"), cluster.startNode("us-west-2")]);
    const [sa, sb] = await waitConverged([a, b]);
    expect(sa!.store.records).toBeGreaterThanOrEqual(acked.length);
    for (const key of acked.filter((_, i) => i % 10 === 0)) {
      expect((await api(`${b.url}/v1/records/${key}`)).status, key).toBe(200);
    }
    expect(sb!.watermarks["us-east-1"]).toBe(sa!.wal.durableLsn);
    expect(cluster.logs("us-east-1")).toMatch(/"msg":"shutting down"/);
  });

  it("a second `crr serve` on the same data directory refuses to start and names the holder", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1"] });
    const a = cluster.node("us-east-1");
    const second = spawn(process.execPath, [crrBin, "serve", "--config", a.configFile], {
      cwd: repoRoot,
      env: { ...process.env, CRR_PEER_SECRET: testSecret },
    });
    let stderr = "";
    let stdout = "";
    second.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    second.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((r) => second.on("exit", r));
    expect(code).toBe(1);
    expect(stderr + stdout).toMatch(new RegExp(`data directory .* is in use by pid ${a.proc!.pid}`));
    expect((await api(`${a.url}/healthz`)).status).toBe(200); // the first one is untouched
  });

  it("explains config errors: unknown key, wrong type, missing peer URL, missing secret", async () => {
    const dir = tempDir();
    const write = (name: string, config: object) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, JSON.stringify(config));
      return file;
    };
    const good = {
      region: "us-east-1",
      dataDir: path.join(dir, "data"),
      regions: {
        "us-east-1": { url: "http://127.0.0.1:7070" },
        "us-west-2": { url: "http://127.0.0.1:7071" },
      },
      crr: { enabled: true, peers: ["us-west-2"] },
      auth: { peerSecret: "${CRR_PEER_SECRET}" },
    };
    const cases: Array<[object, RegExp, NodeJS.ProcessEnv?]> = [
      [{ ...good, colour: "blue" }, /colour: unknown key/],
      [{ ...good, listen: { port: "7070" } }, /listen\.port: expected integer/],
      [
        { ...good, regions: { "us-east-1": { url: "http://127.0.0.1:7070" }, "us-west-2": {} } },
        /regions\.us-west-2\.url: required/,
      ],
      [good, /auth\.peerSecret: environment variable CRR_PEER_SECRET is not set/, { CRR_PEER_SECRET: "" }],
    ];
    for (const [i, [config, message, env]] of cases.entries()) {
      const r = await runCrr(["serve", "--config", write(`c${i}.json`, config)], {
        env: { CRR_PEER_SECRET: testSecret, ...env },
      });
      expect(r.code, String(message)).toBe(2);
      expect(r.stderr).toMatch(/invalid config .*c\d\.json/);
      expect(r.stderr).toMatch(message);
    }
    const missing = await runCrr(["serve", "--config", path.join(dir, "nope.yaml")]);
    expect(missing.stderr).toMatch(/cannot read the file: ENOENT/);
  });

  it("`crr demo` runs three regions to convergence (short)", async () => {
    const demo = await runCrr(["demo", "--seconds", "3", "--rate", "30"]);
    expect(demo.stdout).toMatch(/split brain/);
    expect(demo.stdout).toMatch(/eu-west-1 killed with SIGKILL/);
    expect(demo.stdout).toMatch(/digests equal: {8}yes/);
    expect(demo.stdout).toMatch(/demo: OK/);
    expect(demo.code).toBe(0);
  });
});
