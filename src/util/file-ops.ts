/**
 * The file operations the WAL and the durable-file helper use, behind one small interface so a
 * test can inject a fault the machine cannot cause on demand (EIO, a write that stops half way).
 * The default implementation is plain node:fs.
 */
import fs from "node:fs";

export interface FileOps {
  open(path: string, flags: string | number, mode?: number): Promise<number>;
  close(fd: number): Promise<void>;
  /** Positional write; may write fewer bytes than asked (callers loop). */
  write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  fstatSize(fd: number): Promise<number>;
  readdir(dir: string): Promise<string[]>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
}

function cb<T>(run: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));
}

export const nodeFileOps: FileOps = {
  open: (path, flags, mode) => cb<number>((done) => fs.open(path, flags, mode ?? 0o644, done)),
  close: (fd) => cb<void>((done) => fs.close(fd, done)),
  write: (fd, buf, offset, length, position) =>
    cb<number>((done) => fs.write(fd, buf, offset, length, position, (err, n) => done(err, n))),
  read: (fd, buf, offset, length, position) =>
    cb<number>((done) => fs.read(fd, buf, offset, length, position, (err, n) => done(err, n))),
  fdatasync: (fd) => cb<void>((done) => fs.fdatasync(fd, done)),
  fsync: (fd) => cb<void>((done) => fs.fsync(fd, done)),
  ftruncate: (fd, length) => cb<void>((done) => fs.ftruncate(fd, length, done)),
  fstatSize: (fd) => cb<fs.Stats>((done) => fs.fstat(fd, done)).then((s) => s.size),
  readdir: (dir) => fs.promises.readdir(dir),
  rename: (from, to) => fs.promises.rename(from, to),
  unlink: (path) => fs.promises.unlink(path),
  mkdir: async (path) => {
    await fs.promises.mkdir(path, { recursive: true });
  },
};
