/**
 * `crr wal inspect DIR`: read every segment, verify every checksum and the LSN chain, and
 * report the first problem with file and offset. Read-only: never truncates or repairs.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { SegmentCorruptError } from "../errors.js";
import { realRuntime } from "../runtime/index.js";
import { parseSegmentFileName, scanSegment } from "./segment.js";

export interface SegmentSummary {
  file: string;
  region: string;
  incarnation: string;
  firstLsn: number;
  /** firstLsn - 1 for an empty segment. */
  lastLsn: number;
  records: number;
  bytes: number;
  createdAtMs: number;
}

export interface InspectProblem {
  /** corrupt: acknowledged data is damaged; torn: the newest segment ends in an unfinished write. */
  kind: "corrupt" | "torn";
  file: string;
  offset: number;
  reason: string;
}

export interface InspectReport {
  dir: string;
  segments: SegmentSummary[];
  records: number;
  bytes: number;
  problem: InspectProblem | undefined;
  durationMs: number;
}

export async function inspectWal(dir: string): Promise<InspectReport> {
  const started = realRuntime.monoMs();
  const names = (await fs.readdir(dir))
    .map((n) => ({ n, lsn: parseSegmentFileName(n) }))
    .filter((x): x is { n: string; lsn: number } => x.lsn !== undefined)
    .sort((a, b) => a.lsn - b.lsn);
  const report: InspectReport = {
    dir,
    segments: [],
    records: 0,
    bytes: 0,
    problem: undefined,
    durationMs: 0,
  };
  let prev: SegmentSummary | undefined;
  for (let i = 0; i < names.length && !report.problem; i++) {
    const { n } = names[i]!;
    const image = await fs.readFile(path.join(dir, n));
    report.bytes += image.length;
    try {
      const scan = scanSegment(image, { file: n, last: i === names.length - 1 });
      const h = scan.header;
      const s: SegmentSummary = {
        file: n,
        region: h.region,
        incarnation: h.incarnation,
        firstLsn: h.firstLsn,
        lastLsn: scan.lastLsn,
        records: scan.recordCount,
        bytes: image.length,
        createdAtMs: h.createdAtMs,
      };
      report.segments.push(s);
      report.records += s.records;
      if (prev && (prev.region !== s.region || prev.incarnation !== s.incarnation)) {
        report.problem = {
          kind: "corrupt",
          file: n,
          offset: 0,
          reason: `region/incarnation differ from ${prev.file}`,
        };
      } else if (prev && prev.lastLsn + 1 !== s.firstLsn) {
        report.problem = {
          kind: "corrupt",
          file: n,
          offset: 8,
          reason: `starts at LSN ${s.firstLsn}, ${prev.file} ended at ${prev.lastLsn}`,
        };
      } else if (scan.tornReason !== undefined) {
        report.problem = {
          kind: "torn",
          file: n,
          offset: scan.validBytes,
          reason: `${scan.tornReason}; ${image.length - scan.validBytes} bytes would be cut on open`,
        };
      }
      prev = s;
    } catch (err) {
      if (!(err instanceof SegmentCorruptError)) throw err;
      report.problem = { kind: "corrupt", file: err.file, offset: err.offset, reason: err.reason };
    }
  }
  report.durationMs = realRuntime.monoMs() - started;
  return report;
}
