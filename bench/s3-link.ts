/**
 * The S3 link against the HTTP link, in the same run: two `crr serve` processes on loopback,
 * both archiving to s3rver (a real S3-protocol server, files in a temp directory). Each round
 * runs both modes in a rotated order:
 * - http: the peer gets the origin's records over the HTTP link (the archive runs too);
 * - s3: the peer is configured `via: s3` and the HTTP link between them refuses every
 *   connection, so records arrive only through the origin's archive.
 * Load: `rate` records/s appended to the origin for `seconds`. Lag of a record: from its
 * acknowledgement at the origin to the peer's watermark of the origin reaching its LSN
 * (polled every 10 ms). Requests per record: both nodes' S3 requests (status archive.s3)
 * over the records appended.
 *
 *   npm run build && npm run bench -- s3-link [--rounds 3] [--seconds 10] [--rate 500]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import S3rver from "s3rver";
import { startTcpProxy, type TcpProxy } from "../src/faults/index.js";
import { LocalMesh } from "../src/launch/index.js";
import { spread, writeResults, type Spread } from "./report.js";

type Mode = "http" | "s3";

interface Run {
  mode: Mode;
  records: number;
  lagMs: { p50: number; p99: number; max: number };
  requests: { put: number; get: number; list: number };
  requestsPerRecord: number;
}

const secret = "bench-peer-secret-0123456789";
const crrMain = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const intervalMs = 1000;
const pollMs = 500;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function json<T>(url: string): Promise<T> {
  return (await (await fetch(url)).json()) as T;
}

async function run(
  mode: Mode,
  seconds: number,
  rate: number,
  s3Endpoint: string,
  round: number,
): Promise<Run> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `crr-bench-s3-${mode}-`));
  const links = new Map<string, TcpProxy>();
  for (const l of ["o>p", "p>o"]) links.set(l, await startTcpProxy({ targetPort: 0 }));
  const name = (n: string) => (n === "origin" ? "o" : "p");
  const mesh = await LocalMesh.start({
    root,
    regions: ["origin", "peer"],
    secret,
    crrMain,
    route: (from, to) => links.get(`${name(from)}>${name(to)}`),
    env: () => ({ AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER" }),
    common: {
      ...(mode === "s3" ? { regions: { origin: { via: "s3" } } } : {}),
      archive: {
        s3: {
          bucket: "bench",
          endpoint: s3Endpoint,
          forcePathStyle: true,
          region: "us-east-1",
          prefix: `${mode}-${round}`,
        },
        intervalMs,
        pollMs,
      },
      log: { level: "warn" },
    },
  });
  try {
    const [o, p] = [mesh.node("origin"), mesh.node("peer")];
    if (mode === "s3") for (const l of links.values()) l.setTarget(0);
    const acks: Array<{ lsn: number; atMs: number }> = [];
    const seen = new Map<number, number>(); // LSN -> when the peer's watermark reached it
    let watching = true;
    let applied = 0;
    const watcher = (async () => {
      const until = performance.now() + (seconds + 90) * 1000;
      while ((watching || applied < Math.max(0, ...acks.map((a) => a.lsn))) && performance.now() < until) {
        const w = await json<{ watermarks: Record<string, number> }>(`${p.url}/v1/watermarks`);
        const now = performance.now();
        const to = w.watermarks.origin ?? 0;
        for (let l = applied + 1; l <= to; l++) seen.set(l, now);
        applied = Math.max(applied, to);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const started = performance.now();
    const total = Math.round(seconds * rate);
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const due = started + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const res = await fetch(`${o.url}/v1/records`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ key: `${mode}-${i}`, tenant: "tenant-a", outcome: "accepted", body: { i } }),
        });
        const b = (await res.json()) as { lsn: number };
        if (res.status !== 200) throw new Error(`append ${i}: ${res.status} ${JSON.stringify(b)}`);
        acks.push({ lsn: b.lsn, atMs: performance.now() });
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    watching = false;
    const deadline = performance.now() + 60_000;
    while (applied < Math.max(...acks.map((a) => a.lsn)) && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    await watcher;
    const lags = acks.map((a) => (seen.get(a.lsn) ?? NaN) - a.atMs).sort((x, y) => x - y);
    if (lags.some((l) => Number.isNaN(l)))
      process.stderr.write(
        `${mode}: the peer applied up to ${applied} of ${acks.length}; its status: ${JSON.stringify((await json<{ following?: unknown; peers: unknown }>(`${p.url}/v1/status`)).following)}\n`,
      );
    const requests = { put: 0, get: 0, list: 0 };
    for (const n of [o, p]) {
      const s = await json<{ archive: { s3: { requests: Record<string, number> } } }>(`${n.url}/v1/status`);
      for (const k of ["put", "get", "list"] as const) requests[k] += s.archive.s3.requests[k] ?? 0;
    }
    return {
      mode,
      records: acks.length,
      lagMs: { p50: pct(lags, 50), p99: pct(lags, 99), max: lags.at(-1)! },
      requests,
      requestsPerRecord: (requests.put + requests.get + requests.list) / acks.length,
    };
  } finally {
    await mesh.stop();
    for (const l of links.values()) await l.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export async function benchS3Link(args: { rounds: number; seconds: number; rate: number }): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-s3rver-"));
  const server = new S3rver({
    port: 0,
    address: "127.0.0.1",
    silent: true,
    directory: dir,
    configureBuckets: [{ name: "bench" }],
  });
  const { port } = await server.run();
  const runs: Record<Mode, Run[]> = { http: [], s3: [] };
  try {
    for (let round = 0; round < args.rounds; round++) {
      for (const mode of round % 2 === 0 ? (["http", "s3"] as const) : (["s3", "http"] as const)) {
        const r = await run(mode, args.seconds, args.rate, `http://127.0.0.1:${port}`, round);
        runs[mode].push(r);
        log(
          `round ${round + 1} ${mode}: ${r.records} records, lag p50 ${r.lagMs.p50.toFixed(0)} ms, p99 ${r.lagMs.p99.toFixed(0)} ms, ${r.requestsPerRecord.toFixed(3)} S3 requests per record`,
        );
      }
    }
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const sum = (rs: Run[]) => ({
    lagP50Ms: spread(rs.map((r) => r.lagMs.p50)),
    lagP99Ms: spread(rs.map((r) => r.lagMs.p99)),
    requestsPerRecord: spread(rs.map((r) => r.requestsPerRecord)),
  });
  const summary = { http: sum(runs.http), s3: sum(runs.s3) };
  const f = (s: Spread, d: number) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
  const md = [
    `Two \`crr serve\` processes on loopback archiving to s3rver; ${args.rate} records/s appended to the origin for ${args.seconds} s; ${args.rounds} rounds, both modes in each in a rotated order; median (min–max). \`archive.intervalMs\` ${intervalMs}, \`archive.pollMs\` ${pollMs}. Lag: acknowledgement at the origin to the peer's watermark (polled every 10 ms). Requests: both nodes' S3 requests (archive and follower) per record appended. s3: the HTTP link refuses every connection; the peer follows the origin's archive.`,
    "",
    "| link | lag p50 ms | lag p99 ms | S3 requests per record |",
    "| --- | --- | --- | --- |",
    ...(["http", "s3"] as const).map(
      (m) =>
        `| ${m} | ${f(summary[m].lagP50Ms, 0)} | ${f(summary[m].lagP99Ms, 0)} | ${f(summary[m].requestsPerRecord, 3)} |`,
    ),
  ].join("\n");
  writeResults("s3-link", { ...args, intervalMs, pollMs, summary, runs }, md);
  log(md);
}
