/**
 * A real full disk under a real node: its data directory is a small tmpfs mounted for the
 * test (CI runs as root). The first failure and every one after it is a 503 with
 * Retry-After, never a 500; readiness goes false at once and comes back once a write
 * succeeds again; what was acknowledged is all there.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Cluster, api, append, status, waitConverged } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { waitFor } from "../support/tmp.js";

describe("a full disk", () => {
  it("answers 503 with Retry-After and is not ready until writes succeed again; nothing acknowledged is lost", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await cluster.stopNode("us-east-1");
    fs.rmSync(a.dataDir, { recursive: true });
    fs.mkdirSync(a.dataDir);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", a.dataDir]);
    try {
      await cluster.startNode("us-east-1");
      const ledger = new Ledger();
      await ledger.appendMany(a, "before", 50);
      const filler = path.join(a.dataDir, "filler");
      const free = fs.statfsSync(a.dataDir);
      fs.writeFileSync(filler, Buffer.alloc(Math.max(0, free.bavail * free.bsize - 256 * 1024)));
      const seen = new Set<number>();
      let refusal: Awaited<ReturnType<typeof append>> | undefined;
      for (let i = 0; i < 5000 && !refusal; i++) {
        const r = await ledger.append(a, {
          key: `fill-${i}`,
          tenant: "tenant-a",
          outcome: "accepted",
          body: { pad: "p".repeat(2000) },
        });
        seen.add(r.status);
        if (r.status !== 200) refusal = r;
      }
      expect(refusal?.status).toBe(503);
      expect(refusal?.body.code).toMatch(/^(wal_write_failed|store_full|disk_full)$/);
      const again = await fetch(`${a.url}/v1/records`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: "while-full", tenant: "tenant-a", outcome: "accepted" }),
      });
      expect(again.status).toBe(503);
      expect(again.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(((await again.json()) as { code: string }).code).toBe("disk_full");
      const ready = await api<{ ready: boolean; reason: string }>(`${a.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.body.reason).toMatch(/disk full/);
      expect((await status(a)).diskFull).toMatch(/ENOSPC|SQLITE_FULL|full/);
      expect(await (await fetch(`${a.url}/metrics`)).text()).toMatch(/^crr_disk_full 1$/m);

      fs.rmSync(filler);
      await waitFor(async () => (await api(`${a.url}/readyz`)).status === 200 || undefined, "ready again");
      await ledger.appendMany(a, "after", 20);
      expect([...seen].every((s) => s === 200 || s === 503)).toBe(true); // never a 500
      await waitConverged([a, b]);
      expectMatchesLedger(ledger, [a, b]);
    } finally {
      await cluster.stopNode("us-east-1", "SIGKILL");
      execFileSync("umount", ["-l", a.dataDir]);
    }
  });
});
