/**
 * Replication benchmark, two regions on loopback.
 *
 * 1. Lag and throughput: the origin region runs in this process (the embedded library, with
 *    its HTTP server), the peer is a separate `crr serve` process. Records are appended open
 *    loop at a fixed schedule (1k/s, 10k/s), then flat out with appendBatch. Lag of a record
 *    = from its append being acknowledged (durable at the origin) to the peer acknowledging
 *    the batch that holds it (the peer applies before it answers), on one clock.
 * 2. Replay into SQLite on its own: SqliteStore.applyBatch (merge rule, conflicts, watermark,
 *    digests) against a raw better-sqlite3 INSERT OR IGNORE loop with the same batch size and
 *    random keys, alternating, in the same process; and with digests vs without.
 *
 *   npm run bench -- replication [--seconds 5] [--rounds 5]
 */
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Agent, request } from "undici";
import YAML from "yaml";
import { parseConfig } from "../src/config/index.js";
import { silentLogger } from "../src/log.js";
import { runNode } from "../src/node/index.js";
import { SqliteStore } from "../src/store/index.js";
import type { WalRecord } from "../src/wal/index.js";
import { spread, writeResults, type Spread } from "./report.js";
import { freePort } from "../src/util/process.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const secret = "bench-peer-secret-0123456789";
const warmupSeconds = 1;

interface Args {
  seconds: number;
  rounds: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! : NaN;
}

/**
 * How the two regions trust each other: the shared secret over HTTP (the baseline), a key
 * per region (Ed25519 signatures on requests and answers), or keys and mutual TLS.
 */
export type TrustMode = "shared-secret" | "keys" | "keys+mtls";

/** Key files and certificates for `mode` under `root` (openssl makes the certificates). */
function trustSetup(root: string, mode: TrustMode) {
  const names = ["us-east-1", "us-west-2"];
  if (mode === "shared-secret")
    return { scheme: "http", config: (_r: string) => ({ auth: { peerSecret: secret } }), ca: undefined };
  const dir = path.join(root, "pki");
  fs.mkdirSync(dir, { recursive: true });
  const keys = Object.fromEntries(
    names.map((n) => {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      fs.writeFileSync(path.join(dir, `${n}.key`), privateKey.export({ type: "pkcs8", format: "pem" }));
      fs.writeFileSync(path.join(dir, `${n}.pub`), publicKey.export({ type: "spki", format: "pem" }));
      return [n, { privateKeyFile: path.join(dir, `${n}.key`), publicKeyFile: path.join(dir, `${n}.pub`) }];
    }),
  );
  const tls = mode === "keys+mtls" ? certificates(dir, names) : undefined;
  return {
    scheme: tls ? "https" : "http",
    ca: tls ? fs.readFileSync(path.join(dir, "ca.crt")) : undefined,
    config: (r: string) => ({
      auth: { privateKeyFile: keys[r]!.privateKeyFile },
      publicKeyFiles: (n: string) => [keys[n]!.publicKeyFile],
      ...(tls ? { tls: { ...tls[r]!, caFile: path.join(dir, "ca.crt"), requireClientCert: true } } : {}),
    }),
  };
}

function certificates(dir: string, names: string[]): Record<string, { certFile: string; keyFile: string }> {
  const ossl = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  ossl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=bench-ca"]);
  fs.writeFileSync(
    path.join(dir, "ext"),
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  return Object.fromEntries(
    names.map((n) => {
      ossl(["req", ...ec, "-keyout", `${n}.tls.key`, "-out", `${n}.csr`, "-subj", `/CN=${n}`]);
      ossl(
        ["x509", "-req", "-in", `${n}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"].concat([
          "-out",
          `${n}.crt`,
          "-days",
          "1",
          "-extfile",
          "ext",
        ]),
      );
      return [n, { certFile: path.join(dir, `${n}.crt`), keyFile: path.join(dir, `${n}.tls.key`) }];
    }),
  );
}

async function twoRegions(root: string, mode: TrustMode) {
  const [pa, pb] = [await freePort(), await freePort()];
  const trust = trustSetup(root, mode);
  const names = ["us-east-1", "us-west-2"];
  const ports: Record<string, number> = { "us-east-1": pa, "us-west-2": pb };
  const cfg = (region: string, port: number, target: string) => {
    const t = trust.config(region) as {
      auth: Record<string, unknown>;
      publicKeyFiles?: (n: string) => string[];
      tls?: Record<string, unknown>;
    };
    return {
      region,
      dataDir: path.join(root, region),
      listen: { host: "127.0.0.1", port, ...(t.tls ? { tls: t.tls } : {}) },
      regions: Object.fromEntries(
        names.map((n) => [
          n,
          {
            url: `${trust.scheme}://127.0.0.1:${ports[n]}`,
            ...(t.publicKeyFiles ? { publicKeyFiles: t.publicKeyFiles(n) } : {}),
          },
        ]),
      ),
      crr: { enabled: true, replicationMode: "two-region", targetRegions: [target] },
      auth: t.auth,
      log: { level: "warn" },
    };
  };
  const regions = cfg("us-east-1", pa, "us-west-2").regions;
  const peerFile = path.join(root, "us-west-2.yaml");
  fs.writeFileSync(peerFile, YAML.stringify(cfg("us-west-2", pb, "us-east-1")));
  const peer = spawn(
    process.execPath,
    [path.join(repoRoot, "dist/cli/main.js"), "serve", "--config", peerFile],
    { stdio: "inherit" },
  );
  const origin = await runNode(parseConfig(cfg("us-east-1", pa, "us-west-2"), "bench", root), silentLogger());
  const deadline = Date.now() + 30_000;
  const peerCfg = cfg("us-west-2", pb, "us-east-1");
  const agent =
    peerCfg.listen.tls && trust.ca
      ? new Agent({
          connect: {
            ca: trust.ca,
            cert: fs.readFileSync(String(peerCfg.listen.tls.certFile)),
            key: fs.readFileSync(String(peerCfg.listen.tls.keyFile)),
          },
        })
      : undefined;
  while (
    !(await request(`${regions["us-west-2"]!.url}/readyz`, { dispatcher: agent })
      .then(async (r) => (await r.body.text(), r.statusCode === 200))
      .catch(() => false))
  ) {
    if (Date.now() > deadline) throw new Error("peer did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  const shipper = origin.region.shippers.get("us-west-2")!;
  return {
    origin,
    shipper,
    stop: async () => {
      await origin.close();
      await agent?.close();
      peer.kill("SIGTERM");
      await new Promise((r) => peer.on("exit", r));
    },
  };
}

export interface LagRun {
  targetPerS: number | "max";
  appendedPerS: number;
  replicatedPerS: number;
  lagMs: { p50: number; p90: number; p99: number; p999: number; max: number };
}

export async function lagRun(
  targetPerS: number | "max",
  seconds: number,
  mode: TrustMode = "shared-secret",
): Promise<LagRun> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-repl-"));
  const { origin, shipper, stop } = await twoRegions(root, mode);
  const region = origin.region;
  try {
    // ackedAt[lsn - base] = when the origin acknowledged that append.
    const ackedAt: number[] = [];
    const lags: number[] = [];
    let base = region.wal.durableLsn + 1;
    let lastAcked = base - 1;
    let replicatedAtEnd = 0;
    shipper.on("ack", (lsn) => {
      const now = performance.now();
      for (let l = lastAcked + 1; l <= lsn; l++) {
        const t = ackedAt[l - base];
        if (t !== undefined) lags.push(now - t);
      }
      lastAcked = Math.max(lastAcked, lsn);
    });
    let appended = 0;
    let seq = 0;
    const started = performance.now();
    const endAt = started + (seconds + warmupSeconds) * 1000;
    // The first second warms up connections, JIT and caches: its records are not measured.
    const measureFrom = started + warmupSeconds * 1000;
    const note = (lsn: number) => {
      const now = performance.now();
      if (now >= measureFrom) ackedAt[lsn - base] = now;
    };
    if (targetPerS === "max") {
      // Flat out, but never more than backlogMax records ahead of the peer: the rate the
      // peer sustains, with lag that means something (not an ever-growing queue).
      const backlogMax = 20_000;
      const callers = Array.from({ length: 4 }, async () => {
        while (performance.now() < endAt) {
          if (region.wal.durableLsn - lastAcked > backlogMax) {
            await new Promise((r) => setTimeout(r, 1));
            continue;
          }
          const batch = Array.from({ length: 500 }, () => ({
            key: `k${seq++}`,
            tenant: "tenant-a",
            outcome: "accepted",
            body: "b".repeat(120),
          }));
          const acks = await region.wal.appendBatch(batch);
          for (const a of acks) note(a.lsn);
          appended += acks.length;
        }
      });
      await Promise.all(callers);
    } else {
      // Open loop: every millisecond, append what the schedule says is due, whatever happened before.
      const pending: Promise<unknown>[] = [];
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          const now = performance.now();
          if (now >= endAt) {
            clearInterval(tick);
            resolve();
            return;
          }
          const due = Math.floor(((now - started) / 1000) * targetPerS) - appended;
          for (let i = 0; i < due; i++) {
            appended++;
            pending.push(
              region
                .append({ key: `k${seq++}`, tenant: "tenant-a", outcome: "accepted", body: "b".repeat(120) })
                .then((r) => note(r.lsn)),
            );
          }
        }, 1);
      });
      await Promise.all(pending);
    }
    const appendSeconds = (performance.now() - started) / 1000;
    const lastLsn = region.wal.durableLsn;
    const waitUntil = performance.now() + 60_000;
    while (lastAcked < lastLsn && performance.now() < waitUntil) await new Promise((r) => setTimeout(r, 5));
    replicatedAtEnd = lastAcked - base + 1;
    const totalSeconds = (performance.now() - started) / 1000;
    lags.sort((a, b) => a - b);
    base = 0;
    return {
      targetPerS,
      appendedPerS: appended / appendSeconds,
      replicatedPerS: replicatedAtEnd / totalSeconds,
      lagMs: {
        p50: percentile(lags, 0.5),
        p90: percentile(lags, 0.9),
        p99: percentile(lags, 0.99),
        p999: percentile(lags, 0.999),
        max: lags.at(-1) ?? NaN,
      },
    };
  } finally {
    await stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

// ---- replay into SQLite ------------------------------------------------------------------

const batchRecords = 1000;

function randomBatches(count: number, firstLsn: number): WalRecord[][] {
  const out: WalRecord[][] = [];
  let lsn = firstLsn;
  for (let b = 0; b < count; b++) {
    out.push(
      Array.from({ length: batchRecords }, () => ({
        key: `k-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`,
        tenant: "tenant-a",
        outcome: "accepted",
        bodyJson: JSON.stringify("b".repeat(120)),
        lsn: lsn++,
        hlc: { wallMs: Date.now(), logical: 0 },
        flags: 0,
      })),
    );
  }
  return out;
}

/**
 * Replay `batches` into a fresh store. `synced`: with applyBatch, what a peer does before it
 * answers (the commit is synced, so the acknowledgement is durable); otherwise with
 * applySync, what this region does with its own records (the WAL already holds them).
 */
async function replayStore(batches: WalRecord[][], digests: boolean, synced = false): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-replay-"));
  const store = new SqliteStore({
    path: path.join(dir, "s.sqlite"),
    rule: { kind: "first-write-wins" },
    digests,
  });
  const t0 = performance.now();
  for (const records of batches) {
    const batch = {
      origin: "us-east-1",
      incarnation: "00".repeat(16),
      firstLsn: records[0]!.lsn,
      lastLsn: records.at(-1)!.lsn,
      records,
    };
    if (synced) await store.applyBatch(batch);
    else store.applySync(batch);
  }
  const s = (performance.now() - t0) / 1000;
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return batches.reduce((n, b) => n + b.length, 0) / s;
}

/** The same records cut into batches of `size`. */
function rebatch(batches: WalRecord[][], size: number): WalRecord[][] {
  const all = batches.flat();
  const out: WalRecord[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
}

function replayRaw(batches: WalRecord[][]): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-raw-"));
  const db = new Database(path.join(dir, "raw.sqlite"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  // Like SqliteStore, which checkpoints on a worker thread: neither pays a checkpoint inside a COMMIT.
  db.pragma("wal_autocheckpoint = 0");
  db.exec(
    "CREATE TABLE records (key TEXT PRIMARY KEY, tenant TEXT, outcome TEXT, body TEXT, origin TEXT, lsn INTEGER, hlc_wall INTEGER, hlc_logical INTEGER) WITHOUT ROWID",
  );
  const insert = db.prepare("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  const tx = db.transaction((records: WalRecord[]) => {
    for (const r of records)
      insert.run(r.key, r.tenant, r.outcome, r.bodyJson, "us-east-1", r.lsn, r.hlc.wallMs, r.hlc.logical);
  });
  const t0 = performance.now();
  for (const records of batches) tx(records);
  const s = (performance.now() - t0) / 1000;
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return (batches.length * batchRecords) / s;
}

export async function benchReplication(args: Args): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const runs: LagRun[] = [];
  for (const target of [1000, 10_000, "max"] as const) {
    const r = await lagRun(target, args.seconds);
    runs.push(r);
    log(
      `lag at ${target}/s: appended ${Math.round(r.appendedPerS)}/s, replicated ${Math.round(r.replicatedPerS)}/s, p50 ${r.lagMs.p50.toFixed(2)} ms, p99 ${r.lagMs.p99.toFixed(2)} ms`,
    );
  }
  const store: number[] = [];
  const raw: number[] = [];
  const noDigest: number[] = [];
  const synced1000: number[] = [];
  const unsynced10: number[] = [];
  const synced10: number[] = [];
  for (let i = 0; i < args.rounds; i++) {
    const batches = randomBatches(100, 1);
    const small = rebatch(batches.slice(0, 10), 10); // 10,000 records in batches of 10: an fsync per 10
    // Rotate the order each round so no variant always runs first (or last) on a noisy machine.
    const runs = [
      async () => raw.push(replayRaw(batches)),
      async () => store.push(await replayStore(batches, true)),
      async () => noDigest.push(await replayStore(batches, false)),
      async () => synced1000.push(await replayStore(batches, true, true)),
      async () => unsynced10.push(await replayStore(small, true)),
      async () => synced10.push(await replayStore(small, true, true)),
    ];
    for (let k = 0; k < runs.length; k++) await runs[(i + k) % runs.length]!();
    log(
      `replay round ${i + 1}: store ${Math.round(store.at(-1)!)}/s (synced ${Math.round(synced1000.at(-1)!)}/s), without digests ${Math.round(noDigest.at(-1)!)}/s, raw ${Math.round(raw.at(-1)!)}/s; batches of 10: ${Math.round(unsynced10.at(-1)!)}/s, synced ${Math.round(synced10.at(-1)!)}/s`,
    );
  }
  const replay = {
    batchRecords,
    recordsPerRound: 100 * batchRecords,
    storePerS: spread(store),
    storeWithoutDigestsPerS: spread(noDigest),
    rawInsertOrIgnorePerS: spread(raw),
    ratioToRaw: spread(store.map((s, i) => s / raw[i]!)),
    ratioToRawTarget: 0.7,
    digestSlowdown: spread(store.map((s, i) => 1 - s / noDigest[i]!)),
    digestSlowdownTargetMax: 0.15,
    // What durable acknowledgements cost a peer: a synced commit per batch.
    syncedPerS: spread(synced1000),
    syncedRatio: spread(synced1000.map((s, i) => s / store[i]!)),
    smallBatchPerS: spread(unsynced10),
    smallBatchSyncedPerS: spread(synced10),
    smallBatchSyncedRatio: spread(synced10.map((s, i) => s / unsynced10[i]!)),
  };
  const f = (v: number, d = 2) => v.toFixed(d);
  const n = (v: number) => Math.round(v).toLocaleString("en-US");
  const fmt = (s: Spread, d = 0) =>
    d ? `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})` : `${n(s.median)} (${n(s.min)}–${n(s.max)})`;
  const md = [
    `Two regions on loopback: the origin embedded in the benchmark process, the peer a \`crr serve\` process. ${args.seconds} s per rate; 200-byte records. Lag = origin ack → peer's acknowledgement of the batch holding the record.`,
    "",
    "| offered load | appended/s | replicated/s | lag p50 ms | p90 | p99 | p99.9 | max |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...runs.map(
      (r) =>
        `| ${r.targetPerS === "max" ? "max (appendBatch, 4×500 in flight, ≤ 20k behind)" : `${n(r.targetPerS)}/s open loop`} | ${n(r.appendedPerS)} | ${n(r.replicatedPerS)} | ${f(r.lagMs.p50)} | ${f(r.lagMs.p90)} | ${f(r.lagMs.p99)} | ${f(r.lagMs.p999)} | ${f(r.lagMs.max)} |`,
    ),
    "",
    `Replay into SQLite, ${args.rounds} rounds of ${100 * batchRecords} random keys in batches of ${batchRecords} (median (min–max)):`,
    "",
    "| path | records/s |",
    "| --- | --- |",
    `| SqliteStore.applyBatch (merge rule, conflicts, watermark, digests) | ${fmt(replay.storePerS)} |`,
    `| SqliteStore.applyBatch without digests | ${fmt(replay.storeWithoutDigestsPerS)} |`,
    `| raw better-sqlite3 INSERT OR IGNORE, one transaction per batch (WAL mode, synchronous=NORMAL, no inline checkpoints, like the store) | ${fmt(replay.rawInsertOrIgnorePerS)} |`,
    "",
    `Store / raw: **${fmt(replay.ratioToRaw, 2)}** (target ≥ 0.7). Digest upkeep costs ${fmt(replay.digestSlowdown, 2)} of replay throughput (target ≤ 0.15).`,
    "",
    "Durable acknowledgements: a peer commits each batch with a sync before it answers (`applyBatch`); its own records are not synced again (`applySync`: the WAL holds them). Same records, same run:",
    "",
    "| batch size | not synced records/s | synced records/s | synced / not synced |",
    "| --- | --- | --- | --- |",
    `| ${batchRecords} | ${fmt(replay.storePerS)} | ${fmt(replay.syncedPerS)} | ${fmt(replay.syncedRatio, 2)} |`,
    `| 10 | ${fmt(replay.smallBatchPerS)} | ${fmt(replay.smallBatchSyncedPerS)} | ${fmt(replay.smallBatchSyncedRatio, 2)} |`,
  ].join("\n");
  writeResults("replication", { secondsPerRate: args.seconds, lag: runs, replay }, md);
}
