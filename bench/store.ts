/**
 * Replay throughput into each dedup store, in the same run: SQLite (a file, group commit of
 * the -wal) and PostgreSQL (a temporary cluster of the machine's PostgreSQL, on loopback).
 * The same records go into each: peers' batches through applyBatch (durable when it returns),
 * one stream and then `streams` streams at once (what several peers' readers do), and the
 * region's own records through applyLocal in the batch sizes the local applier makes. Rounds
 * alternate which engine goes first; medians and spread of records/s, and the ratio per round.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PostgresStore, SqliteStore, type DedupStore } from "../src/store/index.js";
import type { WalRecord } from "../src/wal/index.js";
import { freshDatabase, startPostgres } from "../src/bench/postgres.js";
import { spread, writeResults, type Spread } from "./report.js";

const rule = { kind: "first-write-wins" } as const;
const incarnation = "5e".repeat(16);

interface Case {
  name: string;
  streams: number;
  batch: number;
  local: boolean;
}

function recordsOf(stream: number, from: number, n: number): WalRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const lsn = from + i;
    return {
      key: `s${stream}-${((lsn * 2654435761) % 1e9).toString(36)}-${lsn}`,
      tenant: "tenant-a",
      outcome: lsn % 7 ? "accepted" : "escalated",
      bodyJson: `{"amount":${lsn % 1000}}`,
      lsn,
      hlc: { wallMs: 1_700_000_000_000 + lsn, logical: stream },
      flags: 0,
    };
  });
}

/** Records per second applying `perStream` records of each stream, the streams side by side. */
async function replay(store: DedupStore, c: Case, perStream: number): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: c.streams }, async (_, s) => {
      for (let first = 1; first <= perStream; first += c.batch) {
        const records = recordsOf(s, first, Math.min(c.batch, perStream - first + 1));
        const batch = {
          origin: `region-${s}`,
          incarnation,
          firstLsn: first,
          lastLsn: records.at(-1)!.lsn,
          records,
        };
        const r = await (c.local ? store.applyLocal(batch) : store.applyBatch(batch));
        if (r.status !== "applied") throw new Error(`batch ${first} of stream ${s}: ${r.status}`);
      }
    }),
  );
  return (c.streams * perStream) / ((performance.now() - started) / 1000);
}

export async function benchStore(o: { rounds: number; records: number }): Promise<void> {
  const server = await startPostgres();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-store-"));
  const cases: Case[] = [
    { name: "peer batches of 500, 1 stream", streams: 1, batch: 500, local: false },
    { name: "peer batches of 500, 4 streams at once", streams: 4, batch: 500, local: false },
    { name: "own records, batches of 50 (applyLocal)", streams: 1, batch: 50, local: true },
  ];
  const engines = {
    sqlite: async () =>
      new SqliteStore({ path: path.join(fs.mkdtempSync(path.join(scratch, "s-")), "store.sqlite"), rule }),
    postgres: async () =>
      PostgresStore.open({ url: await freshDatabase(server.url, "bench"), rule, poolSize: 8 }),
  };
  const results: Array<{ case: string; sqlite: Spread; postgres: Spread; ratio: Spread }> = [];
  try {
    for (const c of cases) {
      const rates: Record<"sqlite" | "postgres", number[]> = { sqlite: [], postgres: [] };
      for (let round = 0; round < o.rounds; round++) {
        const order = round % 2 === 0 ? (["sqlite", "postgres"] as const) : (["postgres", "sqlite"] as const);
        for (const engine of order) {
          const store = await engines[engine]();
          try {
            rates[engine].push(await replay(store, c, Math.floor(o.records / c.streams)));
          } finally {
            await store.close();
          }
        }
      }
      const ratio = rates.postgres.map((p, i) => p / rates.sqlite[i]!);
      results.push({
        case: c.name,
        sqlite: spread(rates.sqlite),
        postgres: spread(rates.postgres),
        ratio: spread(ratio),
      });
    }
  } finally {
    await server.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const fmt = (s: Spread) => `${Math.round(s.median)} (${Math.round(s.min)}–${Math.round(s.max)})`;
  const rows = results.map(
    (r) =>
      `| ${r.case} | ${fmt(r.sqlite)} | ${fmt(r.postgres)} | ${r.ratio.median.toFixed(2)} (${r.ratio.min.toFixed(2)}–${r.ratio.max.toFixed(2)}) |`,
  );
  writeResults(
    "store",
    { rounds: o.rounds, records: o.records, results },
    [
      `${o.records} records per run, ${o.rounds} rounds (engines alternating first). Records/s, median (min–max); ratio = PostgreSQL / SQLite in the same round.`,
      "",
      "| case | SQLite | PostgreSQL | ratio |",
      "| --- | --- | --- | --- |",
      ...rows,
      "",
      "PostgreSQL 15 runs on the same 2 cores, on loopback, with synchronous_commit on (each transaction fsynced by PostgreSQL's own WAL). SQLite commits peer batches by group commit of its -wal and the region's own records without a sync (the inbox WAL holds them).",
    ].join("\n"),
  );
}
