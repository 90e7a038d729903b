/**
 * The store's group commit (wal-sync.ts): a sync that started before a commit never answers
 * for it; commits made while one sync runs share the next one; a failed sync is final.
 * FileOps is faked so the test decides when each fdatasync ends.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { nodeFileOps, type FileOps } from "../util/file-ops.js";
import { WalSync } from "./wal-sync.js";

/** fdatasync calls that end when the test says, and fail when told to. */
function controlledOps() {
  const calls: Array<{ end: (err?: Error) => void }> = [];
  const opened: string[] = [];
  const flags: string[] = [];
  const closed: number[] = [];
  const refuseOpen = { error: undefined as Error | undefined };
  const ops: FileOps = {
    ...nodeFileOps,
    open: async (file, how) => {
      opened.push(file);
      flags.push(String(how));
      if (refuseOpen.error) throw refuseOpen.error;
      return 6 + opened.length; // 7, 8, …
    },
    close: async (fd) => {
      closed.push(fd);
    },
    fdatasync: () =>
      new Promise<void>((resolve, reject) => calls.push({ end: (err) => (err ? reject(err) : resolve()) })),
  };
  return { ops, calls, opened, flags, closed, refuseOpen };
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

  it("opens the -wal once for every sync, and closes it when the store closes", async () => {
    const { ops, calls, opened, flags, closed } = controlledOps();
    const s = new WalSync("/x/store.sqlite-wal", "/x/store.sqlite", ops);
    for (let i = 0; i < 3; i++) {
      const p = s.sync();
      await tick();
      calls.at(-1)!.end();
      await p;
    }
    expect(calls).toHaveLength(3);
    expect(opened).toEqual(["/x/store.sqlite-wal"]);
    expect(closed).toEqual([]);
    await s.close();
    expect(closed).toEqual([7]);
    // A commit after close began is synced with a descriptor of its own, closed at once.
    const late = s.sync();
    await tick();
    calls.at(-1)!.end();
    await late;
    expect(calls).toHaveLength(4); // synced, not only opened and closed
    expect(opened).toHaveLength(2);
    expect(flags).toEqual(["r", "r"]);
    expect(closed).toEqual([7, 8]);
  });

  it("closes the descriptor only after the syncs running or waiting when close began have ended", async () => {
    const { ops, calls, closed } = controlledOps();
    const s = new WalSync("/x/store.sqlite-wal", "/x/store.sqlite", ops);
    const running = s.sync();
    await tick();
    const waiting = s.sync(); // committed while the first ran: waits for the next sync
    let closedAt: number | undefined;
    const closing = s.close().then(() => (closedAt = calls.length));
    await tick();
    expect(closed).toEqual([]);
    calls[0]!.end();
    await running;
    await tick();
    expect(closed).toEqual([]);
    calls[1]!.end(); // the waiting one started after close began: on a descriptor of its own
    await waiting;
    await closing;
    expect(closed).toEqual([8, 7]); // its own, then the kept one
    expect(closedAt).toBe(2);
  });

  it("closes the descriptor only after a sync running alone when close began has ended", async () => {
    const { ops, calls, closed } = controlledOps();
    const s = new WalSync("/x/store.sqlite-wal", "/x/store.sqlite", ops);
    const running = s.sync();
    await tick();
    const closing = s.close();
    await tick();
    expect(closed).toEqual([]);
    calls[0]!.end();
    await running;
    await closing;
    expect(closed).toEqual([7]);
  });

  it("a -wal that could not be opened fails the sync, and close closes nothing", async () => {
    const { ops, closed, refuseOpen } = controlledOps();
    refuseOpen.error = Object.assign(new Error("EMFILE: too many open files"), { code: "EMFILE" });
    const s = new WalSync("/x/store.sqlite-wal", "/x/store.sqlite", ops);
    await expect(s.sync()).rejects.toMatchObject({ code: "store_sync_failed" });
    await s.close();
    expect(closed).toEqual([]);
  });

  it("may keep the descriptor: SQLite keeps the -wal's inode through checkpoints while a connection is open", () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "crr-walsync-")), "store.sqlite");
    const db = new Database(file);
    db.pragma("journal_mode = WAL");
    db.pragma("journal_size_limit = 0");
    db.exec("CREATE TABLE t (v BLOB)");
    const insert = db.prepare("INSERT INTO t VALUES (?)");
    const inode = () => fs.statSync(`${file}-wal`).ino;
    const first = inode();
    // A second connection that checkpoints and closes, as the checkpointer thread does.
    for (const mode of ["PASSIVE", "RESTART", "TRUNCATE"]) {
      for (let i = 0; i < 200; i++) insert.run(Buffer.alloc(1000));
      const other = new Database(file);
      other.pragma(`wal_checkpoint(${mode})`);
      other.close();
      for (let i = 0; i < 10; i++) insert.run(Buffer.alloc(1000)); // the log restarts from its beginning
      expect(inode(), mode).toBe(first);
    }
    db.close();
    expect(fs.existsSync(`${file}-wal`)).toBe(false); // the last connection closed: gone
  });
});
