/**
 * The WORM audit log: append-only JSON lines, each carrying the SHA-256 of the previous line
 * (`prev`) and its own (`hash`), fdatasync'ed before an append resolves. Never rewritten;
 * rotated into new files that continue the chain. Format in docs/FORMAT.md ("Audit log").
 *
 * A line = JSON of the entry without `hash`, with `,"hash":"<sha256 of that JSON>"` spliced in
 * before the closing brace, so a verifier hashes the exact bytes that were written.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { nextTurn, realRuntime, type Runtime } from "../runtime/index.js";

export const genesisHash = "0".repeat(64);
const hashSuffix = /,"hash":"([0-9a-f]{64})"\}$/;

export interface AuditHead {
  seq: number;
  hash: string;
  /** Highest conflict id (store conflicts table) written to the log so far. */
  conflictMark: number;
}

export interface AuditAppend {
  kind: string;
  conflictMark?: number;
  [field: string]: unknown;
}

export function auditFileName(n: number): string {
  return `audit-${String(n).padStart(6, "0")}.log`;
}

/** Seal an entry: returns the line to write (without newline) and its hash. */
export function sealEntry(entry: Record<string, unknown>): { line: string; hash: string } {
  const body = JSON.stringify(entry);
  const hash = createHash("sha256").update(body).digest("hex");
  return { line: `${body.slice(0, -1)},"hash":"${hash}"}`, hash };
}

/** Parse and check one line's own hash; undefined if the line is not a sealed entry. */
export function openEntry(line: string): { entry: Record<string, unknown>; hash: string } | undefined {
  const m = hashSuffix.exec(line);
  if (!m) return undefined;
  const body = `${line.slice(0, m.index)}}`;
  if (createHash("sha256").update(body).digest("hex") !== m[1]) return undefined;
  try {
    return { entry: JSON.parse(body) as Record<string, unknown>, hash: m[1]! };
  } catch {
    return undefined;
  }
}

export interface AuditLogOptions {
  dir: string;
  region: string;
  fileBytesMax?: number;
  /** Time and turns (default: the real runtime). */
  runtime?: Runtime;
  /** Told when open cut an unfinished last line (it was never acknowledged). */
  onTornTail?: (file: string, bytes: number) => void;
  /** Told of each entry's kind once it is written and synced (the node counts them in a metric). */
  onWritten?: (kind: string) => void;
}

interface Pending {
  entry: AuditAppend;
  resolve: (head: AuditHead) => void;
  reject: (e: Error) => void;
}

export class AuditLog {
  private fd: number;
  private file: string;
  private fileNumber: number;
  private fileBytes: number;
  /** The last entry that is on disk and synced: the next one chains onto it, never onto one that failed. */
  private head: AuditHead;
  private queue: Pending[] = [];
  private writing: Promise<void> | undefined;
  /** A failed write could not be cut back: cut before the next write. */
  private damaged = false;
  private readonly fileBytesMax: number;
  private readonly rt: Runtime;

  private constructor(
    private readonly o: AuditLogOptions,
    state: { fd: number; file: string; n: number; bytes: number; head: AuditHead },
  ) {
    this.fd = state.fd;
    this.file = state.file;
    this.fileNumber = state.n;
    this.fileBytes = state.bytes;
    this.head = state.head;
    this.fileBytesMax = o.fileBytesMax ?? 64 * 1024 * 1024;
    this.rt = o.runtime ?? realRuntime;
  }

  static open(o: AuditLogOptions): AuditLog {
    fs.mkdirSync(o.dir, { recursive: true });
    const files = fs
      .readdirSync(o.dir)
      .filter((f) => /^audit-\d{6}\.log$/.test(f))
      .sort();
    const n = files.length === 0 ? 1 : Number(files.at(-1)!.slice(6, 12));
    const file = path.join(o.dir, auditFileName(n));
    const head =
      files.length === 0 ? { seq: 0, hash: genesisHash, conflictMark: 0 } : openHead(o, files, file);
    const fd = fs.openSync(file, "a");
    return new AuditLog(o, { fd, file, n, bytes: fs.fstatSync(fd).size, head });
  }

  get current(): AuditHead {
    return { ...this.head };
  }

  get currentFile(): string {
    return this.file;
  }

  /**
   * Append one entry; resolves with the head once it is fdatasync'ed, rejects if it could not
   * be written (the log is then exactly as before: the next entry chains onto the last one
   * that was). Entries appended in one turn share the fsync.
   */
  append(e: AuditAppend): Promise<AuditHead> {
    return new Promise<AuditHead>((resolve, reject) => {
      this.queue.push({ entry: e, resolve, reject });
      this.writing ??= nextTurn(this.rt).then(() => this.flush());
    });
  }

  /** Seal `batch` onto `head`: the lines to write and the head after each. */
  private seal(batch: Pending[]): { text: string; heads: AuditHead[] } {
    let head = this.head;
    const lines: string[] = [];
    const heads: AuditHead[] = [];
    for (const { entry: e } of batch) {
      const seq = head.seq + 1;
      const conflictMark = Math.max(head.conflictMark, e.conflictMark ?? 0);
      const { kind, conflictMark: _ignored, ...data } = e;
      const sealed = sealEntry({
        seq,
        at: new Date(this.rt.nowMs()).toISOString(),
        region: this.o.region,
        kind,
        conflictMark,
        ...data,
        prev: head.hash,
      });
      head = { seq, hash: sealed.hash, conflictMark };
      lines.push(`${sealed.line}\n`);
      heads.push(head);
    }
    return { text: lines.join(""), heads };
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      const { text, heads } = this.seal(batch);
      const bytes = Buffer.from(text, "utf8");
      let before = this.fileBytes;
      try {
        if (this.damaged) this.cutBack(before);
        if (this.fileBytes >= this.fileBytesMax) {
          this.rotate();
          before = 0;
        }
        // A write may stop short (a disk that fills up mid-way): loop, so a short write is
        // either completed or turned into an error that cuts it back.
        for (let done = 0; done < bytes.length;) {
          const n = fs.writeSync(this.fd, bytes, done, bytes.length - done);
          if (n <= 0)
            throw Object.assign(new Error(`audit log ${this.file}: write made no progress`), { code: "EIO" });
          done += n;
        }
        fs.fdatasyncSync(this.fd);
        this.fileBytes += bytes.length;
        this.head = heads.at(-1)!;
        batch.forEach((b, i) => b.resolve(heads[i]!));
      } catch (err) {
        // Nothing of the batch counts: cut what may have reached the file, so the chain stays whole.
        try {
          this.cutBack(before);
        } catch {
          this.damaged = true; // cut again before the next write
        }
        for (const b of batch) b.reject(err as Error);
        continue;
      }
      // Outside the write's try: a listener that throws must not cut entries already synced
      // and acknowledged (found by review).
      for (const b of batch) {
        try {
          this.o.onWritten?.(b.entry.kind);
        } catch {
          // a counter; the entry is written whatever it does
        }
      }
    }
    this.writing = undefined;
  }

  private cutBack(bytes: number): void {
    fs.ftruncateSync(this.fd, bytes);
    fs.fdatasyncSync(this.fd);
    this.fileBytes = bytes;
    this.damaged = false;
  }

  private rotate(): void {
    const next = path.join(this.o.dir, auditFileName(this.fileNumber + 1));
    const fd = fs.openSync(next, "a");
    const dirFd = fs.openSync(this.o.dir, "r");
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
    fs.closeSync(this.fd);
    this.fd = fd;
    this.fileNumber++;
    this.file = next;
    this.fileBytes = 0;
  }

  async close(): Promise<void> {
    while (this.writing) await this.writing;
    fs.closeSync(this.fd);
  }
}

/**
 * The head of an existing log: its last entry, after cutting an unfinished last line (never
 * acknowledged). The last entry must verify and link to the one before it (in this file or
 * the previous one): otherwise the node refuses to chain onto damage.
 */
function openHead(o: AuditLogOptions, files: string[], file: string): AuditHead {
  const text = fs.readFileSync(file, "utf8");
  const keep = text.lastIndexOf("\n") + 1;
  if (keep < text.length) {
    o.onTornTail?.(file, text.length - keep);
    fs.truncateSync(file, keep);
  }
  const lines = text.slice(0, keep).split("\n").slice(0, -1);
  if (files.length > 1) {
    const prevText = fs.readFileSync(path.join(o.dir, files.at(-2)!), "utf8").trimEnd();
    lines.unshift(prevText.slice(prevText.lastIndexOf("\n") + 1));
  }
  const refuse = (why: string): never => {
    throw new Error(`audit log ${file}: ${why}; run 'crr audit verify ${o.dir}' to find the damage`);
  };
  const last = lines.length > 0 ? openEntry(lines.at(-1)!) : undefined;
  if (lines.length > 0 && !last) refuse("the last line does not verify");
  if (!last) return { seq: 0, hash: genesisHash, conflictMark: 0 };
  const before = lines.length > 1 ? openEntry(lines.at(-2)!) : undefined;
  if (lines.length > 1 && !before) refuse("the line before the last does not verify");
  // With no entry before it here (older files archived), the last entry's link cannot be checked.
  if (before && (last.entry.prev !== before.hash || Number(last.entry.seq) !== Number(before.entry.seq) + 1))
    refuse(`the last entry (seq ${String(last.entry.seq)}) does not link to the one before it`);
  return { seq: Number(last.entry.seq), hash: last.hash, conflictMark: Number(last.entry.conflictMark ?? 0) };
}

export interface AuditVerifyReport {
  files: string[];
  entries: number;
  head: AuditHead | undefined;
  problem: { file: string; line: number; seq: number | undefined; reason: string } | undefined;
}

/** Check the hash chain across files given in order. The first broken link is reported with its position. */
export function verifyAuditFiles(files: string[], expectHead?: string): AuditVerifyReport {
  const report: AuditVerifyReport = { files, entries: 0, head: undefined, problem: undefined };
  let prevHash: string | undefined;
  let prevSeq: number | undefined;
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    if (text.length > 0 && !text.endsWith("\n")) {
      const line = text.split("\n").length;
      report.problem = {
        file,
        line,
        seq: prevSeq === undefined ? undefined : prevSeq + 1,
        reason: "truncated: the last line is incomplete",
      };
      return report;
    }
    const lines = text.length === 0 ? [] : text.slice(0, -1).split("\n");
    for (let i = 0; i < lines.length; i++) {
      const opened = openEntry(lines[i]!);
      const fail = (reason: string) => {
        // The entry number: one past the last good one, or what the damaged line itself claims.
        const claimed = /^\{"seq":(\d+)/.exec(lines[i]!)?.[1];
        const seq = prevSeq !== undefined ? prevSeq + 1 : claimed !== undefined ? Number(claimed) : undefined;
        report.problem = { file, line: i + 1, seq, reason };
        return report;
      };
      if (!opened) return fail("the line does not match its own hash (changed or damaged)");
      const seq = Number(opened.entry.seq);
      if (prevHash === undefined) {
        // The first file given may start mid-chain (older files archived): accept its prev.
        if (seq === 1 && opened.entry.prev !== genesisHash)
          return fail("the first entry does not start the chain");
      } else {
        if (opened.entry.prev !== prevHash)
          return fail(
            `prev does not match the hash of entry ${prevSeq} (an entry is missing or was changed)`,
          );
        if (seq !== prevSeq! + 1) return fail(`sequence ${seq} follows ${prevSeq} (an entry is missing)`);
      }
      prevHash = opened.hash;
      prevSeq = seq;
      report.entries++;
      report.head = { seq, hash: opened.hash, conflictMark: Number(opened.entry.conflictMark ?? 0) };
    }
  }
  if (expectHead && report.head?.hash !== expectHead && !report.problem) {
    report.problem = {
      file: files.at(-1) ?? "",
      line: 0,
      seq: report.head?.seq,
      reason: `the chain ends at ${report.head?.hash ?? "nothing"}, expected head ${expectHead} (entries were removed from the end)`,
    };
  }
  return report;
}
