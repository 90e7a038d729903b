/**
 * FellowWatch over a real data directory and a store that lists what the test says (the SQL
 * side runs in test/store/region-nodes.test.ts): a wait a restart cuts short is waited again,
 * the memory follows the store once the wait is over, and a running node whose store holds
 * less of its own stream than it applied stops.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../log.js";
import { realRuntime } from "../runtime/index.js";
import type { RegionNode, SharedRegionStore, Watermark } from "../store/index.js";
import type { FellowMemory } from "./fellow-memory.js";
import { FellowWatch, forgottenAtOpen, memoryFile, readFellowMemory } from "./fellow-wait.js";

const row = (nodeId: string, incarnation: string, more: Partial<RegionNode> = {}): RegionNode => ({
  nodeId,
  incarnation,
  boot: `${nodeId}-boot`,
  seenAtMs: 5000,
  seenAgoMs: 0,
  leftAtMs: undefined,
  replayedAtMs: undefined,
  ...more,
});

function fakeStore(rows: RegionNode[], marks: Watermark[]) {
  const shared = {
    regionNodes: () => Promise.resolve(rows.map((r) => ({ ...r }))),
    markReplayed: () => Promise.resolve(),
  } as unknown as SharedRegionStore;
  return { shared, watermarks: () => Promise.resolve(marks) };
}

const remembered: FellowMemory = {
  region: "r1",
  atMs: 1000,
  nodes: [
    { nodeId: "a", incarnation: "ia", boot: "a0", storedLsn: 3 },
    { nodeId: "b", incarnation: "ib", boot: "b0", storedLsn: 5 },
  ],
};

function watch(
  dir: string,
  store: ReturnType<typeof fakeStore>,
  o: Partial<{ applied: number; forgotten: string[]; writeErrors: Error[] }>,
) {
  const stops: string[] = [];
  const audits: unknown[] = [];
  const w = new FellowWatch({
    dataDir: dir,
    region: "r1",
    nodeId: "a",
    incarnation: "ia",
    boot: "a-boot",
    store,
    memory: readFellowMemory(dir),
    forgotten: o.forgotten ?? [],
    probeIntervalMs: 5,
    fileOps: undefined,
    runtime: realRuntime,
    log: silentLogger(),
    audit: (e) => Promise.resolve(void audits.push(e)),
    stop: (reason) => stops.push(reason),
    ownAppliedLsn: () => o.applied ?? 0,
    onWriteError: (err) => {
      if (!o.writeErrors) throw err;
      o.writeErrors.push(err);
    },
  });
  return { w, stops, audits };
}

function dataDir(memory: FellowMemory): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-fellow-wait-"));
  fs.writeFileSync(memoryFile(dir), JSON.stringify(memory));
  return dir;
}

const wm = (incarnation: string, lsn: number): Watermark =>
  ({ origin: "r1", incarnation, lsn, hlc: { wallMs: 0, logical: 0 } }) as unknown as Watermark;

describe("a node waiting for its fellows after the shared store forgot", () => {
  it("keeps the wait across a restart, though the store refilled meanwhile looks whole, and ends it once the fellow replayed", async () => {
    const dir = dataDir(remembered);
    // The store lost everything; a's first start finds it, and is stopped while b has not replayed.
    const lost = fakeStore([], []);
    const forgotten = await forgottenAtOpen(lost, readFellowMemory(dir), "r1");
    expect(forgotten).toHaveLength(2);
    const first = watch(dir, lost, { forgotten });
    await expect(
      first.w.waitForFellows({ untilMs: Date.now() + 30, onWait: () => undefined }),
    ).rejects.toThrow(/node b \(incarnation ib\) of region r1 has not replayed its WAL/);
    expect(first.audits).toEqual([expect.objectContaining({ kind: "store-forgot" })]);
    // By the restart both joined and the bootstrap refilled the streams: the store looks whole,
    // but b has still not replayed: a waits again.
    const refilled = fakeStore([row("a", "ia"), row("b", "ib")], [wm("ia", 3), wm("ib", 5)]);
    const again = await forgottenAtOpen(refilled, readFellowMemory(dir), "r1");
    expect(again).toEqual(forgotten);
    const second = watch(dir, refilled, { forgotten: again });
    await expect(
      second.w.waitForFellows({ untilMs: Date.now() + 30, onWait: () => undefined }),
    ).rejects.toThrow(/node b/);
    // b replays; a goes on, and its memory is the store's now (the wait's mark gone).
    const replayed = fakeStore(
      [row("a", "ia", { replayedAtMs: 4000 }), row("b", "ib", { replayedAtMs: 4500 })],
      [wm("ia", 3), wm("ib", 5)],
    );
    await watch(dir, replayed, { forgotten: again }).w.waitForFellows({
      untilMs: Date.now() + 5000,
      onWait: () => undefined,
    });
    const now = readFellowMemory(dir)!;
    expect(now.forgotten).toBeUndefined();
    expect(now.atMs).toBe(5000);
    expect(await forgottenAtOpen(replayed, now, "r1")).toEqual([]);
  });

  it("stops a running node whose store holds less of its own stream than it applied (a failover to a lagging replica)", async () => {
    const dir = dataDir({ ...remembered, nodes: [{ ...remembered.nodes[0]!, storedLsn: 0 }] });
    const store = fakeStore([row("a", "ia")], [wm("ia", 7)]);
    const behind = watch(dir, store, { applied: 9 });
    await behind.w.remember(await store.shared.regionNodes());
    expect(behind.stops).toEqual([
      expect.stringMatching(/holds this node's stream to LSN 7; it applied it to 9/),
    ]);
    const even = watch(dir, store, { applied: 7 });
    await even.w.remember(await store.shared.regionNodes());
    expect(even.stops).toEqual([]);
    expect(readFellowMemory(dir)!.nodes).toEqual([
      { nodeId: "a", incarnation: "ia", boot: "a-boot", storedLsn: 7 },
    ]);
  });

  it("a memory that cannot be written is reported as such, not as a failed heartbeat (the store answered)", async () => {
    const dir = dataDir(remembered);
    const store = fakeStore([row("a", "ia"), row("b", "ib")], [wm("ia", 3), wm("ib", 5)]);
    const writeErrors: Error[] = [];
    const w = watch(dir, store, { writeErrors });
    fs.rmSync(dir, { recursive: true }); // the data directory gone from under it
    await expect(w.w.remember(await store.shared.regionNodes())).resolves.toBeUndefined();
    expect(writeErrors).toHaveLength(1);
    expect(w.stops).toEqual([]);
  });
});
