/**
 * The archive as recovery's evidence: what this region's WAL held and archived before it was
 * damaged or lost. The highest LSN of an incarnation the archive holds (the cursor, then a
 * listing of the objects after it, each counted only once its seal verifies: a bucket writer
 * cannot make recovery believe in LSNs the region never wrote), and the records themselves
 * (so recovery restores LSNs only the archive still holds instead of issuing them again:
 * found by review, a WAL that lost archived LSNs issued them again and a restore then took
 * the old versions).
 */
import fs from "node:fs";
import type { KeyRing } from "../protocol/index.js";
import type { WalRecord } from "../wal/index.js";
import { incarnationPrefix, parseSegmentObjectKey, segmentObjectKey, type SegmentObject } from "./keys.js";
import { checkedFrames } from "./restore.js";
import type { ArchiveStore } from "./s3-store.js";

export interface ArchiveEvidenceOptions {
  store: ArchiveStore;
  prefix: string;
  region: string;
  keys: KeyRing;
  objectBytesMax: number;
  /** `<dataDir>/archive.json`: the archiver's cursor. */
  cursorFile: string;
}

type Keyed = SegmentObject & { key: string };

/** Objects beyond the cursor tried as evidence of the highest LSN, newest first. */
const candidatesMax = 16;

export class ArchiveEvidence {
  constructor(private readonly o: ArchiveEvidenceOptions) {}

  /** Objects found not to be this region's (seal or scan): no evidence, named in what recovery logs. */
  readonly refused: string[] = [];

  /**
   * The highest LSN of `incarnation` the archive holds in an object sealed by this region.
   * Throws when the bucket cannot be asked (an I/O error is never taken as "no object").
   */
  async highestLsn(incarnation: string): Promise<number> {
    let best = this.cursor(incarnation);
    const pad = String(best).padStart(20, "0");
    const folder = incarnationPrefix(this.o.prefix, this.o.region, incarnation);
    const beyond = (await this.objects(incarnation, `${folder}${pad}`, undefined)).filter(
      (x) => x.lastLsn > best,
    );
    // Newest first; at most `candidatesMax` tried (junk keys must not stall a start).
    for (const obj of beyond.sort((a, b) => b.lastLsn - a.lastLsn).slice(0, candidatesMax)) {
      if (obj.lastLsn <= best) break;
      if (await this.genuine(obj)) best = obj.lastLsn;
    }
    return best;
  }

  /**
   * The archived records of `incarnation` in [fromLsn, toLsn], each from an object whose seal
   * verifies (others are passed over and named in `refused`). Two genuine objects that
   * disagree on an LSN (an LSN issued twice) are refused, naming both.
   */
  async records(incarnation: string, fromLsn: number, toLsn: number): Promise<WalRecord[]> {
    const found = new Map<number, { r: WalRecord; key: string }>();
    const objects = (await this.objects(incarnation, undefined, toLsn))
      .filter((x) => x.lastLsn >= fromLsn)
      .sort((a, b) => a.firstLsn - b.firstLsn || b.lastLsn - a.lastLsn);
    for (const obj of objects) {
      const frames = await this.genuine(obj);
      for (const r of frames ?? []) {
        if (r.lsn < fromLsn || r.lsn > toLsn) continue;
        const seen = found.get(r.lsn);
        if (seen && JSON.stringify(seen.r) !== JSON.stringify(r))
          throw new Error(
            `the archive holds two versions of LSN ${r.lsn} of ${this.o.region}/${incarnation} (${seen.key} and ${obj.key}): which one was acknowledged is unknown`,
          );
        found.set(r.lsn, { r, key: obj.key });
      }
    }
    return [...found.values()].map((f) => f.r).sort((a, b) => a.lsn - b.lsn);
  }

  /** The object's frames when it is this region's genuine object, else undefined (noted). I/O errors throw. */
  private async genuine(obj: Keyed): Promise<WalRecord[] | undefined> {
    const got = await this.o.store.get(obj.key, this.o.objectBytesMax);
    try {
      return checkedFrames(obj, got, this.o.keys);
    } catch (err) {
      this.refused.push(`${obj.key} (${(err as Error).message})`);
      return undefined;
    }
  }

  cursor(incarnation: string): number {
    return archiveCursorLsn(this.o.cursorFile, incarnation);
  }

  /** This incarnation's objects (keys this archive writes, nothing else), listed after `startAfter`, up to first LSN `firstMax`. */
  private async objects(
    incarnation: string,
    startAfter: string | undefined,
    firstMax: number | undefined,
  ): Promise<Keyed[]> {
    const folder = incarnationPrefix(this.o.prefix, this.o.region, incarnation);
    const out: Keyed[] = [];
    for (let after = startAfter; ;) {
      const page = await this.o.store.list(folder, after, 1000);
      for (const key of page) {
        const obj = parseSegmentObjectKey(key);
        if (obj && obj.incarnation === incarnation && key === segmentObjectKey(this.o.prefix, obj)) {
          if (firstMax !== undefined && obj.firstLsn > firstMax) return out; // keys sort by first LSN
          out.push({ ...obj, key });
        }
      }
      if (page.length < 1000) return out;
      after = page.at(-1);
    }
  }
}

/** The highest LSN of `incarnation` the archiver's cursor says it verified (local: readable when the bucket is not reachable). */
export function archiveCursorLsn(cursorFile: string, incarnation: string): number {
  try {
    const c = JSON.parse(fs.readFileSync(cursorFile, "utf8")) as {
      incarnation?: string;
      verifiedLsn?: number;
    };
    return c.incarnation === incarnation && Number.isSafeInteger(c.verifiedLsn) ? c.verifiedLsn! : 0;
  } catch {
    return 0;
  }
}
