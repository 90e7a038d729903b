import fs from "node:fs";
import { inspectWal } from "../wal/index.js";
import { CliUsageError, parseCommand } from "./args.js";

const help = `crr wal inspect DIR [--json]

Reads every segment in DIR, verifies every checksum and the LSN chain, and prints one line
per segment. Read-only. Exit 0 when everything verifies, 1 on the first problem (printed with
file and offset), 2 on bad arguments.`;

export async function runWalInspect(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand("wal inspect", argv, { json: { type: "boolean" } });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  const dir = positionals[0];
  if (dir && !fs.existsSync(dir)) throw new CliUsageError(`wal inspect: no such directory: ${dir}`);
  if (!dir || positionals.length > 1)
    throw new CliUsageError(`wal inspect: expected one directory\n\n${help}`);
  const report = await inspectWal(dir);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return report.problem ? 1 : 0;
  }
  const rows = report.segments.map((s) => [
    s.file,
    String(s.firstLsn),
    String(s.lastLsn),
    String(s.records),
    String(s.bytes),
    new Date(s.createdAtMs).toISOString(),
  ]);
  const head = ["segment", "first LSN", "last LSN", "records", "bytes", "created"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 || i === 5 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [line(head), ...rows.map(line)];
  const first = report.segments[0];
  const mbPerS = report.bytes / 1e6 / Math.max(report.durationMs / 1000, 1e-9);
  out.push(
    `${report.segments.length} segments, ${report.records} records, ${report.bytes} bytes` +
      (first ? `, region ${first.region}, incarnation ${first.incarnation}` : "") +
      ` (${mbPerS.toFixed(1)} MB/s)`,
  );
  if (report.problem) {
    const p = report.problem;
    out.push(`${p.kind === "torn" ? "torn tail" : "CORRUPT"}: ${p.file} at offset ${p.offset}: ${p.reason}`);
  } else {
    out.push("ok: every checksum and the LSN chain verified");
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return report.problem ? 1 : 0;
}
