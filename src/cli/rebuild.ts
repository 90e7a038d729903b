/**
 * `crr rebuild` (offline: the node must be stopped, the data directory's lock says so) and
 * `crr audit verify`.
 */
import fs from "node:fs";
import path from "node:path";
import { verifyAuditFiles } from "../audit/index.js";
import type { PeerLink, WatermarksView } from "../link/index.js";
import { silentLogger } from "../log.js";
import type { NodeConfig } from "../config/index.js";
import {
  Region,
  auditStoreLeftovers,
  copyMesh,
  mergeRuleOf,
  seedRegion,
  type SeededStream,
} from "../node/index.js";
import { PostgresStore } from "../store/index.js";
import { CliUsageError, loadConfigOrUsage, parseCommand } from "./args.js";
import { sayBeyond } from "./bootstrap.js";

const rebuildHelp = `crr rebuild --config FILE [--since TIME]

Rebuilds this region's dedup store while its node is stopped. Without --since: the old store
is moved aside (store.sqlite.before-rebuild-*), this region's records are replayed from its
WAL (those older than its oldest segment are copied back from the peers), then each peer's
own stream and our own older incarnations are copied whole from the peers, and every other
winning version from one of them; origins re-ship anything newer. With an archive
(archive.s3), every origin's archived stream is restored first and the peers give only the
rest (a peer that is down is then not needed for what the archive holds). With --since TIME (ISO
date or ms since the epoch): only records written since TIME are dropped and re-shipped.
Start the node again afterwards; its digest then equals its peers'.`;

async function askPeers(region: Region, say: (s: string) => void): Promise<Map<string, WatermarksView>> {
  const views = new Map<string, WatermarksView>();
  for (const [peer, link] of region.links as ReadonlyMap<string, PeerLink>) {
    try {
      views.set(peer, await link.watermarks(AbortSignal.timeout(30_000)));
    } catch (err) {
      say(
        `  ${peer}: unavailable (${(err as Error).message.split("\n")[0]}); its records re-ship when its node runs`,
      );
    }
  }
  return views;
}

/**
 * With an archive: every origin's archived stream first (a peer that is down, or whose WAL
 * no longer holds what is needed, is then not needed for it); the peers give the rest. An
 * archive that cannot be read fails the rebuild: it may hold what no peer does (a tenant
 * this region sends nowhere, older than its WAL), and a store rebuilt without it would let
 * the node decide those keys again.
 */
async function fromArchive(region: Region, say: (s: string) => void): Promise<SeededStream[]> {
  if (!region.config.archive.s3) return [];
  let r: Awaited<ReturnType<typeof seedRegion>>;
  try {
    r = await seedRegion(region, "s3", 30_000, { rebuilding: true });
  } catch (err) {
    const again =
      region.config.store.kind === "postgres"
        ? "empty the database (it holds part of the rebuild now) and run crr rebuild again"
        : "the old store is kept aside: run crr rebuild again";
    throw new Error(
      `rebuild: the archive (archive.s3) could not be read (${(err as Error).message}): it may hold records no peer does. The store is not rebuilt; ${again} when the archive is readable, before the node starts`,
    );
  }
  say(`  the archive: ${r.records} records in ${r.streams.length} streams`);
  for (const why of r.passedOver ?? []) say(`  the archive: passed over (the peers give it): ${why}`);
  for (const c of r.cut ?? [])
    say(
      `  the archive: cut short at LSN ${c.lsn}: ${c.origin}/${c.incarnation} (${c.why})${sayBeyond(c.beyond)}; the peers give what they hold after it`,
    );
  return r.streams;
}

export async function runRebuild(argv: string[]): Promise<number> {
  const { values } = parseCommand("rebuild", argv, {
    config: { type: "string", short: "c" },
    since: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${rebuildHelp}\n`);
    return 0;
  }
  if (typeof values.config !== "string")
    throw new CliUsageError(`rebuild: --config FILE is required\n\n${rebuildHelp}`);
  const config = loadConfigOrUsage(values.config);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  if (typeof values.since === "string") {
    const sinceMs = /^\d+$/.test(values.since) ? Number(values.since) : Date.parse(values.since);
    if (!Number.isFinite(sinceMs))
      throw new CliUsageError(`rebuild: --since ${values.since} is not a date or ms timestamp`);
    const region = await Region.open(config, { log: silentLogger() });
    try {
      const streams = await region.store.deleteSince(sinceMs);
      for (const s of streams)
        say(`  ${s.origin}: dropped ${s.removed} records from LSN ${s.fromLsn}; it will re-ship from there`);
      say(
        `rebuild since ${new Date(sinceMs).toISOString()}: ${streams.reduce((n, s) => n + s.removed, 0)} records dropped; start the node to re-apply them`,
      );
    } finally {
      await region.close();
    }
    // This region's own records come back from its WAL on the next open.
    return 0;
  }
  const dir = config.dataDir;
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  // Region.open below refuses if the node runs; check first so nothing is moved under it.
  refuseWhileRunning(dir, "rebuild");
  if (config.store.kind === "postgres") await refuseUnlessEmpty(config);
  else await auditOldStore(config, say);
  for (const f of fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith("store.sqlite")) : []) {
    fs.renameSync(
      path.join(dir, f),
      path.join(dir, f.replace("store.sqlite", `store.sqlite.before-rebuild-${stamp}`)),
    );
  }
  say(
    config.store.kind === "postgres"
      ? `rebuilding ${config.region} into an empty PostgreSQL database`
      : `rebuilding ${config.region} in ${dir} (the old store was moved aside)`,
  );
  const region = await Region.open(config, { log: silentLogger() });
  try {
    say(`  ${config.region}: replayed its WAL up to LSN ${region.wal.durableLsn}`);
    const covered = await fromArchive(region, say);
    const views = await askPeers(region, say);
    const copied = await copyMesh({
      region: config.region,
      views,
      links: region.links,
      store: region.store,
      accepts: (origin, tenant) => region.policy.accepts(origin, tenant),
      covered,
    });
    say(`  copied ${copied.copied} versions from ${[...views.keys()].join(", ") || "nobody"}`);
    const stats = await region.store.stats();
    say(
      `rebuilt: ${stats.records} records, digest ${(await region.store.rootDigest()).slice(0, 16)}…; start the node to catch up with what arrived meanwhile`,
    );
    return 0;
  } finally {
    await region.close();
  }
}

const auditHelp = `crr audit verify FILE|DIR... [--expect-head HASH] [--json]

Checks the audit log's hash chain across the files given (a directory means its
audit-*.log files in order): every line's own hash, every link to the previous line, the
sequence. Reports the first broken link with file, line and entry number; exit 1 on one.
--expect-head HASH also detects entries removed from the end (the head is shown by
'crr status').`;

export async function runAudit(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h") {
    process.stdout.write(`${auditHelp}\n`);
    return 0;
  }
  if (sub !== "verify")
    throw new CliUsageError(
      `unknown 'audit' subcommand ${JSON.stringify(sub ?? "")}; try 'crr audit verify FILE'`,
    );
  const { values, positionals } = parseCommand("audit verify", rest, {
    "expect-head": { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${auditHelp}\n`);
    return 0;
  }
  if (positionals.length === 0)
    throw new CliUsageError(`audit verify: expected at least one FILE or DIR\n\n${auditHelp}`);
  const files: string[] = [];
  for (const p of positionals) {
    if (!fs.existsSync(p)) throw new CliUsageError(`audit verify: no such file or directory: ${p}`);
    if (fs.statSync(p).isDirectory())
      files.push(
        ...fs
          .readdirSync(p)
          .filter((f) => /^audit-\d{6}\.log$/.test(f))
          .sort()
          .map((f) => path.join(p, f)),
      );
    else files.push(p);
  }
  const report = verifyAuditFiles(files, values["expect-head"] as string | undefined);
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else if (report.problem) {
    const p = report.problem;
    process.stdout.write(
      `BROKEN: ${p.file} line ${p.line}${p.seq === undefined ? "" : ` (entry ${p.seq})`}: ${p.reason}\n`,
    );
  } else {
    process.stdout.write(
      `ok: ${report.entries} entries in ${files.length} files, chain intact; head seq ${report.head?.seq ?? 0} hash ${report.head?.hash ?? "-"}\n`,
    );
  }
  return report.problem ? 1 : 0;
}

/**
 * Before the old store moves aside: what it holds that the audit log does not yet (conflicts
 * past the log's mark, audit notes), written to the log. A log that cannot be written refuses
 * the rebuild with nothing moved; a store that cannot be read is said, not hidden.
 */
async function auditOldStore(config: NodeConfig, say: (s: string) => void): Promise<void> {
  const owed = await auditStoreLeftovers(config, silentLogger());
  if (owed.unreadable !== undefined)
    say(
      `  the old store could not be read (${owed.unreadable}): conflicts or audit notes it had not yet written to the audit log, if any, stay in the moved-aside file`,
    );
  else if (owed.conflicts + owed.notes > 0)
    say(
      `  wrote to the audit log what the old store had not: ${owed.conflicts} conflicts, ${owed.notes} audit notes`,
    );
}

/**
 * A PostgreSQL store is not moved aside by crr (other nodes of the region may use it): the
 * operator points store.url at an empty database, and the old one stays as it was.
 */
async function refuseUnlessEmpty(config: NodeConfig): Promise<void> {
  const store = await PostgresStore.open({ url: config.store.url!, rule: mergeRuleOf(config), poolSize: 1 });
  try {
    if (!(await store.isEmpty()))
      throw new CliUsageError(
        `rebuild: ${store.description} holds data; create an empty database, point store.url at it and run crr rebuild again (the old database is kept as it is; --since works on it in place)`,
      );
  } finally {
    await store.close();
  }
}

/** Refuse when a live process holds the data directory's LOCK (the node runs). */
export function refuseWhileRunning(dir: string, command: string): void {
  const lockFile = path.join(dir, "LOCK");
  if (!fs.existsSync(lockFile)) return;
  const holder = JSON.parse(fs.readFileSync(lockFile, "utf8")) as { pid: number };
  try {
    process.kill(holder.pid, 0);
    throw new CliUsageError(`${command}: the node (pid ${holder.pid}) is running on ${dir}; stop it first`);
  } catch (err) {
    if (err instanceof CliUsageError) throw err;
  }
}
