/**
 * A disk that can lose what was never synced. FileOps over real files (synchronous calls, so
 * a run stays deterministic), remembering each file's content at its last fsync/fdatasync:
 * a simulated power loss puts every file back to that content (a file never synced goes
 * away), may keep a torn prefix of the lost tail, and may flip a bit in a synced byte.
 * Directory entries (create, rename, unlink) count as durable at once: a simplification the
 * real-process crash tests do not make.
 *
 * Only what goes through FileOps is modelled (the WAL, the shippers' state files); the audit
 * log keeps every write, like a SIGKILL; the store is put back to its last synced commit by
 * the cluster (SQLite images).
 */
import fs from "node:fs";
import type { FileOps } from "../util/file-ops.js";
import type { Scheduler } from "./scheduler.js";

function errno(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what} (simulated)`), { code });
}

export class SimDisk implements FileOps {
  /** Content at the last sync, by path (absent: never synced, lost by a crash). */
  private readonly durable = new Map<string, Buffer>();
  private readonly touched = new Set<string>();
  private readonly fds = new Map<number, { path: string }>();
  /** Directories whose writes fail with ENOSPC (a full disk). */
  readonly full = new Set<string>();

  constructor(private readonly sched: Scheduler) {}

  private fd(fd: number): string {
    const f = this.fds.get(fd);
    if (!f) throw errno("EBADF", `fd ${fd}`);
    return f.path;
  }

  async open(path: string, flags: string | number, mode?: number): Promise<number> {
    const fd = fs.openSync(path, flags, mode ?? 0o644);
    this.fds.set(fd, { path });
    if (!fs.fstatSync(fd).isDirectory()) this.touched.add(path);
    return fd;
  }

  async close(fd: number): Promise<void> {
    this.fds.delete(fd);
    fs.closeSync(fd);
  }

  async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const p = this.fd(fd);
    for (const d of this.full) if (p.startsWith(d)) throw errno("ENOSPC", `write ${p}`);
    return fs.writeSync(fd, buf, offset, length, position);
  }

  async read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    this.fd(fd);
    return fs.readSync(fd, buf, offset, length, position);
  }

  async fdatasync(fd: number): Promise<void> {
    const p = this.fd(fd);
    if (fs.fstatSync(fd).isDirectory()) return;
    this.durable.set(p, fs.readFileSync(p));
  }

  fsync(fd: number): Promise<void> {
    return this.fdatasync(fd);
  }

  async ftruncate(fd: number, length: number): Promise<void> {
    this.fd(fd);
    fs.ftruncateSync(fd, length);
  }

  async fstatSize(fd: number): Promise<number> {
    this.fd(fd);
    return fs.fstatSync(fd).size;
  }

  async readdir(dir: string): Promise<string[]> {
    return fs.readdirSync(dir);
  }

  async rename(from: string, to: string): Promise<void> {
    fs.renameSync(from, to);
    for (const f of this.fds.values()) if (f.path === from) f.path = to;
    const d = this.durable.get(from);
    this.durable.delete(from);
    this.touched.delete(from);
    this.touched.add(to);
    if (d) this.durable.set(to, d);
    else this.durable.delete(to);
  }

  async unlink(path: string): Promise<void> {
    fs.unlinkSync(path);
    this.durable.delete(path);
    this.touched.delete(path);
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
      if (!f.path.startsWith(dir)) continue;
      this.fds.delete(fd);
      fs.closeSync(fd);
    }
    const lost: string[] = [];
    for (const p of [...this.touched].filter((x) => x.startsWith(dir)).sort()) {
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
    for (const p of [...this.durable.keys()]) if (p.startsWith(dir)) this.durable.delete(p);
    for (const p of [...this.touched]) if (p.startsWith(dir)) this.touched.delete(p);
  }

  /** Files under `dir` that have synced content (for picking a victim). */
  syncedFiles(dir: string): string[] {
    return [...this.durable.keys()].filter((p) => p.startsWith(dir)).sort();
  }
}
