/**
 * The store's group commit (wal-sync.ts): a sync that started before a commit never answers
 * for it; commits made while one sync runs share the next one; a failed sync is final.
 * FileOps is faked so the test decides when each fdatasync ends.
 */
import { describe, expect, it } from "vitest";
import { nodeFileOps, type FileOps } from "../util/file-ops.js";
import { WalSync } from "./wal-sync.js";

/** fdatasync calls that end when the test says, and fail when told to. */
function controlledOps() {
  const calls: Array<{ end: (err?: Error) => void }> = [];
  const ops: FileOps = {
    ...nodeFileOps,
    open: async () => 7,
    close: async () => undefined,
    fdatasync: () =>
      new Promise<void>((resolve, reject) => calls.push({ end: (err) => (err ? reject(err) : resolve()) })),
  };
  return { ops, calls };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("group commit of the store's -wal", () => {
  it("answers a commit only with a sync that started after it, and shares that sync", async () => {
    const { ops, calls } = controlledOps();
    const s = new WalSync("/x/store.sqlite-wal", "/x/store.sqlite", ops);
    const done: string[] = [];
    void s.sync().then(() => done.push("a"));
    await tick();
    expect(calls).toHaveLength(1);
    // b and c committed while a's sync ran: they wait for the next one, which both share.
    void s.sync().then(() => done.push("b"));
    void s.sync().then(() => done.push("c"));
    await tick();
    expect(calls).toHaveLength(1);
    calls[0]!.end();
    await tick();
    expect(done).toEqual(["a"]);
    expect(calls).toHaveLength(2);
    calls[1]!.end();
    await tick();
    expect(done).toEqual(["a", "b", "c"]);
    await s.settled();
  });

  it("fails every later sync after one failure, naming the store and saying what happens", async () => {
    const { ops, calls } = controlledOps();
    const s = new WalSync("/x/store.sqlite-wal", "/x/store.sqlite", ops);
    const first = s.sync();
    const second = s.sync(); // queued behind the first
    await tick();
    calls[0]!.end(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }));
    await expect(first).rejects.toThrow(
      /store \/x\/store.sqlite: sync the write-ahead log failed: EIO.*nothing more is acknowledged until the node restarts/,
    );
    await expect(second).rejects.toMatchObject({ code: "store_sync_failed" });
    await expect(s.sync()).rejects.toMatchObject({ code: "store_sync_failed" });
    expect(calls).toHaveLength(1);
    await s.settled();
  });
});
