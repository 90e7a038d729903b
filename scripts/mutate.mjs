#!/usr/bin/env node
/**
 * Stryker over the engine's core, folder by folder, each against the in-process tests that
 * guard it (a mutant is run only against the tests that cover it, and with every in-process
 * test each mutant of a widely used file took ~40 s here). Writes each folder's JSON report
 * to reports/mutation/<folder>.json and the summary, with every surviving mutant, to
 * bench/results/mutation.md.
 *
 *   node scripts/mutate.mjs [--concurrency N] [FOLDER ...]   (default: every folder below, one runner)
 *   node scripts/mutate.mjs --summary        only rewrite the summary from the reports there are
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** The shipper's in-process tests (the simulator left out: it covers every shipper line, ~100 s a mutant). */
const shipperUnitTests = [
  "src/shipper/*.test.ts",
  "test/shipper/*.test.ts",
  "test/replication/shipper-supervision.test.ts",
  "test/replication/resync.test.ts",
];

/** The in-process tests that open a WAL (those spawning `crr serve` run dist/ and cannot kill a mutant). */
const walIoTests = [
  "src/wal/*.test.ts",
  "test/wal/wal.test.ts",
  "test/wal/wal-io.test.ts",
  "test/wal/recovery.test.ts",
  "test/recovery/wal-damage.test.ts",
  "src/node/wal-open.test.ts",
  "src/node/repair.test.ts",
  "src/node/applied-wal.test.ts",
  "src/node/append-path.test.ts",
  "test/node/local-apply-retention.test.ts",
];

/** The SQLite store's tests: its units, its own, the contract (run on SQLite alone by the parts' env) and the detector's. */
const sqliteStoreTests = [
  "src/store/*.test.ts",
  "test/store/sqlite-store.test.ts",
  "test/store/store-contract.test.ts",
  "test/store/divergence-detector.test.ts",
];

/**
 * The PostgreSQL store's tests: its own (its connections and failures, the unanswered-server
 * check) and the contract (on PostgreSQL alone by the parts' env).
 */
const postgresStoreTests = [
  "test/store/postgres-store.test.ts",
  "test/store/postgres-open.test.ts",
  "src/store/unreachable.test.ts",
  "test/store/store-contract.test.ts",
];

/** Each part: the files Stryker mutates (default: the folder's files) and the tests run against them. */
const folders = {
  clock: { tests: ["src/clock/*.test.ts"] },
  protocol: { tests: ["src/protocol/*.test.ts"] },
  divergence: {
    tests: ["src/divergence/*.test.ts", "test/store/divergence-detector.test.ts", "test/sim/*.test.ts"],
  },
  // The reader's refusals are tested over HTTP by real processes, which run dist/: here the
  // simulator (in process, ~16 s a surviving mutant) is what reaches them.
  reader: {
    tests: [
      "src/reader/*.test.ts",
      "test/shipper/*.test.ts",
      "test/replication/shipper-supervision.test.ts",
      "test/replication/resync.test.ts",
      "test/sim/*.test.ts",
    ],
  },
  shipper: {
    tests: [
      "test/shipper/*.test.ts",
      "test/replication/shipper-supervision.test.ts",
      "test/replication/resync.test.ts",
      "test/sim/*.test.ts",
    ],
  },
  // The shipper against its in-process tests without the simulator: minutes, where with the
  // simulator's seeds (every shipper line is covered by every seed) it was ~100 s a mutant,
  // about 19 hours for the folder (a lower bound of the part above).
  "shipper-units": {
    files: [
      "src/shipper/peer-shipper.ts",
      "src/shipper/backfill.ts",
      "src/shipper/stream-reader.ts",
      "src/shipper/ack-state.ts",
    ],
    tests: shipperUnitTests,
  },
  // The same, file by file (the whole part takes about 100 min here; these fit beside each other).
  "shipper-peer": { files: ["src/shipper/peer-shipper.ts"], tests: shipperUnitTests },
  "shipper-backfill": { files: ["src/shipper/backfill.ts"], tests: shipperUnitTests },
  "shipper-streams": {
    files: ["src/shipper/stream-reader.ts", "src/shipper/ack-state.ts"],
    tests: shipperUnitTests,
  },
  store: { tests: ["src/store/*.test.ts", "test/store/*.test.ts"] },
  wal: { tests: walIoTests },
  // The pure modules of wal and store alone (minutes, where the whole folders take hours).
  // (Measured first against src/*/*.test.ts alone: 61.8% and 44.4%, because the tests that
  // guard them also live in test/wal and test/store, e.g. every digest-tree test.)
  // (tail-plan.ts has its own part below.)
  "wal-pure": {
    files: ["src/wal/record.ts", "src/wal/segment.ts", "src/wal/crc32.ts"],
    tests: ["src/wal/*.test.ts", "test/wal/wal.test.ts", "test/recovery/wal-damage.test.ts"],
  },
  // The WAL's I/O (append, group commit, read, retention) and its recovery at open, each alone
  // against every in-process test that opens a WAL (hours together; apart, each fits beside
  // the others on two cores).
  "wal-log": { files: ["src/wal/wal.ts"], tests: walIoTests },
  "wal-recovery": { files: ["src/wal/recovery.ts"], tests: walIoTests },
  // Recovery's plan for the newest segment alone, against its own and the wal tests.
  "tail-plan": {
    files: ["src/wal/tail-plan.ts"],
    tests: ["src/wal/*.test.ts", "test/recovery/wal-damage.test.ts"],
  },
  // The divergence folder's pure modules (the classification, reconcile's decisions).
  "divergence-pure": {
    files: ["src/divergence/classify.ts", "src/divergence/reconcile.ts"],
    tests: ["src/divergence/*.test.ts", "test/store/divergence-detector.test.ts", "test/sim/*.test.ts"],
  },
  // The same two files against their unit tests alone: minutes, not the two hours the
  // simulator's seeds take (a lower bound of the part above).
  "divergence-units": {
    files: ["src/divergence/classify.ts", "src/divergence/reconcile.ts"],
    tests: ["src/divergence/*.test.ts"],
  },
  // The divergence scan (the detector's comparison of two regions, the monitor's loop) against
  // its unit tests and the in-process detector tests, without the simulator.
  "divergence-scan": {
    files: ["src/divergence/detector.ts", "src/divergence/monitor.ts"],
    tests: ["src/divergence/*.test.ts", "test/store/divergence-detector.test.ts"],
  },
  // What a node of a region served by several nodes remembers, against a store that forgot.
  "fellow-memory": {
    files: ["src/node/fellow-memory.ts"],
    tests: ["src/node/fellow-memory.test.ts", "src/node/fellow-wait.test.ts"],
  },
  // The SQLite store (its SQL, the rows it reads back, the catch-up from the WAL) against the
  // store's unit tests, its own tests and the contract both engines share. (Its first run here
  // estimated 12 hours: the contract's property tests on both engines cover every line.)
  // Run with the contract on SQLite alone and 10 property runs (CRR_STORE_KINDS, CRR_STORE_RUNS:
  // test/support/stores.ts); the side-by-side test still compares with PostgreSQL.
  "sqlite-store": {
    files: ["src/store/sqlite-store.ts", "src/store/rows.ts", "src/store/wal-sync.ts"],
    env: { CRR_STORE_KINDS: "sqlite", CRR_STORE_RUNS: "10" },
    tests: sqliteStoreTests,
  },
  // The SQLite store in pieces that fit a session beside other runs (the whole part is hours):
  // its row helpers and group commit, and its data path (apply, stream reads, scrub, repair,
  // export, deleteSince: the lines between applyBatch and digestXor).
  "store-rows-sync": {
    files: ["src/store/rows.ts", "src/store/wal-sync.ts"],
    tests: sqliteStoreTests,
    env: { CRR_STORE_KINDS: "sqlite", CRR_STORE_RUNS: "10" },
  },
  "sqlite-store-data": {
    files: ["src/store/sqlite-store.ts:318-805"],
    tests: sqliteStoreTests,
    env: { CRR_STORE_KINDS: "sqlite", CRR_STORE_RUNS: "5" },
  },
  // The rest of it: opening, schema and migration, digests at open, point reads, meta, close.
  // The two parts' line ranges partition the file (1-317, 318-805, 806-end), so however edits
  // move the boundary between them, every mutant is counted once.
  "sqlite-store-rest": {
    files: ["src/store/sqlite-store.ts:1-317", "src/store/sqlite-store.ts:806-1400"],
    tests: sqliteStoreTests,
    env: { CRR_STORE_KINDS: "sqlite", CRR_STORE_RUNS: "5" },
  },
  // The PostgreSQL store against its own tests and the contract on PostgreSQL alone (5 property
  // runs: each is a round trip per statement). Hours: the contract covers nearly every line.
  "postgres-store": {
    files: ["src/store/postgres-store.ts"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  // The same in two pieces that partition the file (the whole is about 4 hours alone): the data
  // path (apply, merge, contest, insert, heal, finish, digests written: applyBatch to
  // writeDigests) and the rest (open, retries, reads, scrub, repair, meta, export, deleteSince).
  "postgres-store-data": {
    files: ["src/store/postgres-store.ts:266-764"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  // The data part in three pieces that partition it (each under an hour alone, so one fits in a
  // session beside other work; the data part whole did not): the region's nodes and claims
  // (applyBatch to leaveIn), the apply path (applyIn to contestRepair), the writes (lockKeys to
  // writeDigests).
  "postgres-store-nodes": {
    files: ["src/store/postgres-store.ts:266-438"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  "postgres-store-apply": {
    files: ["src/store/postgres-store.ts:439-607"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  "postgres-store-write": {
    files: ["src/store/postgres-store.ts:608-764"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  "postgres-store-rest": {
    files: ["src/store/postgres-store.ts:1-265", "src/store/postgres-store.ts:765-1200"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  // The rest in two pieces, each well under an hour alone: the schema, opening
  // and the claims' statements; the digests, reads, scrub, repair, exports and meta.
  "postgres-store-open": {
    files: ["src/store/postgres-store.ts:1-265"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  "postgres-store-reads": {
    files: ["src/store/postgres-store.ts:765-1200"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  // The reads in two pieces that partition them (266 mutants whole: hours beside other work):
  // digests, scrub, repair and the per-key and per-stream reads (refreshDigests to
  // forgetAuditNotes); the stream and export reads, deleteSince, meta (winnersOf to the end).
  "postgres-store-scan": {
    files: ["src/store/postgres-store.ts:765-960"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  "postgres-store-export": {
    files: ["src/store/postgres-store.ts:961-1200"],
    tests: postgresStoreTests,
    env: { CRR_STORE_KINDS: "postgres", CRR_STORE_RUNS: "5" },
  },
  "store-pure": {
    files: ["src/store/merge.ts", "src/store/digest.ts", "src/store/digest-tree.ts"],
    tests: ["src/store/*.test.ts", "test/store/*.test.ts"],
  },
};
const skipped = ["index.ts", "pure.ts", "checkpointer.ts", "inspect.ts"];

/**
 * The PostgreSQL clusters a part's test runners left behind, and their files. Stryker kills a
 * runner that timed out and starts another, whose suite setup starts a cluster of its own: the
 * killed one's postgres outlives it, and its directory holds every database its tests made.
 * One part left 15 directories of 2.5–5.7 GB and filled the disk, and Stryker, writing its
 * report, died with the part's results. The postgres processes of this process group are
 * stopped by PID (SIGINT: fast shutdown), then every crr-pg-* directory whose postmaster is
 * gone and that was not touched for 10 minutes is removed (another suite's live cluster is
 * left alone).
 */
function sweepClusters() {
  const pgrpOf = (pid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2];
    } catch {
      return undefined;
    }
  };
  const alive = (pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const mine = pgrpOf("self");
  for (const pid of fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    let cmd = "";
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (pgrpOf(pid) === mine && /postgres\0-D\0[^\0]*\/crr-pg-/.test(cmd))
      process.kill(Number(pid), "SIGINT");
  }
  spawnSync("sleep", ["3"]);
  const tmp = os.tmpdir();
  for (const name of fs.readdirSync(tmp).filter((n) => n.startsWith("crr-pg-"))) {
    const dir = path.join(tmp, name);
    const pidFile = path.join(dir, "data", "postmaster.pid");
    const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]) : 0;
    if (pid > 0 && alive(pid)) continue;
    if (Date.now() - fs.statSync(dir).mtimeMs < 10 * 60_000 && pid === 0) continue; // being made
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const summaryOnly = process.argv.includes("--summary");
const at = process.argv.indexOf("--concurrency");
const concurrency = at === -1 ? "1" : process.argv[at + 1];
const args = process.argv
  .slice(2)
  .filter((a, i, all) => a !== "--summary" && a !== "--concurrency" && all[i - 1] !== "--concurrency");
const chosen = summaryOnly ? [] : args.length > 0 ? args : Object.keys(folders);
const unknown = chosen.filter((f) => !(f in folders));
if (unknown.length > 0) {
  console.error(`unknown part(s): ${unknown.join(", ")}; known: ${Object.keys(folders).join(", ")}`);
  process.exit(2);
}
fs.mkdirSync("reports/mutation", { recursive: true });
for (const folder of chosen) {
  const files =
    folders[folder].files ??
    fs
      .readdirSync(`src/${folder}`)
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !skipped.includes(f))
      .map((f) => `src/${folder}/${f}`);
  const started = Date.now();
  // Stryker's output (its progress included) goes to reports/mutation/<part>.log as it runs.
  const logFile = `reports/mutation/${folder}.log`;
  const log = fs.openSync(logFile, "w");
  const r = spawnSync(
    "npx",
    [
      "stryker",
      "run",
      "--mutate",
      files.join(","),
      "--concurrency",
      concurrency,
      "--reporters",
      "json,clear-text,progress-append-only",
    ],
    {
      stdio: ["ignore", log, log],
      env: {
        ...process.env,
        CRR_MUTATE_SIM: "0",
        CRR_MUTATE_TESTS: folders[folder].tests.join(","),
        ...folders[folder].env,
      },
    },
  );
  fs.closeSync(log);
  try {
    sweepClusters();
  } catch (err) {
    console.error(`${folder}: could not sweep the test clusters: ${err.message}`);
  }
  if (r.status !== 0) {
    console.error(
      `${folder}: stryker failed (see ${logFile})\n${fs.readFileSync(logFile, "utf8").slice(-3000)}`,
    );
    process.exit(1);
  }
  fs.renameSync("reports/mutation/mutation.json", `reports/mutation/${folder}.json`);
  const seconds = Math.round((Date.now() - started) / 1000);
  fs.writeFileSync(`reports/mutation/${folder}.seconds`, String(seconds));
  console.log(`${folder}: done in ${seconds} s`);
}

// The summary of every folder with a report.
const rows = [];
const survivors = [];
for (const folder of Object.keys(folders)) {
  const file = `reports/mutation/${folder}.json`;
  if (!fs.existsSync(file)) continue;
  const report = JSON.parse(fs.readFileSync(file, "utf8"));
  const count = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, other: 0 };
  for (const [path, f] of Object.entries(report.files)) {
    const lines = f.source.split("\n");
    for (const m of f.mutants) {
      count[m.status in count ? m.status : "other"]++;
      if (m.status === "Survived" || m.status === "NoCoverage")
        survivors.push(
          `| ${path}:${m.location.start.line} | ${m.mutatorName} | \`${(m.replacement ?? "").replace(/\s+/g, " ").replace(/\|/g, "\\|").slice(0, 60)}\` | ${m.status} | \`${lines[m.location.start.line - 1].trim().replace(/\|/g, "\\|").slice(0, 80)}\` |`,
        );
    }
  }
  const detected = count.Killed + count.Timeout;
  const valid = detected + count.Survived + count.NoCoverage;
  const seconds = fs.existsSync(`reports/mutation/${folder}.seconds`)
    ? fs.readFileSync(`reports/mutation/${folder}.seconds`, "utf8")
    : "?";
  rows.push(
    `| ${folders[folder].files ? folders[folder].files.join(", ") : `src/${folder}`} | ${valid} | ${count.Killed} | ${count.Timeout} | ${count.Survived} | ${count.NoCoverage} | ${((100 * detected) / valid).toFixed(1)}% | ${seconds} |`,
  );
}
// What follows the notes marker in the current summary (why each survivor is equivalent) is
// written by hand and kept.
const marker = "<!-- notes: written by hand, kept by scripts/mutate.mjs -->";
const previous = fs.existsSync("bench/results/mutation.md")
  ? fs.readFileSync("bench/results/mutation.md", "utf8")
  : "";
const notes = previous.includes(marker) ? previous.slice(previous.indexOf(marker)) : `${marker}\n`;
// Parts with no report here (run on another machine, or not this time) keep their row and
// their survivors from the current summary: a run of one part never drops the others.
const reported = Object.keys(folders).filter((f) => fs.existsSync(`reports/mutation/${f}.json`));
const reportedFiles = reported.flatMap(
  (f) => folders[f].files ?? fs.readdirSync(`src/${f}`).map((n) => `src/${f}/${n}`),
);
// Whether a report of this run covers a kept survivor's file and line ("src/x.ts" covers every
// line; "src/x.ts:10-20" the lines 10 to 20).
const covered = (line) => {
  const [, file, at] = /^\| (src\/[^:|]*):(\d+) /.exec(line) ?? [];
  return reportedFiles.some((spec) => {
    const [name, range] = spec.split(":");
    if (name !== file) return false;
    if (!range) return true;
    const [from, to] = range.split("-").map(Number);
    return Number(at) >= from && Number(at) <= to;
  });
};
const previousLines = previous.split(marker)[0].split("\n");
const survivorsStart = previousLines.indexOf("## Surviving mutants");
// The parts' table only: the folder table below it is written anew from the parts.
const folderTableStart = previousLines.findIndex((l) => l.startsWith("By folder"));
const partsEnd = folderTableStart !== -1 ? folderTableStart : survivorsStart;
for (const line of previousLines.slice(0, partsEnd === -1 ? undefined : partsEnd))
  if (
    /^\| src\//.test(line) &&
    !reported.some((f) =>
      line.startsWith(`| ${folders[f].files ? folders[f].files.join(", ") : `src/${f}`} `),
    )
  )
    rows.push(line);
if (survivorsStart !== -1)
  for (const line of previousLines.slice(survivorsStart))
    if (/^\| src\/[^|]*:\d+ /.test(line) && !covered(line)) survivors.push(line);
// The score of each folder: the sum of its parts' rows. A part that holds another (the whole
// SQLite store beside its pieces) is left out of the sum, so no mutant counts twice.
const within = (inner, outer) => {
  const [f, r] = inner.split(":");
  const [g, q] = outer.split(":");
  if (f !== g) return false;
  if (!q) return true;
  if (!r) return false;
  const [a, b] = r.split("-").map(Number);
  const [c, d] = q.split("-").map(Number);
  return a >= c && b <= d;
};
const parsed = rows.map((line) => {
  const cells = line.split("|").map((c) => c.trim());
  return { specs: cells[1].split(", "), n: cells.slice(2, 7).map(Number) };
});
const byFolder = new Map();
for (const row of parsed) {
  const holdsAnother = parsed.some(
    (other) => other !== row && other.specs.every((o) => row.specs.some((r) => within(o, r))),
  );
  if (holdsAnother) continue;
  const folder = row.specs[0].split("/").slice(0, 2).join("/");
  const sum = byFolder.get(folder) ?? [0, 0, 0, 0, 0];
  row.n.forEach((v, i) => (sum[i] += v));
  byFolder.set(folder, sum);
}
const folderRows = [...byFolder.entries()]
  .sort(([a], [b]) => a.localeCompare(b))
  .map(
    ([folder, [valid, killed, timeout, survived, none]]) =>
      `| ${folder} | ${valid} | ${killed} | ${timeout} | ${survived} | ${none} | ${((100 * (killed + timeout)) / valid).toFixed(1)}% |`,
  );
const md = [
  "# Mutation testing (Stryker)",
  "",
  "`node scripts/mutate.mjs [FOLDER ...]` (Stryker 9.6, vitest runner, perTest coverage, one runner;",
  "each folder against the in-process tests listed in the script; the reader, shipper and divergence\nparts include the simulator's fixed seeds, the others leave it out).",
  "",
  "| folder | mutants | killed | timeout | survived | no coverage | score | s |",
  "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ...rows,
  "",
  "By folder, as measured (the sum of its parts above; a part run before tests written for its",
  "survivors counts those survivors; files of a folder not yet measured are not in its sum):",
  "",
  "| folder | mutants | killed | timeout | survived | no coverage | score |",
  "| --- | --- | --- | --- | --- | --- | --- |",
  ...folderRows,
  "",
  "## Surviving mutants",
  "",
  "| where | mutator | replacement | status | line |",
  "| --- | --- | --- | --- | --- |",
  ...survivors,
  "",
  notes,
].join("\n");
fs.writeFileSync("bench/results/mutation.md", md);
console.log(rows.join("\n"));
