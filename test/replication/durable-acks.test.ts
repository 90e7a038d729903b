/**
 * Invariant 11: only durable acknowledgements move a peer's watermark at the origin (and with
 * it retention, ?wait=N and drain). The peer runs under strace: between receiving a batch and
 * sending its acknowledgement it must sync its store's write-ahead log. With a commit that
 * is not synced (synchronous=NORMAL alone), acknowledgements go out with no sync between
 * them, and a power loss at the peer could undo batches the origin already deleted.
 * Only the engine's fdatasync counts, and the store's checkpointer (which syncs the -wal
 * too, and made the test pass with the engine's sync removed on a loaded machine) is set
 * to wait an hour. strace splits a call
 * that another thread interrupts into an "<unfinished ...>" line and a "<... resumed>" line
 * of the same thread: the sync counts when it returns (missing those failed the test under load).
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Cluster, append, waitConverged } from "../support/cluster.js";
import { tempDir } from "../support/tmp.js";

describe("acknowledgements are durable", () => {
  it("the peer syncs its store before every acknowledgement it sends", async () => {
    // No checkpoint during the test: the checkpointer syncs the -wal too, and on a loaded
    // machine its syncs fell between the slow acknowledgements often enough to hide a
    // missing engine sync.
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { store: { checkpointIntervalMs: 3_600_000 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await cluster.stopNode("eu-west-1");
    const trace = path.join(tempDir("crr-strace-"), "eu-west-1.trace");
    await cluster.startNode("eu-west-1", [], {}, [
      "strace",
      "-f",
      "-qq",
      "-y",
      "-s",
      "512",
      "-e",
      "trace=fsync,fdatasync,write,writev",
      "-o",
      trace,
    ]);
    // One record at a time, each acknowledged by the peer before the next (semi-synchronous).
    for (let i = 0; i < 20; i++) {
      const r = await append(a, { key: `k${i}`, tenant: "tenant-a", outcome: "accepted" }, 1);
      expect(r.status).toBe(200);
    }
    await waitConverged([a, b]);
    await cluster.stopNode("eu-west-1");
    const syncing = new Set<string>(); // threads inside an unfinished sync of the store's -wal
    const events = fs
      .readFileSync(trace, "utf8")
      .split("\n")
      .map((l) => {
        const thread = l.split(" ", 1)[0]!;
        if (/fdatasync\(\d+<[^>]*store\.sqlite-wal>\) = 0/.test(l)) return "sync";
        if (/fdatasync\(\d+<[^>]*store\.sqlite-wal> <unfinished/.test(l)) syncing.add(thread);
        if (/<\.\.\. fdatasync resumed>.*= 0/.test(l) && syncing.delete(thread)) return "sync";
        return /write.*<(?:socket|TCP)[^>]*>.*HTTP\/1\.1 200 OK.*\\"watermark\\":\d+,\\"applied\\"/.test(l)
          ? "ack"
          : undefined;
      })
      .filter((e) => e !== undefined);
    const acks = events.filter((e) => e === "ack").length;
    expect(acks).toBeGreaterThanOrEqual(20);
    let synced = false;
    for (const e of events) {
      if (e === "sync") synced = true;
      else {
        expect(synced, "an acknowledgement sent with no store sync since the previous one").toBe(true);
        synced = false;
      }
    }
  });
});
