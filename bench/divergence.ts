/**
 * Divergence benchmark: two stores of N keys (default 1,000,000) that differ in 10 keys.
 * The detector (digest tree, then only differing buckets) against a full-scan comparison
 * (page through every record of one store and compare with the other) in the same run:
 * time to find the differences and bytes that would cross the wire (JSON as the peer API
 * sends it).
 *
 *   npm run bench -- divergence [--keys N] [--rounds R]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DivergenceDetector, storeRemote } from "../src/divergence/index.js";
import { silentLogger } from "../src/log.js";
import { realRuntime } from "../src/runtime/index.js";
import { SqliteStore, type StoredRecord } from "../src/store/index.js";
import type { WalRecord } from "../src/wal/index.js";
import { spread, writeResults, type Spread } from "./report.js";

const inc = "0f".repeat(16);
const rule = { kind: "first-write-wins" } as const;

function build(file: string, keys: number): SqliteStore {
  const store = new SqliteStore({ path: file, rule });
  const batch = 5000;
  for (let first = 1; first <= keys; first += batch) {
    const records: WalRecord[] = [];
    for (let lsn = first; lsn < first + batch && lsn <= keys; lsn++) {
      records.push({
        key: `pcs-${lsn.toString(36)}-${(lsn * 2654435761) % 1e9}`,
        tenant: "tenant-a",
        outcome: lsn % 7 ? "accepted" : "escalated",
        bodyJson: undefined,
        lsn,
        hlc: { wallMs: 1_700_000_000_000 + lsn, logical: 0 },
        flags: 0,
      });
    }
    store.applySync({
      origin: "us-east-1",
      incarnation: inc,
      firstLsn: first,
      lastLsn: records.at(-1)!.lsn,
      records,
    });
  }
  return store;
}

/** 10 differences: 5 keys won by an earlier version from another region, 5 keys only one side has. */
function diverge(b: SqliteStore, a: SqliteStore, keys: number): string[] {
  const changed: string[] = [];
  const records: WalRecord[] = [];
  for (let i = 0; i < 5; i++) {
    const lsn = Math.floor(((i + 1) * keys) / 6);
    const key = `pcs-${lsn.toString(36)}-${(lsn * 2654435761) % 1e9}`;
    records.push({
      key,
      tenant: "tenant-a",
      outcome: "rejected",
      bodyJson: undefined,
      lsn: i + 1,
      hlc: { wallMs: 1_600_000_000_000, logical: i },
      flags: 0,
    });
    changed.push(key);
  }
  for (let i = 0; i < 5; i++) {
    const key = `extra-${i}`;
    records.push({
      key,
      tenant: "tenant-a",
      outcome: "accepted",
      bodyJson: undefined,
      lsn: 6 + i,
      hlc: { wallMs: 1_600_000_000_100, logical: i },
      flags: 0,
    });
    changed.push(key);
  }
  b.applySync({ origin: "eu-west-1", incarnation: inc, firstLsn: 1, lastLsn: 10, records });
  // `a` claims to have applied eu-west-1 up to LSN 10 and lost them: real findings, not in flight.
  a.resetWatermarkSync("eu-west-1", inc, 10);
  return changed;
}

function fullScan(a: SqliteStore, b: SqliteStore): { differing: number; bytes: number } {
  let bytes = 0;
  let differing = 0;
  const same = (x: StoredRecord | undefined, y: StoredRecord) =>
    x !== undefined &&
    x.origin === y.origin &&
    x.lsn === y.lsn &&
    x.outcome === y.outcome &&
    x.incarnation === y.incarnation;
  const seen = new Set<string>();
  let after: { bucket: number; key: string } | undefined;
  do {
    const page = b.exportPageSync({ after, limit: 5000 });
    bytes += JSON.stringify(page).length;
    for (const v of page.versions) {
      seen.add(v.key);
      if (!same(a.getSync(v.key), v)) differing++;
    }
    after = page.next;
  } while (after);
  // Keys only `a` has: the scan must walk `a` too (locally, no bytes).
  let afterA: { bucket: number; key: string } | undefined;
  do {
    const page = a.exportPageSync({ after: afterA, limit: 5000 });
    for (const v of page.versions) if (!seen.has(v.key)) differing++;
    afterA = page.next;
  } while (afterA);
  return { differing, bytes };
}

export async function benchDivergence(args: { keys: number; rounds: number }): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-div-"));
  try {
    log(`building a store of ${args.keys} keys...`);
    const t0 = performance.now();
    const a0 = build(path.join(dir, "a.sqlite"), args.keys);
    await a0.close();
    fs.copyFileSync(path.join(dir, "a.sqlite"), path.join(dir, "b.sqlite"));
    const a = new SqliteStore({ path: path.join(dir, "a.sqlite"), rule });
    const b = new SqliteStore({ path: path.join(dir, "b.sqlite"), rule });
    const changed = diverge(b, a, args.keys);
    log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const detector = new DivergenceDetector({
      region: "a",
      incarnation: () => "a".repeat(32),
      store: a,
      remote: () => storeRemote(b),
      inFlightMsMax: Number.MAX_SAFE_INTEGER,
      runtime: { ...realRuntime, nowMs: () => 0 },
      log: silentLogger(),
    });
    const detectMs: number[] = [];
    const detectBytes: number[] = [];
    const scanMs: number[] = [];
    const scanBytes: number[] = [];
    let found: string[] = [];
    let scanDiffering = 0;
    for (let r = 0; r < args.rounds; r++) {
      // The first round builds both digest trees whole; later rounds find them kept up to date
      // (each store rehashes only above buckets that changed, and nothing changes here).
      let t = performance.now();
      const scan = await detector.scanPeer("b");
      detectMs.push(performance.now() - t);
      detectBytes.push(scan.bytes);
      found = scan.findings.map((f) => f.key).sort();
      t = performance.now();
      const full = fullScan(a, b);
      scanMs.push(performance.now() - t);
      scanBytes.push(full.bytes);
      scanDiffering = full.differing;
      log(
        `round ${r + 1}: detector ${detectMs.at(-1)!.toFixed(0)} ms ${scan.bytes} B, ${scan.findings.length} found; full scan ${scanMs.at(-1)!.toFixed(0)} ms ${full.bytes} B`,
      );
    }
    await a.close();
    await b.close();
    const ok = JSON.stringify(found) === JSON.stringify([...changed].sort());
    const results = {
      keys: args.keys,
      differences: changed.length,
      detectorFoundExactly: ok,
      fullScanFound: scanDiffering,
      detector: { ms: spread(detectMs), bytes: spread(detectBytes) },
      fullScan: { ms: spread(scanMs), bytes: spread(scanBytes) },
      targets: { msMax: 1000, bytesMax: 1024 * 1024 },
    };
    const f = (s: Spread, d = 0) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
    const kib = (s: Spread) => `${(s.median / 1024).toFixed(1)} KiB`;
    const md = [
      `Two stores of ${args.keys.toLocaleString("en-US")} keys differing in ${changed.length} keys (5 with another winner, 5 present on one side only); ${args.rounds} rounds, median (min–max).`,
      "",
      "| method | time ms | bytes over the wire | differences found |",
      "| --- | --- | --- | --- |",
      `| digest tree + differing buckets (crr) | ${f(results.detector.ms)} | ${kib(results.detector.bytes)} | ${found.length}${ok ? " (exactly the 10)" : " (WRONG)"} |`,
      `| full scan (page through every record) | ${f(results.fullScan.ms)} | ${kib(results.fullScan.bytes)} | ${scanDiffering} |`,
      "",
      `Detector vs full scan: ${(results.fullScan.ms.median / results.detector.ms.median).toFixed(0)}× faster, ${(results.fullScan.bytes.median / results.detector.bytes.median).toFixed(0)}× fewer bytes. Targets: under 1 s and under 1 MiB.`,
    ].join("\n");
    writeResults("divergence", results, md);
    if (!ok) process.exitCode = 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
