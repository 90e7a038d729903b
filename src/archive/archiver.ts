/**
 * The segment archive: every `archive.intervalMs`, copy to the bucket each sealed segment
 * not yet archived, then the active segment's durable prefix (after the first object of a
 * file, only what was written since: an object of its own), and prove each copy restorable
 * before counting it: read it back, check its SHA-256, and replay it in scratch (scan every
 * frame: header of this origin and incarnation, the LSN range the key names, every frame
 * whole and consecutive). Only then does `verifiedLsn` move, and WAL retention never removes
 * a segment above it.
 *
 * The cursor (`archive.json`: incarnation and verified LSN) only saves work after a restart:
 * without it the archive starts again from the oldest local segment (a put of the same bytes
 * under the same key is harmless). A pass that fails leaves the cursor where it was, is
 * logged and counted, and the next pass tries again: the loop never dies.
 */
import fs from "node:fs";
import path from "node:path";
import type { Logger } from "../log.js";
import { checkSeal, sealObject, sha256Hex, type KeyRing, type Signer } from "../protocol/index.js";
import type { Runtime, Timer } from "../runtime/index.js";
import {
  checkFrame,
  encodeSegmentHeader,
  scanSegment,
  segmentHeaderBytes,
  type SealedSegment,
  type Wal,
} from "../wal/index.js";
import { publishAudience, type Policy } from "./audience.js";
import { segmentObjectKey } from "./keys.js";
import type { AuditArchiveStatus, AuditArchiver } from "./audit-archiver.js";
import type { ArchiveStore, StoredObject } from "./s3-store.js";

export interface ArchiverOptions {
  wal: Wal;
  region: string;
  store: ArchiveStore;
  /** This region's signer: every object is sealed by it (its origin). */
  signer: Signer;
  /** Checks the seal of the copy read back (as a follower or a restore will). */
  keys: KeyRing;
  /** The largest object read back (`archive.objectBytesMax`). */
  objectBytesMax: number;
  prefix: string;
  /** Names the archive (endpoint, bucket, prefix): the cursor counts only for it. */
  where: string;
  intervalMs: number;
  /** Where the cursor file lives (the data directory). */
  dataDir: string;
  runtime: Runtime;
  log: Logger;
  /**
   * Published (sealed) before anything is archived in this process: which regions this
   * region's policy sends its records to (audience.ts). Only they may read its objects whole.
   */
  audience?: Policy;
  /** The audit log's sealed files, archived after the WAL each pass. */
  audit?: AuditArchiver;
  /** `archive.verify: sampled`: read back one object in `sampleEvery` (default: every object). */
  verify?: { sampleEvery: number };
  onVerified?(lsn: number): void;
  onError?(stage: string): void;
}

export interface ArchiveStatus {
  /** Highest LSN of this incarnation whose archived copy was read back and verified. */
  verifiedLsn: number;
  /** Objects uploaded and verified since the start. */
  objects: number;
  /** Of them, read back and checked (all but with `archive.verify: sampled`). */
  readBack: number;
  /** Seconds since the oldest durable record not yet verified in the archive was written (0: none). */
  lagSeconds: number;
  lastError: string | undefined;
  /** LSNs no longer in the WAL that were never archived (removed before the archive was configured). */
  missingBelowLsn: number | undefined;
  /** The audit log's sealed files in the archive. */
  audit?: AuditArchiveStatus;
}

interface Cursor {
  /** The archive it counts for (endpoint, bucket, prefix): another one starts from scratch. */
  archive: string;
  incarnation: string;
  verifiedLsn: number;
}

export class Archiver {
  private verified: number;
  private objects = 0;
  private readBack = 0;
  private lastError: string | undefined;
  private missingBelow: number | undefined;
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;
  private readonly cursorPath: string;
  /** Where the last archived object ended: its file, byte and LSN (in memory: a restart uploads the file whole once). */
  private tail: { path: string; end: number; lastLsn: number } | undefined;
  private started = false;
  private published = false;
  /** A problem found at start that stays true (a cursor beyond the WAL, LSNs never archived). */
  private standing: string | undefined;
  /** When the last pass that left nothing behind started (records since are at most this old). */
  private caughtUpMs: number | undefined;

  constructor(private readonly o: ArchiverOptions) {
    this.cursorPath = path.join(o.dataDir, "archive.json");
    this.verified = this.readCursor();
  }

  get verifiedLsn(): number {
    return this.verified;
  }

  start(): void {
    this.timer = this.o.runtime.every(this.o.intervalMs, () => void this.pass());
    void this.pass();
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    await this.running;
    this.o.store.close();
  }

  status(): ArchiveStatus {
    return {
      verifiedLsn: this.verified,
      objects: this.objects,
      readBack: this.readBack,
      lagSeconds: this.lagSeconds(),
      lastError: this.lastError,
      missingBelowLsn: this.missingBelow,
      ...(this.o.audit ? { audit: this.o.audit.status() } : {}),
    };
  }

  /**
   * Put this incarnation's audience once per process (a no-op after that, or without one). The
   * node calls it once its startup checks admit it, before it ships: until it lands, a
   * follower goes by the audience of the previous process, whose policy may have been wider.
   */
  async publish(): Promise<void> {
    if (!this.o.audience || this.published) return;
    const incarnation = this.o.wal.incarnation;
    await publishAudience(this.o.store, this.o.signer, this.o.prefix, { ...this.o.audience, incarnation });
    this.published = true;
  }

  /** One pass (passes never overlap): archive what is not yet, oldest first. */
  pass(): Promise<void> {
    this.running ??= this.archiveAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async archiveAll(): Promise<void> {
    let stage = "list";
    const startedMs = this.o.runtime.nowMs();
    try {
      this.checkStart();
      // First, each process: a follower reads it after listing what it takes, so no object
      // archived under this policy is read by a region it would not send everything to.
      stage = "audience";
      await this.publish();
      // Always the stretch holding the next LSN, listed afresh each time: a segment sealed
      // while an upload ran is never jumped over (found by review: the verified LSN skipped
      // a segment that rotated during a pass, and retention then removed it).
      // Up to what was durable when the pass began: records written during it wait for the
      // next pass, so a busy region makes one object per pass and per sealed segment, not
      // one after another as fast as uploads go (found by the S3 benchmark: 20 PUTs a second
      // per region at 500 records/s with a one-second interval).
      const target = this.o.wal.durableLsn;
      for (let next = await this.nextStretch(target); next; next = await this.nextStretch(target)) {
        stage = `${next.seg.path === this.o.wal.activeDurable().path ? "durable prefix of" : "segment"} ${next.seg.file}`;
        await this.archiveNew(next.seg, next.end);
      }
      this.caughtUpMs = startedMs; // the WAL is archived: a failing audit upload is not WAL lag
      stage = "audit files";
      await this.o.audit?.pass();
      this.lastError = this.standing;
    } catch (err) {
      this.lastError = `${stage}: ${(err as Error).message}`;
      this.o.onError?.(stage.split(" ")[0]!);
      this.o.log.error(
        { err: this.lastError, verifiedLsn: this.verified },
        "archive pass failed; retrying next pass",
      );
    }
  }

  /**
   * Before the first pass: a cursor beyond what the WAL holds is not trusted (the WAL lost
   * records the archive verified: recovery may have issued their LSNs again); LSNs below the
   * oldest local segment that were never archived are said. Both stay in `lastError`.
   */
  private checkStart(): void {
    if (this.started) return;
    this.started = true;
    const durable = this.o.wal.durableLsn;
    if (this.verified > durable) {
      // Which of the WAL's LSNs are the ones the archive holds is unknown now: archive the
      // whole WAL again (the archive then holds two versions of some LSNs; restore says so).
      this.standing = `archive.json says LSNs up to ${this.verified} of incarnation ${this.o.wal.incarnation} were archived, but the WAL ends at ${durable}: the archive holds records this WAL lost (their LSNs may have been issued again); the WAL is archived again from its first segment`;
      this.o.log.error({ cursor: this.verified, durableLsn: durable }, this.standing);
      this.verified = 0;
    }
    const sealed = this.o.wal.sealedSegments();
    const oldest = sealed[0] ?? this.o.wal.activeDurable();
    if (oldest.firstLsn > this.verified + 1) {
      // Removed before this archive knew of them: say so, start from what there is.
      this.missingBelow = oldest.firstLsn;
      this.standing = `LSNs ${this.verified + 1}..${oldest.firstLsn - 1} of incarnation ${this.o.wal.incarnation} left the WAL before they were archived`;
      this.o.log.error({ verifiedLsn: this.verified, oldestLocalLsn: oldest.firstLsn }, this.standing);
      this.verified = oldest.firstLsn - 1;
    }
  }

  /** The local segment (and how many of its bytes) holding the LSN after the verified one, if any is durable. */
  private async nextStretch(target: number): Promise<{ seg: SealedSegment; end: number } | undefined> {
    const want = this.verified + 1;
    if (want > target) return undefined;
    for (const seg of this.o.wal.sealedSegments())
      if (seg.firstLsn <= want && seg.lastLsn >= want)
        return { seg, end: (await fs.promises.stat(seg.path)).size };
    const active = this.o.wal.activeDurable();
    if (active.firstLsn <= want && active.lastLsn >= want) return { seg: active, end: active.bytes };
    if (this.o.wal.durableLsn >= want)
      throw new Error(`LSN ${want} is durable but in no local segment: it cannot be archived`);
    return undefined;
  }

  /**
   * Archive the LSNs of `seg` above the verified LSN, as an object of their own: a segment
   * header naming its first LSN, then those frames byte for byte (the file itself when it
   * starts there). Where they start in the file is known when this pass continues where the
   * last object ended, else found by walking the frames. Keys of one incarnation so form a
   * chain in LSN order that a follower lists with start-after (an object from the file's
   * start after a restart sorted before objects already taken, and stranded followers:
   * found by review).
   */
  private async archiveNew(seg: SealedSegment, end: number): Promise<void> {
    const want = this.verified + 1;
    const t = this.tail;
    const from =
      want === seg.firstLsn
        ? 0
        : t !== undefined && t.path === seg.path && t.lastLsn === this.verified && t.end <= end
          ? t.end
          : await offsetOf(seg, want, end);
    const bytes =
      from === 0
        ? await readRange(seg.path, 0, end)
        : Buffer.concat([
            encodeSegmentHeader({
              region: this.o.region,
              firstLsn: want,
              createdAtMs: seg.createdAtMs,
              incarnation: this.o.wal.incarnation,
            }),
            await readRange(seg.path, from, end),
          ]);
    await this.archiveOne({ ...seg, firstLsn: want }, bytes);
    this.tail = { path: seg.path, end, lastLsn: seg.lastLsn };
  }

  private async archiveOne(seg: SealedSegment, bytes: Buffer): Promise<void> {
    if (seg.firstLsn > this.verified + 1)
      throw new Error(
        `an object from LSN ${seg.firstLsn} would leave LSNs ${this.verified + 1}.. unarchived`,
      );
    const key = segmentObjectKey(this.o.prefix, {
      origin: this.o.region,
      incarnation: this.o.wal.incarnation,
      firstLsn: seg.firstLsn,
      lastLsn: seg.lastLsn,
    });
    const want = {
      origin: this.o.region,
      incarnation: this.o.wal.incarnation,
      firstLsn: seg.firstLsn,
      lastLsn: seg.lastLsn,
    };
    const seal = sealObject(this.o.signer, { ...want, body: bytes });
    await this.o.store.put(key, bytes, seal);
    // Sampled: one object in `sampleEvery` is read back; the others count on the put, whose
    // SHA-256 the server checked (x-amz-checksum-sha256).
    const every = this.o.verify?.sampleEvery ?? 1;
    if (this.objects % every === 0) {
      const back = await this.o.store.get(key, this.o.objectBytesMax);
      verifyCopy(key, back, seal.sha256Hex, want, this.o.keys);
      this.readBack++;
    }
    this.verified = seg.lastLsn;
    this.objects++;
    await this.writeCursor();
    this.o.onVerified?.(this.verified);
  }

  /**
   * An upper bound of the age of the oldest durable record not verified in the archive: it
   * was written after its segment was created and after the last pass that left nothing
   * behind began.
   */
  private lagSeconds(): number {
    const pending = [...this.o.wal.sealedSegments(), this.o.wal.activeDurable()].find(
      (s) => s.lastLsn > this.verified,
    );
    if (!pending) return 0;
    const since = Math.max(pending.createdAtMs, this.caughtUpMs ?? 0);
    return Math.max(0, (this.o.runtime.nowMs() - since) / 1000);
  }

  private readCursor(): number {
    try {
      const c = JSON.parse(fs.readFileSync(this.cursorPath, "utf8")) as Cursor;
      if (
        c.archive === this.o.where &&
        c.incarnation === this.o.wal.incarnation &&
        Number.isSafeInteger(c.verifiedLsn)
      )
        return c.verifiedLsn;
    } catch {
      // No cursor (first start) or unreadable: start from the oldest local segment.
    }
    return 0;
  }

  /** Durably (file and directory synced): recovery takes the cursor as evidence of what the WAL held. */
  private async writeCursor(): Promise<void> {
    const tmp = `${this.cursorPath}.tmp`;
    const c: Cursor = {
      archive: this.o.where,
      incarnation: this.o.wal.incarnation,
      verifiedLsn: this.verified,
    };
    const fh = await fs.promises.open(tmp, "w");
    try {
      await fh.writeFile(JSON.stringify(c));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, this.cursorPath);
    const dir = await fs.promises.open(path.dirname(this.cursorPath), "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

/**
 * The archived copy must be the bytes sent, carry a seal its readers will accept, and
 * replay: else it does not count.
 */
export function verifyCopy(
  key: string,
  back: StoredObject,
  sentSha256Hex: string,
  want: { origin: string; incarnation: string; firstLsn: number; lastLsn: number },
  keys: KeyRing,
): void {
  const got = sha256Hex(back.body);
  if (got !== sentSha256Hex)
    throw new Error(`archived ${key} reads back with SHA-256 ${got}, ${sentSha256Hex} was sent`);
  const sealed = checkSeal(keys, { ...want, body: back.body }, back.seal);
  if (sealed !== "ok") throw new Error(`archived ${key} reads back ${sealed}`);
  const scan = scanSegment(back.body, { file: key, last: false });
  const h = scan.header;
  if (h.region !== want.origin || h.incarnation !== want.incarnation || h.firstLsn !== want.firstLsn)
    throw new Error(`archived ${key} holds ${h.region}/${h.incarnation} from LSN ${h.firstLsn}`);
  if (scan.lastLsn !== want.lastLsn)
    throw new Error(`archived ${key} replays to LSN ${scan.lastLsn}, ${want.lastLsn} expected`);
}

/** The byte offset of LSN `lsn`'s frame in segment `seg` (its first `end` bytes are durable). */
async function offsetOf(seg: SealedSegment, lsn: number, end: number): Promise<number> {
  const image = await readRange(seg.path, 0, end);
  let expected = seg.firstLsn;
  for (let p = segmentHeaderBytes; p < end;) {
    const f = checkFrame(image, p);
    if (f.kind !== "ok")
      throw new Error(`${seg.file}: ${f.kind} frame at offset ${p} while looking for LSN ${lsn}`);
    if (f.lsn === lsn) return p;
    if (f.lsn !== expected) throw new Error(`${seg.file}: LSN ${f.lsn} at offset ${p}, ${expected} expected`);
    expected++;
    p = f.end;
  }
  throw new Error(`${seg.file}: LSN ${lsn} not in its first ${end} bytes`);
}

async function readRange(file: string, start: number, end: number): Promise<Buffer> {
  const fh = await fs.promises.open(file, "r");
  try {
    const buf = Buffer.alloc(end - start);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off);
      if (bytesRead === 0) throw new Error(`${file} ends at ${start + off} bytes, ${end} are durable`);
      off += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}
