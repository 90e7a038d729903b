/**
 * The audit log's sealed files in the archive: each file the log rotated away from (never the
 * one it writes) is uploaded once to `<prefix>/_audit/<region>/audit-NNNNNN.log`, sealed by
 * the region's key like a WAL object, with S3 Object Lock in compliance mode for
 * `archive.auditLockDays` when set (the bucket must have Object Lock enabled: a bucket that
 * refuses it fails the pass, shown in `archive.lastError`). Each copy is read back and its
 * SHA-256 and seal checked before it counts; the cursor (`archive-audit.json`: the highest
 * file number archived) only saves work after a restart.
 */
import fs from "node:fs";
import path from "node:path";
import { checkSeal, sealObject, type KeyRing, type Signer } from "../protocol/index.js";
import type { Runtime } from "../runtime/index.js";
import type { ArchiveStore } from "./s3-store.js";

export interface AuditArchiverOptions {
  region: string;
  store: ArchiveStore;
  prefix: string;
  /** Names the archive (endpoint, bucket, prefix): the cursor counts only for it. */
  where: string;
  /** The audit log's directory, and the file it writes now (never archived). */
  auditDir: string;
  currentFile: () => string;
  /** Object Lock (compliance mode) retention in days; 0: none. */
  lockDays: number;
  signer: Signer;
  keys: KeyRing;
  objectBytesMax: number;
  dataDir: string;
  runtime: Runtime;
}

export interface AuditArchiveStatus {
  /** The highest audit file number archived and verified (0: none). */
  archivedThrough: number;
  lockDays: number;
}

/** The key of an archived audit file. */
export function auditObjectKey(prefix: string, region: string, file: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  return `${p === "" ? "" : `${p}/`}_audit/${region}/${file}`;
}

/** What an audit file's seal covers: the region, the word "audit" and the file's number as its range. */
function sealed(region: string, n: number, body: Buffer) {
  return { origin: region, incarnation: "audit", firstLsn: n, lastLsn: n, body };
}

export class AuditArchiver {
  private through: number;
  private readonly cursorPath: string;

  constructor(private readonly o: AuditArchiverOptions) {
    this.cursorPath = path.join(o.dataDir, "archive-audit.json");
    this.through = this.readCursor();
  }

  status(): AuditArchiveStatus {
    return { archivedThrough: this.through, lockDays: this.o.lockDays };
  }

  /** Archive every sealed audit file not archived yet, oldest first; throws on the first failure. */
  async pass(): Promise<void> {
    const current = path.basename(this.o.currentFile());
    const files = fs
      .readdirSync(this.o.auditDir)
      .filter((f) => /^audit-\d{6}\.log$/.test(f) && f < current)
      .sort();
    for (const file of files) {
      const n = Number(file.slice(6, 12));
      if (n <= this.through) continue;
      await this.archiveOne(file, n);
    }
  }

  private async archiveOne(file: string, n: number): Promise<void> {
    const body = await fs.promises.readFile(path.join(this.o.auditDir, file));
    const key = auditObjectKey(this.o.prefix, this.o.region, file);
    const seal = sealObject(this.o.signer, sealed(this.o.region, n, body));
    const lock =
      this.o.lockDays > 0
        ? { retainUntil: new Date(this.o.runtime.nowMs() + this.o.lockDays * 86_400_000) }
        : undefined;
    await this.o.store.put(key, body, seal, lock);
    const back = await this.o.store.get(key, this.o.objectBytesMax);
    if (!back.body.equals(body)) throw new Error(`archived ${key} reads back different from ${file}`);
    const check = checkSeal(this.o.keys, sealed(this.o.region, n, back.body), back.seal);
    if (check !== "ok") throw new Error(`archived ${key} reads back ${check}`);
    this.through = n;
    await this.writeCursor();
  }

  private readCursor(): number {
    try {
      const c = JSON.parse(fs.readFileSync(this.cursorPath, "utf8")) as { archive: string; through: number };
      if (c.archive === this.o.where && Number.isSafeInteger(c.through)) return c.through;
    } catch {
      // No cursor yet: every sealed file is archived (a put of the same file again is harmless).
    }
    return 0;
  }

  private async writeCursor(): Promise<void> {
    const tmp = `${this.cursorPath}.tmp`;
    await fs.promises.writeFile(tmp, JSON.stringify({ archive: this.o.where, through: this.through }));
    await fs.promises.rename(tmp, this.cursorPath);
  }
}
