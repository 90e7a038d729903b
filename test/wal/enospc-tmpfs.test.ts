/**
 * A real full disk: a 1 MiB tmpfs mounted for the test (CI and developers run as root on
 * this machine kind). The WAL fills it, fails the pending appends with ENOSPC, stays valid,
 * and appends again once space is freed.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { WalWriteError } from "../../src/errors.js";
import { Wal, decodeFrames } from "../../src/wal/index.js";
import { tempDir } from "../support/tmp.js";

describe("WAL on a real full disk", () => {
  it("fails appends with ENOSPC, keeps what was acknowledged, and recovers when space returns", async () => {
    const mnt = tempDir("crr-tmpfs-");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
    try {
      const filler = path.join(mnt, "filler");
      fs.writeFileSync(filler, Buffer.alloc(256 * 1024));
      const dir = path.join(mnt, "wal");
      const wal = await Wal.open({ dir, region: "us-east-1" });
      const acked: number[] = [];
      let failure: unknown;
      for (let i = 0; i < 10_000 && !failure; i++) {
        const batch = Array.from({ length: 8 }, (_, k) =>
          wal.append({ key: `k${i}-${k}`, tenant: "t", outcome: "accepted", body: "x".repeat(1000) }),
        );
        for (const r of await Promise.allSettled(batch)) {
          if (r.status === "fulfilled") acked.push(r.value.lsn);
          else failure = r.reason;
        }
      }
      expect(failure).toBeInstanceOf(WalWriteError);
      expect((failure as WalWriteError).errno).toBe("ENOSPC");
      expect(acked.length).toBeGreaterThan(100);
      expect(wal.durableLsn).toBe(acked.length);
      fs.rmSync(filler);
      const after = await wal.append({ key: "after", tenant: "t", outcome: "accepted" });
      expect(after.lsn).toBe(acked.length + 1);
      await wal.close();
      const again = await Wal.open({ dir, region: "us-east-1" });
      expect(again.recovery.truncatedBytes).toBe(0);
      expect(again.durableLsn).toBe(acked.length + 1);
      let next = 1;
      let count = 0;
      for (
        let c = await again.read(next, { bytesMax: 1 << 20, recordsMax: 100_000 });
        c;
        c = await again.read(next, { bytesMax: 1 << 20, recordsMax: 100_000 })
      ) {
        count += decodeFrames(c.frames, { source: c.segment, firstLsn: next }).length;
        next = c.lastLsn + 1;
      }
      expect(count).toBe(acked.length + 1);
      await again.close();
    } finally {
      execFileSync("umount", ["-l", mnt]);
    }
  });
});
