/**
 * `crr verify` and `crr reconcile`: run the divergence check once (through the running node's
 * admin route, or, if the node is not running, by opening the region here), print findings,
 * and with reconcile, repair each divergent or missing key by the merge rule.
 */
import { ConfigError, loadConfig, type NodeConfig } from "../config/index.js";
import { PeerClient, fromWire, type Finding, type ScanReport } from "../divergence/index.js";
import { silentLogger } from "../log.js";
import { Region, mergeRuleOf } from "../node/index.js";
import { compareVersions, type StoredRecord } from "../store/index.js";
import { CliUsageError, parseCommand } from "./args.js";
import { callNode } from "./http.js";

function describeVersion(v: StoredRecord | undefined): string {
  return v ? `'${v.outcome}' (${v.origin} LSN ${v.lsn})` : "nothing";
}

export function describeFinding(f: Finding): string {
  if (f.kind === "divergent") {
    return `DIVERGENT ${f.key}: ${f.local} has ${describeVersion(f.localVersion)}, ${f.remote} has ${describeVersion(f.remoteVersion)}`;
  }
  const v = f.localVersion ?? f.remoteVersion!;
  const wm = f.missingIn === f.local ? f.watermarks.local : f.watermarks.remote;
  const stream = Object.entries(wm)
    .map(([s, l]) => `${s.split("/")[0]} ${l}`)
    .join(", ");
  return `MISSING   ${f.key}: ${f.missingIn} lacks ${describeVersion(v)} although it applied up to ${stream}`;
}

function loadOrExit(file: string): NodeConfig {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliUsageError(err.message);
    throw err;
  }
}

/** Ask the running node; if nothing answers, open the region here (it takes the data directory's lock). */
async function scan(config: NodeConfig): Promise<{ report: ScanReport; offline: Region | undefined }> {
  const url = `http://${config.listen.host}:${config.listen.port}`;
  try {
    return {
      report: await callNode<ScanReport>(url, "v1/admin/verify", "POST", 120_000),
      offline: undefined,
    };
  } catch {
    const region = await Region.open(config, { log: silentLogger() });
    try {
      return { report: await region.verify({ fullScrub: true }), offline: region };
    } catch (err) {
      await region.close();
      throw err;
    }
  }
}

function printReport(report: ScanReport, say: (s: string) => void): void {
  for (const p of report.peers) {
    say(
      `compared with ${p.peer}: ${p.bucketsDiffering} buckets differ, ${p.keysCompared} keys compared, ${p.findings.length} findings (${(p.bytes / 1024).toFixed(1)} KiB, ${p.durationMs.toFixed(0)} ms)`,
    );
  }
  for (const e of report.errors) say(`could not compare with ${e.peer}: ${e.error}`);
  for (const f of report.findings) say(describeFinding(f));
}

const verifyHelp = `crr verify --config FILE [--json]

Runs the divergence check once: recomputes this region's bucket digests from its records,
compares digest trees with every peer and classifies each differing key. Prints findings;
exit 0 when there are none, 1 when there are, 2 when a peer could not be compared.`;

export async function runVerify(argv: string[]): Promise<number> {
  const { values } = parseCommand("verify", argv, {
    config: { type: "string", short: "c" },
    json: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${verifyHelp}\n`);
    return 0;
  }
  if (typeof values.config !== "string")
    throw new CliUsageError(`verify: --config FILE is required\n\n${verifyHelp}`);
  const config = loadOrExit(values.config);
  const { report, offline } = await scan(config);
  await offline?.close();
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    printReport(report, (s) => process.stdout.write(`${s}\n`));
    process.stdout.write(
      report.findings.length === 0 ? "no divergence\n" : `${report.findings.length} findings\n`,
    );
  }
  if (report.findings.length > 0) return 1;
  return report.errors.length > 0 ? 2 : 0;
}

const reconcileHelp = `crr reconcile --config FILE [--apply]

Runs the divergence check, then for each divergent or missing key reads the versions from
the WAL of their origin regions (the source of truth; the stored copy if the WAL no longer
holds it), picks the winner by the merge rule, and writes it where a region differs, with an
audit entry per repair. Dry run by default: prints the plan. --apply writes.`;

export async function runReconcile(argv: string[]): Promise<number> {
  const { values } = parseCommand("reconcile", argv, {
    config: { type: "string", short: "c" },
    apply: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${reconcileHelp}\n`);
    return 0;
  }
  if (typeof values.config !== "string")
    throw new CliUsageError(`reconcile: --config FILE is required\n\n${reconcileHelp}`);
  const config = loadOrExit(values.config);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const { report, offline } = await scan(config);
  try {
    printReport(report, say);
    if (report.findings.length === 0) {
      say("nothing to reconcile");
      return report.errors.length > 0 ? 2 : 0;
    }
    const client = new PeerClient(config.region, config.auth.peerSecret, 30_000);
    const urlOf = (region: string) =>
      region === config.region
        ? `http://${config.listen.host}:${config.listen.port}`
        : config.regions[region]!.url;
    const rule = mergeRuleOf(config);
    // The origin's WAL decides what each version really was.
    const truth = async (v: StoredRecord): Promise<{ version: StoredRecord; fromWal: boolean }> => {
      try {
        const records =
          offline && v.origin === config.region
            ? await offline.walRecords([v.lsn])
            : (
                await client.call<{ incarnation: string; records: StoredRecord[] }>(
                  urlOf(v.origin),
                  "POST",
                  "/v1/divergence/wal",
                  { lsns: [v.lsn] },
                )
              ).records;
        const r = records
          .map((x) => fromWire(x as never))
          .find((x) => x.incarnation === v.incarnation && x.lsn === v.lsn);
        return r ? { version: { ...r, key: r.key }, fromWal: true } : { version: v, fromWal: false };
      } catch {
        return { version: v, fromWal: false };
      }
    };
    let repaired = 0;
    for (const f of report.findings) {
      const candidates = await Promise.all(
        [f.localVersion, f.remoteVersion].filter((v): v is StoredRecord => v !== undefined).map(truth),
      );
      const winner = candidates.sort((a, b) => compareVersions(rule, a.version, b.version))[0]!;
      const w = winner.version;
      const differs = (v: StoredRecord | undefined) =>
        !v ||
        v.origin !== w.origin ||
        v.lsn !== w.lsn ||
        v.incarnation !== w.incarnation ||
        v.outcome !== w.outcome ||
        v.tenant !== w.tenant ||
        v.bodyJson !== w.bodyJson;
      const targets = [
        ...(differs(f.localVersion) ? [f.local] : []),
        ...(differs(f.remoteVersion) ? [f.remote] : []),
      ];
      say(
        `${f.key}: winner '${w.outcome}' (${w.origin} LSN ${w.lsn}, ${winner.fromWal ? "from the origin's WAL" : "stored copy; the WAL no longer holds it"}); ${values.apply ? "writing to" : "would write to"} ${targets.join(", ") || "nobody"}`,
      );
      if (!values.apply) continue;
      for (const target of targets) {
        if (offline && target === config.region) await offline.repair([w], config.region);
        else await client.call(urlOf(target), "POST", "/v1/divergence/repair", { versions: [w] });
        repaired++;
      }
    }
    say(
      values.apply
        ? `repaired ${repaired} copies; run 'crr verify' to confirm`
        : "dry run: nothing written (--apply to write)",
    );
    return 0;
  } finally {
    await offline?.close();
  }
}
