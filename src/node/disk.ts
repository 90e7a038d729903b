/**
 * A full disk, as operators see it: the first write that fails for lack of space (the WAL's
 * ENOSPC, SQLite's SQLITE_FULL, the audit log's ENOSPC) marks the region not ready and makes
 * appends answer 503 with Retry-After at once, without trying; a probe writes and syncs a
 * file the size of a WAL write every `probeIntervalMs` and clears the mark when it succeeds.
 */
import fs from "node:fs";
import path from "node:path";
import { StoreFullError, WalWriteError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";

const probeBytes = 1024 * 1024;

export function isNoSpace(err: unknown): boolean {
  if (err instanceof StoreFullError) return true;
  if (err instanceof WalWriteError) return err.errno === "ENOSPC" || err.errno === "EDQUOT";
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

export class DiskState {
  /** Why the disk is considered full, while it is. */
  full: string | undefined;
  private timer: Timer | undefined;

  constructor(
    private readonly dir: string,
    private readonly probeIntervalMs: number,
    private readonly log: Logger,
    private readonly onChange: (full: boolean) => void,
    private readonly runtime: Runtime,
  ) {}

  /** Look at a failed write: a lack of space marks the disk full. Returns whether it did. */
  note(err: unknown): boolean {
    if (!isNoSpace(err)) return false;
    if (this.full === undefined) {
      this.full = (err as Error).message;
      this.log.error(
        { err: this.full },
        "disk full: appends refused (503) and readiness false until a write succeeds",
      );
      this.onChange(true);
      this.timer = this.runtime.every(this.probeIntervalMs, () => this.probe());
    }
    return true;
  }

  /** Try a write of the size appends need; clear the mark when it succeeds. */
  probe(): boolean {
    const file = path.join(this.dir, `.space-probe-${process.pid}`);
    try {
      const fd = fs.openSync(file, "w");
      try {
        fs.writeSync(fd, Buffer.alloc(probeBytes));
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      if (!isNoSpace(err)) this.log.warn({ err: (err as Error).message }, "disk probe failed");
      return false;
    } finally {
      fs.rmSync(file, { force: true });
    }
    if (this.full !== undefined) {
      this.log.info({ after: this.full }, "disk has room again: accepting appends");
      this.full = undefined;
      this.timer?.cancel();
      this.onChange(false);
    }
    return true;
  }

  stop(): void {
    this.timer?.cancel();
  }
}
