/**
 * WAL benchmark: durable appends/s for 200-byte records with 1, 64 and 1024 appends in
 * flight and for appendBatch (1000 records a call), fsyncs/s, p50/p99 append latency, each
 * as a ratio of a raw baseline run in the same process: a plain loop that writes the same
 * bytes and calls fdatasync with the same records per fsync. WAL and baseline alternate,
 * several rounds, so machine noise hits both; we report medians and spread.
 * Then: recovery time of a 1 GiB WAL and `wal inspect` throughput.
 *
 *   npm run bench -- wal [--rounds 5] [--seconds 2] [--recovery-gib 1]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wal, encodeFrames, inspectWal } from "../src/wal/index.js";
import { spread, writeResults, type Spread } from "./report.js";

interface Args {
  rounds: number;
  seconds: number;
  recoveryGiB: number;
}

const recordBytes = 200;
/** A record whose frame is exactly 200 bytes on disk. */
function makeRecord(i: number) {
  const key = `pcs-${i.toString(16).padStart(12, "0")}`; // 16 bytes
  const base = { key, tenant: "tenant-a", outcome: "accepted" };
  const fixed = 8 + 28 + key.length + base.tenant.length + base.outcome.length + 2; // +2 for the JSON quotes
  return { ...base, body: "b".repeat(recordBytes - fixed) };
}

// Records are made before timing starts (as a service has them in hand); keys cycle.
const pool = Array.from({ length: 4096 }, (_, i) => makeRecord(i));
const record = (i: number) => pool[i & 4095]!;

function scratch(): string {
  return fs.mkdtempSync(path.join(process.env.CRR_BENCH_DIR ?? os.tmpdir(), "crr-bench-wal-"));
}

interface RunResult {
  recordsPerS: number;
  fsyncsPerS: number;
  recordsPerFsync: number;
  latencyMsP50: number;
  latencyMsP99: number;
}

/** Close a measured WAL run and turn its counters into rates and latency percentiles. */
async function finishRun(wal: Wal, dir: string, started: number, latencies: number[]): Promise<RunResult> {
  const elapsed = (performance.now() - started) / 1000;
  const stats = wal.stats();
  await wal.close();
  fs.rmSync(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    recordsPerS: stats.appends / elapsed,
    fsyncsPerS: stats.fsyncs / elapsed,
    recordsPerFsync: stats.appends / stats.fsyncs,
    latencyMsP50: latencies[Math.floor(latencies.length * 0.5)] ?? 0,
    latencyMsP99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
  };
}

async function runAppends(inFlight: number, seconds: number): Promise<RunResult> {
  const dir = scratch();
  const wal = await Wal.open({ dir, region: "bench" });
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  let i = 0;
  const started = performance.now();
  // Time every 8th append only: the measurement must not cost more than what it measures.
  const worker = async () => {
    while (performance.now() < deadline) {
      const n = i++;
      if (n & 7) {
        await wal.append(record(n));
        continue;
      }
      const t0 = performance.now();
      await wal.append(record(n));
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return finishRun(wal, dir, started, latencies);
}

async function runBatches(batchRecords: number, callers: number, seconds: number): Promise<RunResult> {
  const dir = scratch();
  const wal = await Wal.open({ dir, region: "bench" });
  const batch = Array.from({ length: batchRecords }, (_, i) => record(i));
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const caller = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await wal.appendBatch(batch);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return finishRun(wal, dir, started, latencies);
}

/** The raw ceiling: write pre-encoded 200-byte frames, fdatasync, `perFsync` records at a time. */
function runBaseline(perFsync: number, seconds: number): RunResult {
  const dir = scratch();
  const file = path.join(dir, "raw");
  const fd = fs.openSync(file, "w");
  const frames = encodeFrames(
    Array.from({ length: perFsync }, (_, i) => {
      const r = record(i);
      return {
        ...r,
        bodyJson: JSON.stringify(r.body),
        lsn: i + 1,
        hlc: { wallMs: Date.now(), logical: 0 },
        flags: 0,
      };
    }),
  );
  let pos = 0;
  let records = 0;
  let fsyncs = 0;
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + seconds * 1000;
  while (performance.now() < deadline) {
    const t0 = performance.now();
    pos += fs.writeSync(fd, frames, 0, frames.length, pos);
    fs.fdatasyncSync(fd);
    latencies.push(performance.now() - t0);
    records += perFsync;
    fsyncs++;
  }
  const elapsed = (performance.now() - started) / 1000;
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    recordsPerS: records / elapsed,
    fsyncsPerS: fsyncs / elapsed,
    recordsPerFsync: perFsync,
    latencyMsP50: latencies[Math.floor(latencies.length * 0.5)] ?? 0,
    latencyMsP99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
  };
}

interface ScenarioSummary {
  name: string;
  wal: {
    recordsPerS: Spread;
    fsyncsPerS: Spread;
    recordsPerFsync: Spread;
    latencyMsP50: Spread;
    latencyMsP99: Spread;
  };
  baseline: { recordsPerS: Spread; recordsPerFsync: Spread };
  ratio: Spread;
  target: number | undefined;
}

function summarise(name: string, wal: RunResult[], base: RunResult[], target?: number): ScenarioSummary {
  const pick = (rs: RunResult[], k: keyof RunResult) => spread(rs.map((r) => r[k]));
  return {
    name,
    wal: {
      recordsPerS: pick(wal, "recordsPerS"),
      fsyncsPerS: pick(wal, "fsyncsPerS"),
      recordsPerFsync: pick(wal, "recordsPerFsync"),
      latencyMsP50: pick(wal, "latencyMsP50"),
      latencyMsP99: pick(wal, "latencyMsP99"),
    },
    baseline: { recordsPerS: pick(base, "recordsPerS"), recordsPerFsync: pick(base, "recordsPerFsync") },
    // Ratio per round (same round, adjacent in time), then the median of those.
    ratio: spread(wal.map((w, i) => w.recordsPerS / base[i]!.recordsPerS)),
    target,
  };
}

async function recoveryBench(gib: number) {
  const dir = scratch();
  const wal = await Wal.open({ dir, region: "bench" });
  const batch = Array.from({ length: 1000 }, (_, i) => record(i));
  const targetBytes = gib * 1024 ** 3;
  const t0 = performance.now();
  // Worst case for recovery: stop when the newest segment is nearly full (it is the one scanned).
  const segmentBytesMax = 64 * 1024 * 1024;
  while (wal.stats().bytes < targetBytes || wal.stats().activeBytes < 0.95 * segmentBytesMax)
    await wal.appendBatch(batch);
  const writeS = (performance.now() - t0) / 1000;
  const stats = wal.stats();
  await wal.close();
  const recoveries: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const again = await Wal.open({ dir, region: "bench" });
    recoveries.push(performance.now() - t);
    if (again.durableLsn !== stats.durableLsn)
      throw new Error(`recovered ${again.durableLsn}, wrote ${stats.durableLsn}`);
    await again.close();
  }
  const inspect = await inspectWal(dir);
  if (inspect.problem || inspect.records !== stats.durableLsn)
    throw new Error(`inspect: ${JSON.stringify(inspect.problem)}`);
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    walBytes: stats.bytes,
    records: stats.durableLsn,
    segments: stats.segments,
    writeMBPerS: stats.bytes / 1e6 / writeS,
    recoveryMs: spread(recoveries),
    recoveryTargetMs: 2000,
    inspectMBPerS: inspect.bytes / 1e6 / (inspect.durationMs / 1000),
  };
}

export async function benchWal(args: Args): Promise<void> {
  const scenarios: ScenarioSummary[] = [];
  const log = (s: string) => process.stderr.write(`${s}\n`);
  for (const inFlight of [1, 64, 1024]) {
    const wal: RunResult[] = [];
    const base: RunResult[] = [];
    for (let r = 0; r < args.rounds; r++) {
      const w = await runAppends(inFlight, args.seconds);
      wal.push(w);
      base.push(runBaseline(Math.max(1, Math.round(w.recordsPerFsync)), args.seconds));
      log(
        `append x${inFlight} round ${r + 1}: wal ${Math.round(w.recordsPerS)}/s, baseline ${Math.round(base.at(-1)!.recordsPerS)}/s`,
      );
    }
    scenarios.push(
      summarise(`append, ${inFlight} in flight`, wal, base, inFlight === 1024 ? 0.3 : undefined),
    );
  }
  for (const callers of [1, 4]) {
    const wal: RunResult[] = [];
    const base: RunResult[] = [];
    for (let r = 0; r < args.rounds; r++) {
      const w = await runBatches(1000, callers, args.seconds);
      wal.push(w);
      base.push(runBaseline(Math.round(w.recordsPerFsync), args.seconds));
      log(
        `appendBatch 1000 x${callers} round ${r + 1}: wal ${Math.round(w.recordsPerS)}/s, baseline ${Math.round(base.at(-1)!.recordsPerS)}/s`,
      );
    }
    const name =
      callers === 1
        ? "appendBatch, 1000 records a call"
        : `appendBatch, 1000 records a call, ${callers} calls in flight`;
    scenarios.push(summarise(name, wal, base, callers === 1 ? 0.8 : undefined));
  }
  log(`writing a ${args.recoveryGiB} GiB WAL for the recovery benchmark...`);
  const recovery = await recoveryBench(args.recoveryGiB);
  const results = {
    benchmark: "wal",
    recordBytes,
    rounds: args.rounds,
    secondsPerRun: args.seconds,
    scenarios,
    recovery,
  };
  const rows = scenarios.map(
    (s) =>
      `| ${s.name} | ${fmt(s.wal.recordsPerS)} | ${fmt(s.wal.fsyncsPerS)} | ${fmt(s.wal.recordsPerFsync)} | ${fmt(s.wal.latencyMsP50, 3)} | ${fmt(s.wal.latencyMsP99, 3)} | ${fmt(s.baseline.recordsPerS)} | **${fmt(s.ratio, 2)}** | ${s.target ?? "–"} |`,
  );
  const md = [
    `Records of ${recordBytes} bytes on disk; ${args.rounds} rounds of ${args.seconds} s per scenario, WAL and baseline alternating. Values: median (min–max).`,
    "",
    "| scenario | WAL records/s | fsyncs/s | records/fsync | p50 ms | p99 ms | baseline records/s | ratio | target |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    `Recovery of a ${(recovery.walBytes / 1024 ** 3).toFixed(2)} GiB WAL (${recovery.records} records, ${recovery.segments} segments, the newest 95% full, so its scan is the worst case): ${fmt(recovery.recoveryMs, 1)} ms (target < ${recovery.recoveryTargetMs} ms). Written at ${recovery.writeMBPerS.toFixed(0)} MB/s with appendBatch. \`crr wal inspect\` verified it at ${recovery.inspectMBPerS.toFixed(0)} MB/s.`,
  ].join("\n");
  writeResults("wal", results, md);
}

function fmt(s: Spread, digits = 0): string {
  const f = (v: number) => (digits === 0 ? Math.round(v).toLocaleString("en-US") : v.toFixed(digits));
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}
