/**
 * Opening a WAL directory: find the segments, scan only the newest one, truncate its torn
 * tail, and refuse to start on corruption anywhere acknowledged data lives.
 * Sealed segments are not read here (their headers are), so recovery time does not grow
 * with the size of the WAL.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { Hlc } from "../clock/index.js";
import { SegmentCorruptError } from "../errors.js";
import { walUnsyncedBytesMax } from "../limits.js";
import { fsyncDir, writeAll } from "../util/durable-file.js";
import type { FileOps } from "../util/file-ops.js";
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  parseSegmentFileName,
  scanSegment,
  segmentFileName,
  segmentHeaderBytes,
  type SegmentHeader,
} from "./segment.js";

/** A segment as the WAL tracks it. `lastLsn`/`index` of a sealed segment are filled lazily on first read. */
export interface SegmentInfo {
  file: string;
  path: string;
  header: SegmentHeader;
  /** Durable bytes (header included). For the active segment, advanced after each fdatasync. */
  bytes: number;
  /** Undefined for a sealed segment not yet scanned. */
  lastLsn: number | undefined;
  /** [lsn, offset] pairs of every indexEvery-th record; undefined until known. */
  index: number[] | undefined;
}

export interface RecoveryReport {
  segments: number;
  lastLsn: number;
  lastHlc: Hlc | undefined;
  /** Bytes cut from the end of the newest segment (a torn write or an unfinished batch). */
  truncatedBytes: number;
  tornReason: string | undefined;
  /** Set when `repair` cut acknowledged-looking data because of corruption (logged loudly). */
  repairedCorruption: string | undefined;
  created: boolean;
  durationMs: number;
}

export interface RecoverOptions {
  dir: string;
  region: string;
  ops: FileOps;
  nowMs: () => number;
  /** Cut the newest segment at its first corrupt frame instead of refusing to start. Loses data. */
  repair: boolean;
  indexEvery: number;
}

export interface Recovered {
  segments: SegmentInfo[];
  activeFd: number;
  report: RecoveryReport;
}

/** Create a segment durably: header into a temp file, fsync, rename, fsync the directory. */
export async function createSegment(
  ops: FileOps,
  dir: string,
  header: SegmentHeader,
): Promise<{ info: SegmentInfo; fd: number }> {
  const file = segmentFileName(header.firstLsn);
  const finalPath = path.join(dir, file);
  const tmpPath = `${finalPath}.tmp`;
  const fd = await ops.open(tmpPath, "w+");
  try {
    await writeAll(ops, fd, encodeSegmentHeader(header), 0);
    await ops.fdatasync(fd);
    await ops.rename(tmpPath, finalPath);
    await fsyncDir(dir, ops);
  } catch (err) {
    await ops.close(fd).catch(() => undefined);
    await ops.unlink(tmpPath).catch(() => undefined);
    throw err;
  }
  return {
    fd,
    info: {
      file,
      path: finalPath,
      header,
      bytes: segmentHeaderBytes,
      lastLsn: header.firstLsn - 1,
      index: [],
    },
  };
}

async function readWhole(ops: FileOps, fd: number): Promise<Buffer> {
  const size = await ops.fstatSize(fd);
  const buf = Buffer.allocUnsafe(size);
  let done = 0;
  while (done < size) {
    const n = await ops.read(fd, buf, done, size - done, done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

async function readHeader(
  ops: FileOps,
  filePath: string,
  file: string,
): Promise<{ header: SegmentHeader; size: number }> {
  const fd = await ops.open(filePath, "r");
  try {
    const buf = Buffer.alloc(segmentHeaderBytes);
    const n = await ops.read(fd, buf, 0, segmentHeaderBytes, 0);
    return { header: decodeSegmentHeader(buf.subarray(0, n), file), size: await ops.fstatSize(fd) };
  } finally {
    await ops.close(fd);
  }
}

export async function recoverWal(o: RecoverOptions): Promise<Recovered> {
  const started = performance.now();
  await o.ops.mkdir(o.dir);
  const names = await o.ops.readdir(o.dir);
  // A temp file is a segment whose creation did not finish: it never held a record.
  for (const n of names.filter((n) => n.endsWith(".wal.tmp"))) await o.ops.unlink(path.join(o.dir, n));
  const files = names
    .map((n) => ({ n, lsn: parseSegmentFileName(n) }))
    .filter((x): x is { n: string; lsn: number } => x.lsn !== undefined)
    .sort((a, b) => a.lsn - b.lsn);

  if (files.length === 0) {
    const header = {
      region: o.region,
      firstLsn: 1,
      createdAtMs: o.nowMs(),
      incarnation: randomBytes(16).toString("hex"),
    };
    const { info, fd } = await createSegment(o.ops, o.dir, header);
    return {
      segments: [info],
      activeFd: fd,
      report: {
        segments: 1,
        lastLsn: 0,
        lastHlc: undefined,
        truncatedBytes: 0,
        tornReason: undefined,
        repairedCorruption: undefined,
        created: true,
        durationMs: performance.now() - started,
      },
    };
  }

  const segments: SegmentInfo[] = [];
  for (const { n, lsn } of files.slice(0, -1)) {
    const filePath = path.join(o.dir, n);
    const { header, size } = await readHeader(o.ops, filePath, n);
    checkHeader(header, n, lsn, o.region, segments[0]?.header.incarnation);
    segments.push({ file: n, path: filePath, header, bytes: size, lastLsn: undefined, index: undefined });
  }
  // Sealed segments are validated lazily, on their first read; only the last one is read here.
  const lastName = files[files.length - 1]!;
  const lastPath = path.join(o.dir, lastName.n);
  const fd = await o.ops.open(lastPath, "r+");
  try {
    const image = await readWhole(o.ops, fd);
    let scan;
    let repairedCorruption: string | undefined;
    try {
      scan = scanSegment(image, {
        file: lastName.n,
        last: true,
        unsyncedBytesMax: walUnsyncedBytesMax,
        indexEvery: o.indexEvery,
      });
    } catch (err) {
      if (!(o.repair && err instanceof SegmentCorruptError && err.offset >= segmentHeaderBytes)) throw err;
      repairedCorruption = err.message;
      scan = scanSegment(image.subarray(0, err.offset), {
        file: lastName.n,
        last: true,
        unsyncedBytesMax: 0,
        indexEvery: o.indexEvery,
      });
    }
    checkHeader(scan.header, lastName.n, lastName.lsn, o.region, segments[0]?.header.incarnation);
    const truncatedBytes = image.length - scan.validBytes;
    if (truncatedBytes > 0) {
      await o.ops.ftruncate(fd, scan.validBytes);
      await o.ops.fdatasync(fd);
    }
    segments.push({
      file: lastName.n,
      path: lastPath,
      header: scan.header,
      bytes: scan.validBytes,
      lastLsn: scan.lastLsn,
      index: scan.index,
    });
    return {
      segments,
      activeFd: fd,
      report: {
        segments: segments.length,
        lastLsn: scan.lastLsn,
        lastHlc: scan.lastHlc,
        truncatedBytes,
        tornReason: scan.tornReason,
        repairedCorruption,
        created: false,
        durationMs: performance.now() - started,
      },
    };
  } catch (err) {
    await o.ops.close(fd).catch(() => undefined);
    throw err;
  }
}

function checkHeader(
  h: SegmentHeader,
  file: string,
  nameLsn: number,
  region: string,
  incarnation: string | undefined,
): void {
  if (h.firstLsn !== nameLsn)
    throw new SegmentCorruptError(file, 8, `header first LSN ${h.firstLsn} disagrees with the file name`);
  if (h.region !== region) {
    throw new SegmentCorruptError(
      file,
      41,
      `segment belongs to region '${h.region}', this node is '${region}'`,
    );
  }
  if (incarnation !== undefined && h.incarnation !== incarnation) {
    throw new SegmentCorruptError(
      file,
      24,
      `incarnation ${h.incarnation} differs from the directory's ${incarnation}`,
    );
  }
}

/** Read a whole sealed segment and validate it (lazily, on the first read that needs it). */
export async function scanSealed(ops: FileOps, seg: SegmentInfo, indexEvery: number): Promise<void> {
  const fd = await ops.open(seg.path, "r");
  try {
    const image = await readWhole(ops, fd);
    const scan = scanSegment(image, { file: seg.file, last: false, indexEvery });
    seg.bytes = scan.validBytes;
    seg.lastLsn = scan.lastLsn;
    seg.index = scan.index;
  } finally {
    await ops.close(fd);
  }
}
