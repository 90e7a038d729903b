/**
 * `crr verify` and `crr reconcile`: run the divergence check once (through the running node's
 * admin route, or, if the node is not running, by opening the region here), print findings,
 * and with reconcile, repair each divergent or missing key by the merge rule.
 */
import { credentialsOf, type NodeConfig } from "../config/index.js";
import { reconcileFindings, type Finding, type ReconcileIo } from "../divergence/index.js";
import { HttpPeerLink, type PeerLink } from "../link/index.js";
import { silentLogger } from "../log.js";
import { Region, mergeRuleOf, type VerifyReport } from "../node/index.js";
import type { StoredRecord } from "../store/index.js";
import { CliUsageError, loadConfigOrUsage, parseCommand } from "./args.js";
import { callNode, clientTlsOf, nodeUrl } from "./http.js";

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

/** Ask the running node; if nothing answers, open the region here (it takes the data directory's lock). */
async function scan(config: NodeConfig): Promise<{ report: VerifyReport; offline: Region | undefined }> {
  const url = nodeUrl(config);
  try {
    return {
      report: await callNode<VerifyReport>(url, "v1/admin/verify", {
        method: "POST",
        timeoutMs: 120_000,
        credential: { kind: "signed", region: config.region, signer: credentialsOf(config).signer },
        tls: clientTlsOf(config)?.(),
      }),
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

function printReport(report: VerifyReport, say: (s: string) => void): void {
  const r = report.restored;
  if (r && r.fromWal + r.fromPeers > 0)
    say(
      `PUT BACK  ${r.fromWal} own records from this region's WAL and ${r.fromPeers} from the peers' copies: they were missing from the store (removed outside the engine; see the node's log and audit log)`,
    );
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
compares digest trees with every peer and classifies each differing key. First it puts back
records missing from the store (removed outside the engine) that no digest can show: this
region's own from its WAL, and conflict losers from the peers' intact copies (PUT BACK).
Prints findings; exit 0 when there are none, 1 when there are, 2 when a peer could not be
compared.`;

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
  const config = loadConfigOrUsage(values.config);
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

Runs the divergence check, then decides each divergent or missing key from evidence only:
a version is true when its origin region's WAL holds it, or when a region holds a copy still
equal to what it applied (its content hash matches; the scrubber never flagged it). The
winner among true versions is picked by the merge rule and written where a region differs,
with an audit entry per repair. A key with a version nobody can vouch for is reported as
UNDECIDED and nothing is written for it. Dry run by default: prints the plan. --apply writes.`;

/** A signed link from this operator command to `region` (this region itself: its own listener). */
export function cliLink(config: NodeConfig, region: string): PeerLink {
  const url = region === config.region ? nodeUrl(config) : config.regions[region]!.url;
  const credentials = credentialsOf(config);
  return new HttpPeerLink({
    region: config.region,
    signer: credentials.signer,
    keys: credentials.ring,
    tls: clientTlsOf(config),
    peer: region,
    url,
    connectTimeoutMs: 5000,
    requestTimeoutMs: 30_000,
  });
}

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
  const config = loadConfigOrUsage(values.config);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const { report, offline } = await scan(config);
  const links = new Map<string, PeerLink>();
  const link = (r: string) => links.get(r) ?? links.set(r, cliLink(config, r)).get(r)!;
  try {
    printReport(report, say);
    if (report.findings.length === 0) {
      say("nothing to reconcile");
      return report.errors.length > 0 ? 2 : 0;
    }
    const io: ReconcileIo = {
      walOf: async (origin, lsn) =>
        offline && origin === config.region
          ? offline.walRecords([lsn])
          : (await link(origin).walRecords([lsn])).records,
      repair: async (target, version) => {
        if (offline && target === config.region) await offline.repair([version], config.region);
        else await link(target).repair([version]);
      },
    };
    const { repaired, undecided } = await reconcileFindings(report.findings, io, {
      rule: mergeRuleOf(config),
      apply: values.apply === true,
      onDecision: (f, d) => {
        if (d.kind === "undecided") say(`${f.key}: UNDECIDED (${d.reason}); nothing written`);
        if (d.kind !== "write") return;
        const w = d.winner.version;
        const source = d.winner.evidence === "origin-wal" ? "from the origin's WAL" : "an intact stored copy";
        say(
          `${f.key}: winner '${w.outcome}' (${w.origin} LSN ${w.lsn}, ${source}); ${values.apply ? "writing to" : "would write to"} ${d.targets.join(", ")}`,
        );
      },
    });
    say(
      values.apply
        ? `repaired ${repaired} copies${undecided ? `, ${undecided} keys undecided` : ""}; run 'crr verify' to confirm`
        : `dry run: nothing written (--apply to write)${undecided ? `; ${undecided} keys undecided` : ""}`,
    );
    return undecided > 0 ? 1 : 0;
  } finally {
    for (const l of links.values()) await l.close();
    await offline?.close();
  }
}
