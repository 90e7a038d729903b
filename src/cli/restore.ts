/**
 * `crr restore --config FILE [--to TIME] [--out FILE]`: a store as of a point in time, built
 * from the S3 archive of every origin (what `archive.s3` names). Offline and separate: it
 * writes a new SQLite file and touches nothing of a running node.
 */
import fs from "node:fs";
import path from "node:path";
import {
  listAll,
  planRestore,
  restoreInto,
  s3ArchiveStore,
  sendsTenant,
  streamAudiences,
  streamId,
} from "../archive/index.js";
import { credentialsOf, replicationPolicy } from "../config/index.js";
import { mergeRuleOf } from "../node/index.js";
import { realRuntime } from "../runtime/index.js";
import { SqliteStore } from "../store/index.js";
import { CliUsageError, loadConfigOrUsage, parseCommand } from "./args.js";

const restoreHelp = `crr restore --config FILE [--to TIME] [--out FILE]

Builds this region's store as of TIME (ISO date or ms since the epoch; default: everything
archived) from the S3 archive (archive.s3): every record of every origin whose hybrid
timestamp is at most TIME, under this region's replication policy, merged by its conflict
rule. Every archived object is checked (its origin's seal: a signature over its range,
SHA-256 and length; a whole scan of its LSN range) before it is used; a stretch of LSNs the archive lacks is refused, naming it, before anything is
written. Writes a new SQLite file (default <dataDir>/restore-<TIME>.sqlite; never
overwrites one) and prints what it holds and its digest.`;

export async function runRestore(argv: string[]): Promise<number> {
  const { values } = parseCommand("restore", argv, {
    config: { type: "string", short: "c" },
    to: { type: "string" },
    out: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${restoreHelp}\n`);
    return 0;
  }
  if (typeof values.config !== "string")
    throw new CliUsageError(`restore: --config FILE is required\n\n${restoreHelp}`);
  const config = loadConfigOrUsage(values.config);
  const s3 = config.archive.s3;
  if (!s3) throw new CliUsageError(`restore: ${values.config} configures no archive (archive.s3)`);
  const toMs = parseTime(values.to);
  const out = path.resolve(
    typeof values.out === "string"
      ? values.out
      : path.join(config.dataDir, `restore-${toMs ?? "all"}.sqlite`),
  );
  if (fs.existsSync(out) || fs.existsSync(`${out}.partial`))
    throw new CliUsageError(`restore: ${out} (or ${out}.partial) exists; choose another --out`);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const store = s3ArchiveStore({
    s3,
    attempts: config.archive.requestAttempts,
    requestTimeoutMs: config.archive.requestTimeoutMs,
    runtime: realRuntime,
    onRequest: () => undefined,
  });
  try {
    const prefix = s3.prefix.replace(/^\/+|\/+$/g, "");
    const ring = credentialsOf(config).ring;
    const plan = planRestore(await listAll(store, prefix === "" ? "" : `${prefix}/`), {
      prefix,
      origins: Object.keys(config.regions),
    });
    say(`restore from s3://${s3.bucket}/${s3.prefix}: ${plan.length} streams`);
    // Of another region's stream, only the tenants its own published policy sends here
    // (audience.ts); without its word (a build before it), what this region's policy takes,
    // said: a restore that left the stream out would look complete and not be.
    const heard = await streamAudiences(store, ring, prefix, config.region, plan);
    for (const why of heard.passedOver.values())
      say(`  warning: ${why}: its records are kept as this region's own policy takes them`);
    const originSends = (origin: string, incarnation: string, tenant: string) => {
      const a = heard.audiences.get(streamId(origin, incarnation));
      return a === undefined || sendsTenant(a, config.region, tenant);
    };
    fs.mkdirSync(path.dirname(out), { recursive: true });
    // Written under a temporary name, renamed once complete: a restore killed half way never
    // leaves a file that looks finished.
    const partial = `${out}.partial`;
    const into = new SqliteStore({ path: partial, rule: mergeRuleOf(config), checkpointer: false });
    let digest: string;
    try {
      const report = await restoreInto({
        store,
        plan,
        into,
        toMs,
        policy: replicationPolicy(config),
        self: config.region,
        keys: ring,
        objectBytesMax: config.archive.objectBytesMax,
        originSends,
      });
      for (const s of report.streams) {
        const last = s.lastMs === undefined ? "" : `, last record at ${new Date(s.lastMs).toISOString()}`;
        say(`  ${s.origin} ${s.incarnation}: LSNs ${s.fromLsn}..${s.toLsn}, ${s.records} records${last}`);
      }
      // A stream the archive holds nothing after the time of may end before it: its origin's
      // records acknowledged between its last archived one and the time are not in the archive.
      const current = new Map<string, (typeof report.streams)[number]>();
      for (const s of report.streams)
        if (!current.has(s.origin) || (s.lastMs ?? 0) > (current.get(s.origin)!.lastMs ?? 0))
          current.set(s.origin, s);
      if (toMs !== undefined)
        for (const s of current.values())
          if (!s.reachesTime)
            say(
              `  warning: the archive of ${s.origin} holds nothing after ${s.lastMs === undefined ? "its start" : new Date(s.lastMs).toISOString()}: what ${s.origin} acknowledged from then to ${new Date(toMs).toISOString()} may be missing`,
            );
      digest = await into.rootDigest();
      say(
        `restored ${report.records} records from ${report.objects} objects${toMs === undefined ? "" : ` as of ${new Date(toMs).toISOString()}`} into ${out}; digest ${digest}`,
      );
    } finally {
      await into.close();
    }
    fs.renameSync(partial, out);
    return 0;
  } catch (err) {
    for (const f of [out, `${out}.partial`, `${out}.partial-wal`, `${out}.partial-shm`])
      fs.rmSync(f, { force: true });
    throw err;
  } finally {
    store.close();
  }
}

function parseTime(t: unknown): number | undefined {
  if (typeof t !== "string") return undefined;
  const ms = /^\d+$/.test(t) ? Number(t) : Date.parse(t);
  if (!Number.isFinite(ms)) throw new CliUsageError(`restore: --to ${t} is not a date or ms timestamp`);
  return ms;
}
