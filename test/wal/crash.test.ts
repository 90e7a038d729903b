/**
 * Invariant 1: an acknowledged append survives kill -9. A child appends under concurrency and
 * reports each acknowledged LSN; we SIGKILL it at a random moment, recover the WAL and check
 * that every acknowledged record is there, intact, in order, with no gap. Many kill points per
 * run, all on one directory, so recovery of a recovered WAL is exercised too.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Wal, decodeFrames, type WalRecord } from "../../src/wal/index.js";
import { rng, withSeed } from "../support/random.js";
import { tempDir } from "../support/tmp.js";

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), "crash-child.mts");
const rounds = 24;

interface Ack {
  round: number;
  i: number;
}

async function runUntilKilled(
  dir: string,
  round: number,
  seed: number,
  killAfterAcks: number,
  extraDelayMs: number,
  acked: Map<number, Ack>,
) {
  const proc = spawn(process.execPath, ["--import", "tsx", child, dir, String(round), String(seed)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    proc.on("exit", (code, sig) => resolve(sig ?? code)),
  );
  let seen = 0;
  let killing = false;
  const lines = createInterface({ input: proc.stdout });
  await new Promise<void>((resolve) => {
    lines.on("line", (line) => {
      if (line.startsWith("ready")) return;
      const [lsn, r, i] = line.split(" ").map(Number);
      acked.set(lsn!, { round: r!, i: i! });
      if (++seen >= killAfterAcks && !killing) {
        killing = true;
        setTimeout(() => {
          proc.kill("SIGKILL");
          resolve();
        }, extraDelayMs);
      }
    });
    void exited.then(() => resolve());
  });
  expect(await exited).toBe("SIGKILL");
  // Lines already in the pipe were acknowledged before the kill; take them too.
  await new Promise<void>((resolve) =>
    proc.stdout.readableEnded ? resolve() : proc.stdout.on("close", resolve),
  );
}

describe("WAL crash safety", () => {
  it(`keeps every acknowledged record across ${rounds} random SIGKILLs`, async () => {
    const r = rng();
    await withSeed(r, async () => {
      const dir = tempDir("crr-crash-");
      const acked = new Map<number, Ack>();
      for (let round = 0; round < rounds; round++) {
        await runUntilKilled(dir, round, r.int(1, 2 ** 30), r.int(1, 4000), r.int(0, 5), acked);
        const wal = await Wal.open({ dir, region: "us-east-1", segmentBytesMax: 32 * 1024 });
        try {
          let next = 1;
          const found = new Map<number, WalRecord>();
          for (;;) {
            const c = await wal.read(next, { bytesMax: 1 << 20, recordsMax: 10_000 });
            if (!c) break;
            for (const rec of decodeFrames(c.frames, {
              source: c.segment,
              baseOffset: c.offset,
              firstLsn: next,
            })) {
              found.set(rec.lsn, rec);
            }
            next = c.lastLsn + 1;
          }
          expect(found.size).toBe(wal.durableLsn); // LSNs 1..durable, no gap (decodeFrames checks order)
          // Every acknowledged answer, against what the child was told to write (the ledger),
          // not against the record itself: key, tenant, outcome and the exact body bytes.
          for (const [lsn, a] of acked) {
            const rec = found.get(lsn);
            expect(rec, `acknowledged LSN ${lsn} (round ${round})`).toBeDefined();
            expect({
              key: rec!.key,
              tenant: rec!.tenant,
              outcome: rec!.outcome,
              body: rec!.bodyJson,
            }).toEqual({
              key: `r${a.round}-${a.i}`,
              tenant: "t",
              outcome: "accepted",
              body: JSON.stringify({ round: a.round, i: a.i, pad: "x".repeat(a.i % 300) }),
            });
          }
        } finally {
          await wal.close();
        }
      }
      expect(acked.size).toBeGreaterThan(rounds);
    });
  });
});
