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

export class ArchiveEvidence {
  constructor(private readonly o: ArchiveEvidenceOptions) {}

  /** The highest LSN of `incarnation` the archive holds in an object sealed by this region. */
  async highestLsn(incarnation: string): Promise<number> {
    let best = this.cursor(incarnation);
    const pad = String(best).padStart(20, "0");
    const folder = incarnationPrefix(this.o.prefix, this.o.region, incarnation);
    const beyond = (await this.objects(incarnation, `${folder}${pad}`)).filter((x) => x.lastLsn > best);
    for (const obj of beyond.sort((a, b) => b.lastLsn - a.lastLsn)) {
      if (obj.lastLsn <= best) break;
      try {
        checkedFrames(obj, await this.o.store.get(obj.key, this.o.objectBytesMax), this.o.keys);
        best = obj.lastLsn;
      } catch {
        // Not this region's genuine object: no evidence (a follower or restore says so).
      }
    }
    return best;
  }

  /** The archived records of `incarnation` in [fromLsn, toLsn], each from an object whose seal verifies. */
  async records(incarnation: string, fromLsn: number, toLsn: number): Promise<WalRecord[]> {
    const found = new Map<number, WalRecord>();
    const objects = (await this.objects(incarnation, undefined))
      .filter((x) => x.firstLsn <= toLsn && x.lastLsn >= fromLsn)
      .sort((a, b) => a.firstLsn - b.firstLsn || b.lastLsn - a.lastLsn);
    for (const obj of objects) {
      if (found.size === toLsn - fromLsn + 1) break;
      const frames = checkedFrames(obj, await this.o.store.get(obj.key, this.o.objectBytesMax), this.o.keys);
      for (const r of frames)
        if (r.lsn >= fromLsn && r.lsn <= toLsn && !found.has(r.lsn)) found.set(r.lsn, r);
    }
    return [...found.values()].sort((a, b) => a.lsn - b.lsn);
  }

  cursor(incarnation: string): number {
    return archiveCursorLsn(this.o.cursorFile, incarnation);
  }

  /** This incarnation's objects (keys this archive writes, nothing else), listed after `startAfter`. */
  private async objects(incarnation: string, startAfter: string | undefined): Promise<Keyed[]> {
    const folder = incarnationPrefix(this.o.prefix, this.o.region, incarnation);
    const out: Keyed[] = [];
    for (let after = startAfter; ;) {
      const page = await this.o.store.list(folder, after, 1000);
      for (const key of page) {
        const obj = parseSegmentObjectKey(key);
        if (obj && obj.incarnation === incarnation && key === segmentObjectKey(this.o.prefix, obj))
          out.push({ ...obj, key });
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
