/**
 * Group commit for the store's acknowledgements. A peer's batch is committed with
 * synchronous=NORMAL (SQLite writes the WAL frames, no sync) and made durable by one
 * fdatasync of the database's -wal file, run on the thread pool: the event loop no longer
 * stalls in a synced COMMIT, and every batch committed while one sync runs shares the next.
 * (In WAL mode SQLite syncs the -wal before each checkpoint and the database file after it,
 * so what a checkpoint moved out of the -wal is durable too.)
 *
 * The -wal file is opened once (at the first sync) and kept: SQLite deletes it only when the
 * last connection to the database closes, and this store's own connection stays open until
 * `close()`, which closes the descriptor first; checkpoints rewind or truncate the file in
 * place (its inode is kept: wal-sync.test.ts checks it). One thread-pool call per sync, not
 * three: under load each costs a turn of a busy event loop (open, sync and close each
 * waited for one, and a peer's lag p50 on loopback was ~30 ms instead of ~10).
 *
 * A failed sync is final: after an fsync error the kernel may have dropped the dirty pages,
 * and a later sync that succeeds proves nothing about them. Every later call fails with the
 * first error, so nothing is acknowledged again until the node restarts and recovers.
 */
import { StoreError } from "../errors.js";
import type { FileOps } from "../util/file-ops.js";

export class WalSync {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private failed: StoreError | undefined;
  /** The -wal file, opened at the first sync. */
  private fd: Promise<number> | undefined;
  /** close() began: a sync after it opens and closes the file itself (nothing would close a kept one). */
  private closing = false;

  /** `file`: the database's -wal file; `store`: the database file, named in errors. */
  constructor(
    private readonly file: string,
    private readonly store: string,
    private readonly ops: FileOps,
  ) {}

  /** Resolves once every commit made before this call is on disk. */
  sync(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    // The running sync may have started before our commit: wait for the one after it.
    this.queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.start();
      });
    return this.queued;
  }

  /** Resolves once no sync is running or waiting (close waits for it; a failure is not rethrown). */
  async settled(): Promise<void> {
    while (this.running || this.queued) await (this.queued ?? this.running)!.catch(() => undefined);
  }

  /** Wait for the syncs, then close the -wal descriptor (before the database closes and SQLite removes the file). */
  async close(): Promise<void> {
    this.closing = true;
    await this.settled();
    const opening = this.fd;
    this.fd = undefined;
    // A descriptor whose open failed is none to close (that sync failed, and with it the store).
    const fd = await opening?.catch(() => undefined);
    if (fd !== undefined) await this.ops.close(fd).catch(() => undefined);
  }

  private start(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    const p = this.run().finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return p;
  }

  private async run(): Promise<void> {
    try {
      if (this.closing) {
        const fd = await this.ops.open(this.file, "r");
        try {
          await this.ops.fdatasync(fd);
        } finally {
          await this.ops.close(fd);
        }
      } else {
        this.fd ??= this.ops.open(this.file, "r");
        await this.ops.fdatasync(await this.fd);
      }
    } catch (err) {
      this.failed ??= new StoreError(
        this.store,
        "sync the write-ahead log",
        err,
        "store_sync_failed",
        "; nothing more is acknowledged until the node restarts and recovers",
      );
      throw this.failed;
    }
  }
}
