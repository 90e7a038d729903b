/**
 * Opening a WAL directory: find the segments, scan only the newest one, truncate its torn
 * tail, and refuse to start on corruption anywhere acknowledged data lives.
 * Sealed segments are not read here (their headers are), so recovery time does not grow
 * with the size of the WAL.
 */
import path from "node:path";
import type { Hlc } from "../clock/index.js";
import { AcknowledgedLossError, SegmentCorruptError } from "../errors.js";
import { recoveryRestoreLsnsMax, walUnsyncedBytesMax } from "../limits.js";
import type { Runtime } from "../runtime/index.js";
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
import { encodeFrames, type WalRecord } from "./record.js";
import { planTail, type TailPlan } from "./tail-plan.js";

/**
 * What the rest of the node knows about this WAL's records, for recovery to tell a torn tail
 * (never acknowledged) from damage to acknowledged records, and to restore the latter.
 */
export interface RecoveryEvidence {
  /** The highest LSN of `incarnation` anyone (this region's store, a peer, a client) is known to have seen. */
  acknowledgedLsn(incarnation: string): Promise<number>;
  /** The records of `incarnation` in [fromLsn, toLsn] exactly as appended; those nobody holds are absent. */
  records(incarnation: string, fromLsn: number, toLsn: number): Promise<WalRecord[]>;
}

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
  /** Set once a read found this sealed segment damaged (later reads fail at once). */
  damaged?: SegmentCorruptError;
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
  /** LSNs rewritten from the evidence because the WAL had lost or damaged them, and why. */
  restored: { lsns: Array<[number, number]>; reason: string } | undefined;
  /** The highest LSN the evidence said anyone had seen (0 without evidence). */
  acknowledgedLsn: number;
  created: boolean;
  durationMs: number;
}

export interface RecoverOptions {
  dir: string;
  region: string;
  ops: FileOps;
  runtime: Runtime;
  /** Cut the newest segment at its first corrupt frame instead of refusing to start. Loses data. */
  repair: boolean;
  indexEvery: number;
  evidence?: RecoveryEvidence;
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
  const started = o.runtime.monoMs();
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
      createdAtMs: o.runtime.nowMs(),
      incarnation: o.runtime.randomBytes(16).toString("hex"),
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
        restored: undefined,
        acknowledgedLsn: 0,
        created: true,
        durationMs: o.runtime.monoMs() - started,
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
  const last = files[files.length - 1]!;
  const newest = await recoverNewest(o, last.n, last.lsn, segments[0]?.header.incarnation);
  segments.push(newest.info);
  return {
    segments,
    activeFd: newest.fd,
    report: {
      ...newest.report,
      segments: segments.length,
      created: false,
      durationMs: o.runtime.monoMs() - started,
    },
  };
}

type NewestReport = Omit<RecoveryReport, "segments" | "created" | "durationMs">;

/** Scan the newest segment, weigh its problems against the evidence, and cut, restore or refuse. */
async function recoverNewest(
  o: RecoverOptions,
  name: string,
  nameLsn: number,
  incarnation: string | undefined,
): Promise<{ info: SegmentInfo; fd: number; report: NewestReport }> {
  const filePath = path.join(o.dir, name);
  let fd = await o.ops.open(filePath, "r+");
  try {
    const image = await readWhole(o.ops, fd);
    const scan = scanSegment(image, { file: name, last: true, lenient: true, indexEvery: o.indexEvery });
    checkHeader(scan.header, name, nameLsn, o.region, incarnation);
    const seen = o.evidence ? await o.evidence.acknowledgedLsn(scan.header.incarnation) : undefined;
    let plan = planTail({
      image,
      scan,
      seenLsn: seen,
      unsyncedBytesMax: walUnsyncedBytesMax,
      restoreLsnsMax: recoveryRestoreLsnsMax,
    });
    let repairedCorruption: string | undefined;
    if (
      plan.kind === "refuse" &&
      o.repair &&
      plan.offset >= segmentHeaderBytes &&
      (seen ?? 0) < plan.fromLsn
    ) {
      repairedCorruption = `corrupt WAL segment ${name} at offset ${plan.offset}: ${plan.reason}`;
      plan = { kind: "cut", offset: plan.offset, reason: repairedCorruption };
    }
    const outcome = await carryOut(o, name, filePath, fd, image, scan.header.incarnation, plan);
    fd = outcome.fd;
    const final = scanSegment(outcome.image, { file: name, last: true, indexEvery: o.indexEvery });
    return {
      fd,
      info: {
        file: name,
        path: filePath,
        header: final.header,
        bytes: final.validBytes,
        lastLsn: final.lastLsn,
        index: final.index,
      },
      report: {
        lastLsn: final.lastLsn,
        lastHlc: final.lastHlc,
        truncatedBytes: plan.kind === "cut" ? image.length - plan.offset : 0,
        tornReason: plan.kind === "cut" ? plan.reason : undefined,
        repairedCorruption,
        restored: outcome.restored,
        acknowledgedLsn: seen ?? 0,
      },
    };
  } catch (err) {
    await o.ops.close(fd).catch(() => undefined);
    throw err;
  }
}

/** Do what the plan says; the segment is only ever replaced whole (temp file, fsync, rename). */
async function carryOut(
  o: RecoverOptions,
  name: string,
  filePath: string,
  fd: number,
  image: Buffer,
  incarnation: string,
  plan: TailPlan,
): Promise<{ fd: number; image: Buffer; restored: RecoveryReport["restored"] }> {
  if (plan.kind === "keep") return { fd, image, restored: undefined };
  if (plan.kind === "refuse") {
    if (o.evidence)
      throw new AcknowledgedLossError(
        name,
        plan.offset,
        plan.fromLsn,
        plan.toLsn,
        `cannot be recovered: ${plan.reason}. Nothing was changed. To start anyway as a new incarnation (the intact records are kept in the store): crr serve --config FILE --accept-wal-loss`,
      );
    throw new SegmentCorruptError(name, plan.offset, `${plan.reason}; nothing else holds them here`);
  }
  if (plan.kind === "cut") {
    await o.ops.ftruncate(fd, plan.offset);
    await o.ops.fdatasync(fd);
    return { fd, image: image.subarray(0, plan.offset), restored: undefined };
  }
  const parts: Buffer[] = [];
  const lsns: Array<[number, number]> = [];
  let offset = segmentHeaderBytes;
  for (const piece of plan.pieces) {
    if (piece.kind === "bytes") {
      parts.push(image.subarray(piece.start, piece.end));
      offset = piece.end;
      continue;
    }
    parts.push(await restoredFrames(o, name, offset, incarnation, [piece.fromLsn, piece.toLsn], plan.reason));
    lsns.push([piece.fromLsn, piece.toLsn]);
  }
  const next = Buffer.concat([image.subarray(0, segmentHeaderBytes), ...parts]);
  // Both sides of the disk: what is about to replace the segment must read back whole.
  scanSegment(next, { file: name, last: false, indexEvery: o.indexEvery });
  const tmp = `${filePath}.tmp`;
  const out = await o.ops.open(tmp, "w+");
  try {
    await writeAll(o.ops, out, next, 0);
    await o.ops.fdatasync(out);
  } finally {
    await o.ops.close(out);
  }
  await o.ops.rename(tmp, filePath);
  await fsyncDir(o.dir, o.ops);
  // Only now let go of the old file: a failure above leaves `fd` open for the caller to close.
  const reopened = await o.ops.open(filePath, "r+");
  await o.ops.close(fd).catch(() => undefined);
  return { fd: reopened, image: next, restored: { lsns, reason: plan.reason } };
}

/** The frames of LSNs [from, to] rebuilt from the evidence, every one of them, or AcknowledgedLossError. */
async function restoredFrames(
  o: RecoverOptions,
  name: string,
  offset: number,
  incarnation: string,
  [from, to]: [number, number],
  reason: string,
): Promise<Buffer> {
  const got = await o.evidence!.records(incarnation, from, to);
  let missing = 0;
  let firstMissing: number | undefined;
  for (let lsn = from, k = 0; lsn <= to; lsn++) {
    if (got[k]?.lsn === lsn) k++;
    else {
      missing++;
      firstMissing ??= lsn;
    }
  }
  if (missing > 0 || got.length !== to - from + 1) {
    throw new AcknowledgedLossError(
      name,
      offset,
      from,
      to,
      `${missing} of them (first ${firstMissing}) are held by nothing recovery could ask (this region's store, its peers, its S3 archive when it has one: the log names any that did not answer) (${reason}). Nothing was changed. To start anyway as a new incarnation (the intact records are kept in the store): crr serve --config FILE --accept-wal-loss`,
    );
  }
  return encodeFrames(got.map((r) => ({ ...r, flags: 0 })));
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
