/** Finding and damaging a record's frame in a segment file, for recovery tests. */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { checkFrame } from "../../src/wal/index.js";

const headerBytes = 128;

/** The newest segment file of a WAL directory. */
export function newestSegment(walDir: string): string {
  const names = fs
    .readdirSync(walDir)
    .filter((n) => /^\d{20}\.wal$/.test(n))
    .sort();
  return path.join(walDir, names.at(-1)!);
}

/** Byte range of the frame holding `lsn` in a segment file. */
export function frameOf(file: string, lsn: number): { offset: number; end: number } {
  const buf = fs.readFileSync(file);
  for (let p = headerBytes; p < buf.length;) {
    const f = checkFrame(buf, p);
    if (f.kind !== "ok") break;
    if (f.lsn === lsn) return { offset: p, end: f.end };
    p = f.end;
  }
  throw new Error(`no frame for LSN ${lsn} in ${file}`);
}

/** Flip one bit in the last byte of `lsn`'s frame (its payload): its checksum no longer holds. */
export function flipBitIn(file: string, lsn: number): number {
  const { end } = frameOf(file, lsn);
  const buf = fs.readFileSync(file);
  buf[end - 1]! ^= 0x04;
  fs.writeFileSync(file, buf);
  return end - 1;
}

export function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}
