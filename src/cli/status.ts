import type { RegionStatus } from "../node/index.js";
import { CliUsageError, parseCommand } from "./args.js";
import { callNode } from "./http.js";

const help = `crr status --url URL [--json]

Shows a running node: readiness and drain state, WAL size and segments, the store
(records, conflicts, digest), each peer (state, health, acknowledged LSN, records
behind, lag) and the watermarks applied here. A region served by several nodes also
lists its nodes: each one's stream (incarnation), its last heartbeat, whether it left,
and how far the shared store holds its stream. --json prints the raw status for scripts.`;

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

export function formatStatus(s: RegionStatus): string {
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  const out = [
    `region ${s.region}  incarnation ${s.incarnation.slice(0, 12)}…  ${s.ready ? "ready" : "NOT READY"}  ${s.draining ? "DRAINING" : "accepting appends"}`,
    `WAL    durable LSN ${s.wal.durableLsn} (oldest kept ${s.wal.firstLsn}), ${s.wal.segments} segments, ${mb(s.wal.bytes)}, ${s.wal.fsyncs} fsyncs since start`,
    `store  ${s.store.records} records, ${s.store.conflicts} conflicts, digest ${s.store.digest.slice(0, 16)}…`,
    "",
  ];
  if (s.peers.length === 0) out.push("no peers (replication disabled or nothing to ship)");
  else {
    out.push(
      table(
        ["peer", "state", "healthy", "acked LSN", "behind", "lag", "last error"],
        s.peers.map((p) => [
          p.peer,
          p.state,
          p.healthy ? "yes" : "no",
          String(p.ackedLsn),
          String(p.behindRecords),
          `${p.lagSeconds.toFixed(3)} s`,
          p.lastError ?? "",
        ]),
      ),
    );
  }
  if (s.nodes && s.nodes.length > 0) {
    out.push(
      "",
      table(
        ["node", "incarnation", "", "last beat", "left", "stored LSN"],
        s.nodes.map((n) => [
          n.nodeId.slice(0, 12),
          `${n.incarnation.slice(0, 12)}…`,
          n.self ? "this node" : "",
          `${(n.seenAgoMs / 1000).toFixed(1)} s ago`,
          n.left ? "LEFT" : "no",
          String(n.storedLsn),
        ]),
      ),
    );
  }
  if (s.archive) {
    const a = s.archive;
    const per = a.s3.perHour;
    out.push(
      "",
      `archive  verified LSN ${a.verifiedLsn}, lag ${a.lagSeconds.toFixed(1)} s${a.lastError ? `, FAILING: ${a.lastError}` : ""}`,
      ...(a.audit
        ? [
            `         audit files archived through ${a.audit.archivedThrough}${a.audit.lockDays > 0 ? `, Object Lock ${a.audit.lockDays} days` : ""}`,
          ]
        : []),
      `S3       ${a.s3.requests.put} PUT, ${a.s3.requests.get} GET, ${a.s3.requests.list} LIST since start${per ? ` (per hour: ${per.put} PUT, ${per.get} GET, ${per.list} LIST)` : ""}`,
    );
  }
  for (const f of s.following ?? [])
    out.push(
      `following ${f.origin}'s archive: ${f.objects} objects${f.waiting ? `, waiting for ${f.waiting}` : ""}${f.lastError ? `, FAILING: ${f.lastError}` : ""}`,
    );
  out.push(
    "",
    `applied here: ${
      Object.entries(s.watermarks)
        .map(([o, l]) => `${o} ${l}`)
        .join(", ") || "nothing yet"
    }`,
  );
  return out.join("\n");
}

export async function runStatus(argv: string[]): Promise<number> {
  const { values } = parseCommand("status", argv, { url: { type: "string" }, json: { type: "boolean" } });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  if (typeof values.url !== "string") throw new CliUsageError(`status: --url URL is required\n\n${help}`);
  const s = await callNode<RegionStatus>(values.url, "v1/status");
  process.stdout.write(values.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
  return 0;
}
