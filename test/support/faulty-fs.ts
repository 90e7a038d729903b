/**
 * Real node:fs underneath, with faults a test cannot cause on demand: a disk that fills after
 * a byte budget (short write, then ENOSPC), and an fdatasync the test can hold back.
 */
import { type FileOps, nodeFileOps } from "../../src/util/file-ops.js";

export interface FaultyFs extends FileOps {
  /** Bytes that may still be written before writes fail with ENOSPC; Infinity = unlimited. */
  spaceBytes: number;
  /** While set, fdatasync waits for it. */
  syncGate: Promise<void> | undefined;
  /** fdatasync calls held by the gate now. */
  syncsWaiting: number;
  syncs: number;
}

export function faultyFs(base: FileOps = nodeFileOps): FaultyFs {
  const f: FaultyFs = {
    ...base,
    spaceBytes: Infinity,
    syncGate: undefined,
    syncsWaiting: 0,
    syncs: 0,
    async write(fd, buf, offset, length, position) {
      if (f.spaceBytes <= 0)
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      const n = Math.min(length, f.spaceBytes);
      f.spaceBytes -= n;
      return base.write(fd, buf, offset, n, position);
    },
    async fdatasync(fd) {
      if (f.syncGate) {
        f.syncsWaiting++;
        await f.syncGate.finally(() => f.syncsWaiting--);
      }
      f.syncs++;
      return base.fdatasync(fd);
    },
  };
  return f;
}
