/**
 * A disk that can lose what was never synced. FileOps over real files (synchronous calls, so
 * a run stays deterministic), remembering each file's content at its last fsync/fdatasync:
 * a simulated power loss puts every file back to that content (a file never synced goes
 * away), may keep a torn prefix of the lost tail, and may flip a bit in a synced byte.
 * Directory entries (a file created, renamed or removed) are durable only once their
 * directory is fsynced: a power loss undoes, newest first, every entry change since.
 *
 * Only what goes through FileOps is modelled (the WAL, the shippers' state files); the audit
 * log writes and syncs in one synchronous call, so a power loss between events finds nothing
 * of it unsynced; the store is put back to its last synced commit by the cluster (SQLite
 * images).
 */
import path from "node:path";
import fs from "node:fs";
import type { FileOps } from "../util/file-ops.js";
import type { Scheduler, SimProcess } from "./scheduler.js";

function errno(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what} (simulated)`), { code });
}

/** A directory entry change not yet made durable by an fsync of its directory. */
type EntryChange =
  | { op: "create"; path: string }
  | { op: "rename"; from: string; to: string; fromDurable: Buffer | undefined; toDurable: Buffer | undefined }
  | { op: "unlink"; path: string; durable: Buffer | undefined };

/** Whether `p` is `dir` or lies below it (`/d/r0-b` is not below `/d/r0`). */
function under(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
}

export class SimDisk implements FileOps {
  /** Per directory, its entry changes since its last fsync (oldest first). */
  private readonly entries = new Map<string, EntryChange[]>();
  /** Content at the last sync, by path (absent: never synced, lost by a crash). */
  private readonly durable = new Map<string, Buffer>();
  private readonly touched = new Set<string>();
  /**
   * Open descriptors by the number handed out: never a number given before (the kernel's are
   * reused at once, so a stale use could reach another file, and go unnoticed).
   */
  private readonly fds = new Map<number, { path: string; real: number }>();
  private nextFd = 1000;
  /** Directories whose writes fail with ENOSPC (a full disk). */
  readonly full = new Set<string>();

  constructor(private readonly sched: Scheduler) {}

  /**
   * The disk as one simulated process sees it: once the process is dead (a power loss), an
   * operation it still had under way fails before it touches anything. Without this, work a
   * dead process had in flight ran on, on descriptors the crash closed, whose numbers the
   * restarted process may have been given again.
   */
  view(proc: SimProcess): FileOps {
    const gone = () => errno("EIO", "the process is gone (simulated power loss)");
    const live =
      <A extends unknown[], R>(f: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        const thawed = this.sched.thawed(proc);
        if (thawed) await thawed;
        if (!proc.alive) throw gone();
        return f.apply(this, args);
      };
    return {
      open: live(this.open),
      close: live(this.close),
      write: live(this.write),
      read: live(this.read),
      fdatasync: live(this.fdatasync),
      fsync: live(this.fsync),
      ftruncate: live(this.ftruncate),
      fstatSize: live(this.fstatSize),
      readdir: live(this.readdir),
      rename: live(this.rename),
      unlink: live(this.unlink),
      mkdir: live(this.mkdir),
    };
  }

  private fd(fd: number): { path: string; real: number } {
    const f = this.fds.get(fd);
    if (!f) {
      this.misused(`use of fd ${fd}, which is not open`);
      throw errno("EBADF", `fd ${fd}`);
    }
    return f;
  }

  /**
   * Descriptors used after their close, or closed twice: each a failure of the run. On a real
   * disk the number may by then name another file (the WAL writing its frames into it).
   */
  readonly misuse: string[] = [];

  private misused(what: string): void {
    const where = (new Error().stack ?? "")
      .split("\n")
      .filter((l) => l.includes("/src/") && !l.includes("/src/sim/"))
      .slice(0, 3)
      .map((l) => l.trim().replace(/^at /, ""))
      .join(" < ");
    this.misuse.push(`${what} (${where || "no engine frame"})`);
  }

  private change(dir: string, c: EntryChange): void {
    const list = this.entries.get(dir) ?? [];
    list.push(c);
    this.entries.set(dir, list);
  }

  async open(file: string, flags: string | number, mode?: number): Promise<number> {
    const existed = fs.existsSync(file);
    const real = fs.openSync(file, flags, mode ?? 0o644);
    const fd = this.nextFd++;
    this.fds.set(fd, { path: file, real });
    if (fs.fstatSync(real).isDirectory()) return fd;
    this.touched.add(file);
    if (!existed) this.change(path.dirname(file), { op: "create", path: file });
    return fd;
  }

  async close(fd: number): Promise<void> {
    const f = this.fds.get(fd);
    if (!f) {
      this.misused(`close of fd ${fd}, which is not open`);
      throw errno("EBADF", `close fd ${fd}`);
    }
    this.fds.delete(fd);
    fs.closeSync(f.real);
  }

  async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const f = this.fd(fd);
    for (const d of this.full) if (under(f.path, d)) throw errno("ENOSPC", `write ${f.path}`);
    return fs.writeSync(f.real, buf, offset, length, position);
  }

  async read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return fs.readSync(this.fd(fd).real, buf, offset, length, position);
  }

  async fdatasync(fd: number): Promise<void> {
    const f = this.fd(fd);
    if (fs.fstatSync(f.real).isDirectory()) return void this.entries.delete(f.path);
    this.durable.set(f.path, fs.readFileSync(f.path));
  }

  fsync(fd: number): Promise<void> {
    return this.fdatasync(fd);
  }

  async ftruncate(fd: number, length: number): Promise<void> {
    fs.ftruncateSync(this.fd(fd).real, length);
  }

  async fstatSize(fd: number): Promise<number> {
    return fs.fstatSync(this.fd(fd).real).size;
  }

  async readdir(dir: string): Promise<string[]> {
    return fs.readdirSync(dir);
  }

  async rename(from: string, to: string): Promise<void> {
    this.change(path.dirname(to), {
      op: "rename",
      from,
      to,
      fromDurable: this.durable.get(from),
      toDurable: this.durable.get(to),
    });
    fs.renameSync(from, to);
    for (const f of this.fds.values()) if (f.path === from) f.path = to;
    const d = this.durable.get(from);
    this.durable.delete(from);
    this.touched.delete(from);
    this.touched.add(to);
    if (d) this.durable.set(to, d);
    else this.durable.delete(to);
  }

  async unlink(file: string): Promise<void> {
    this.change(path.dirname(file), { op: "unlink", path: file, durable: this.durable.get(file) });
    fs.unlinkSync(file);
    this.durable.delete(file);
    this.touched.delete(file);
  }

  async mkdir(path: string): Promise<void> {
    fs.mkdirSync(path, { recursive: true });
  }

  /**
   * A power loss under `dir`: every file it touched goes back to its synced content; open
   * descriptors die. With `torn`, the last file that lost bytes keeps a random prefix of them.
   */
  crash(dir: string, o: { torn: boolean }): string[] {
    for (const [fd, f] of this.fds) {
      if (!under(f.path, dir)) continue;
      this.fds.delete(fd);
      fs.closeSync(f.real);
    }
    const lost: string[] = [];
    this.undoEntries(dir, lost);
    for (const p of [...this.touched].filter((x) => under(x, dir)).sort()) {
      const now = fs.existsSync(p) ? fs.readFileSync(p) : undefined;
      const synced = this.durable.get(p);
      if (!synced) {
        if (now) fs.rmSync(p);
        this.touched.delete(p);
        lost.push(`${p}: never synced`);
        continue;
      }
      if (now && now.equals(synced)) continue;
      let keep = synced;
      if (o.torn && now && now.length > synced.length && now.subarray(0, synced.length).equals(synced)) {
        keep = now.subarray(0, synced.length + this.sched.int(0, now.length - synced.length));
      }
      fs.writeFileSync(p, keep);
      lost.push(`${p}: ${(now?.length ?? 0) - keep.length} bytes`);
    }
    return lost;
  }

  /** Undo, newest first, the entry changes under `dir` no directory fsync made durable. */
  private undoEntries(dir: string, lost: string[]): void {
    for (const [d, changes] of this.entries) {
      if (!under(d, dir)) continue;
      this.entries.delete(d);
      for (const c of changes.reverse()) {
        if (c.op === "create") {
          fs.rmSync(c.path, { force: true });
          this.durable.delete(c.path);
          this.touched.delete(c.path);
          lost.push(`${c.path}: its directory entry was never synced`);
        } else if (c.op === "rename") {
          this.restore(c.to, c.toDurable);
          this.restore(c.from, c.fromDurable);
          lost.push(`${c.to}: its rename from ${path.basename(c.from)} was never synced`);
        } else {
          this.restore(c.path, c.durable);
        }
      }
    }
  }

  /** The entry `file` as its last durable content, or absent. */
  private restore(file: string, content: Buffer | undefined): void {
    if (content === undefined) {
      fs.rmSync(file, { force: true });
      this.durable.delete(file);
      this.touched.delete(file);
      return;
    }
    fs.writeFileSync(file, content);
    this.durable.set(file, content);
    this.touched.add(file);
  }

  /** Flip one bit of a synced byte of `file` within its last `windowBytes`, past `fromOffset` (a sector gone bad). */
  flipBit(file: string, windowBytes: number, fromOffset = 0): number | undefined {
    const synced = this.durable.get(file);
    if (!synced || synced.length <= fromOffset) return undefined;
    const span = Math.min(windowBytes, synced.length - fromOffset);
    const offset = synced.length - 1 - this.sched.int(0, span - 1);
    const flipped = Buffer.from(synced);
    flipped[offset] = flipped[offset]! ^ (1 << this.sched.int(0, 7));
    this.durable.set(file, flipped);
    fs.writeFileSync(file, flipped);
    return offset;
  }

  /** The disk under `dir` is gone (a lost volume): nothing of it is remembered. */
  forget(dir: string): void {
    for (const p of [...this.durable.keys()]) if (under(p, dir)) this.durable.delete(p);
    for (const p of [...this.touched]) if (under(p, dir)) this.touched.delete(p);
  }

  /** Files under `dir` that have synced content (for picking a victim). */
  syncedFiles(dir: string): string[] {
    return [...this.durable.keys()].filter((p) => under(p, dir)).sort();
  }
}
