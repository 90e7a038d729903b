/**
 * One node per data directory: a LOCK file created exclusively, naming its holder. Two
 * shippers on one WAL would both ship and both advance watermarks; the second refuses to
 * start instead. A lock left by a process that is gone (kill -9) is taken over.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CrrError } from "../errors.js";

export class DataDirLockedError extends CrrError {
  constructor(
    readonly dir: string,
    readonly holderPid: number,
    holder: string,
  ) {
    super(
      "data_dir_locked",
      `data directory ${dir} is in use by ${holder}; stop that node first (or remove ${path.join(dir, "LOCK")} if no crr runs there)`,
    );
  }
}

interface Holder {
  pid: number;
  host: string;
  startedAt: string;
  command: string;
  /** The holder's boot id (peers hear it): a crashed holder's one is not a rival of its successor. */
  boot?: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface DataDirLock {
  /** Set when a stale lock of a dead process was taken over. */
  tookOver: Holder | undefined;
  /** The boot id of the last process that ran this data directory here (crashed or stopped), if known. */
  previousBoot: string | undefined;
  release(): void;
}

/** Written on a clean stop: the boot id that stopped (its successor does not take it for a twin). */
function lastBoot(dir: string): string | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, "last-boot.json"), "utf8")) as { boot?: string }).boot;
  } catch {
    return undefined; // never stopped cleanly here, or an unreadable marker: no exception is made
  }
}

export function lockDataDir(dir: string, boot: string | undefined, nowMs: number): DataDirLock {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "LOCK");
  const me: Holder = {
    pid: process.pid,
    host: os.hostname(),
    startedAt: new Date(nowMs).toISOString(),
    command: process.argv.slice(1).join(" "),
    boot,
  };
  let tookOver: Holder | undefined;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${JSON.stringify(me)}\n`, { flag: "wx" });
      const previousBoot = tookOver?.boot ?? lastBoot(dir);
      return {
        tookOver,
        previousBoot,
        release: () => {
          try {
            const h = JSON.parse(fs.readFileSync(file, "utf8")) as Holder;
            if (h.pid !== process.pid) return;
            if (boot) fs.writeFileSync(path.join(dir, "last-boot.json"), `${JSON.stringify({ boot })}\n`);
            fs.rmSync(file);
          } catch {
            // Already gone.
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder: Holder | undefined;
    try {
      holder = JSON.parse(fs.readFileSync(file, "utf8")) as Holder;
    } catch {
      holder = undefined; // unreadable: a crash while writing it; treat as stale
    }
    // Another host's lock cannot be checked for liveness: never take it over.
    if (holder && (holder.host !== me.host || (holder.pid !== process.pid && alive(holder.pid)))) {
      throw new DataDirLockedError(
        dir,
        holder.pid,
        `pid ${holder.pid} on ${holder.host} (started ${holder.startedAt}: ${holder.command})`,
      );
    }
    if (holder && holder.pid === process.pid) {
      throw new DataDirLockedError(dir, holder.pid, "another region in this same process");
    }
    tookOver = holder;
    fs.rmSync(file, { force: true });
  }
  throw new Error(`could not take the lock on ${dir}`);
}
