/**
 * S3 as a transport (`regions.X.via: s3`): this region follows peer X's archive, as well as
 * whatever X ships over HTTP. Every `archive.pollMs`: the incarnations of X (one listing
 * with a delimiter, every `foldersEvery` polls), then per incarnation the objects after the
 * last key taken (`start-after`: never a full listing after the first), each checked as the
 * archiver checked it (SHA-256, a whole scan of the LSN range its key names) and applied
 * through the reader like a sent batch, idempotently from the watermark. An object that
 * does not continue the watermark (one the origin has not archived yet, or a hole) is
 * waited for: the next poll lists from the same key again.
 *
 * Lag on this path is bounded by the origin's `archive.intervalMs` plus `archive.pollMs`.
 */
import type { Reader } from "../reader/index.js";
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";
import { parseSegmentObjectKey } from "./keys.js";
import { checkedFrames } from "./restore.js";
import type { ArchiveStore } from "./s3-store.js";

export interface FollowerOptions {
  origin: string;
  store: ArchiveStore;
  /** The archive's prefix (as configured: no slashes around it). */
  prefix: string;
  reader: Pick<Reader, "replicateArchived">;
  pollMs: number;
  runtime: Runtime;
  log: Logger;
  /** Incarnation listings every this many polls (new incarnations of the origin are rare). */
  foldersEvery?: number;
  onError?(): void;
}

export interface FollowerStatus {
  origin: string;
  /** Objects applied (or found already applied) since the start. */
  objects: number;
  /** The last key taken per incarnation. */
  after: Record<string, string>;
  lastError: string | undefined;
  /** An object that does not continue the watermark yet (waiting for the origin's archive). */
  waiting: string | undefined;
}

export class ArchiveFollower {
  private readonly after = new Map<string, string>();
  private incarnations: string[] = [];
  private polls = 0;
  private objects = 0;
  private lastError: string | undefined;
  private waiting: string | undefined;
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: FollowerOptions) {}

  start(): void {
    this.timer = this.o.runtime.every(this.o.pollMs, () => void this.poll());
    void this.poll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.running;
  }

  status(): FollowerStatus {
    return {
      origin: this.o.origin,
      objects: this.objects,
      after: Object.fromEntries(this.after),
      lastError: this.lastError,
      waiting: this.waiting,
    };
  }

  /** One poll (polls never overlap). */
  poll(): Promise<void> {
    this.running ??= this.pollOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private get originPrefix(): string {
    return `${this.o.prefix === "" ? "" : `${this.o.prefix}/`}${this.o.origin}/`;
  }

  private async pollOnce(): Promise<void> {
    try {
      if (this.polls++ % (this.o.foldersEvery ?? 12) === 0)
        this.incarnations = (await this.o.store.folders(this.originPrefix)).sort();
      this.waiting = undefined;
      for (const folder of this.incarnations) await this.follow(folder);
      this.lastError = undefined;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.o.onError?.();
      this.o.log.error(
        { origin: this.o.origin, err: this.lastError },
        "following a peer's archive failed; retrying next poll",
      );
    }
  }

  /** Apply the objects of one incarnation after the last key taken, in order. */
  private async follow(folder: string): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const keys = await this.o.store.list(folder, this.after.get(folder), 100);
      for (const key of keys) {
        const obj = parseSegmentObjectKey(key);
        if (!obj || obj.origin !== this.o.origin) continue;
        const got = await this.o.store.get(key);
        const records = checkedFrames({ ...obj, key }, got);
        const answer = await this.o.reader.replicateArchived({
          origin: obj.origin,
          incarnation: obj.incarnation,
          firstLsn: obj.firstLsn,
          lastLsn: obj.lastLsn,
          recordCount: records.length,
          flags: 0,
          records,
        });
        if (answer.status === 409 && answer.body.code === "watermark_gap") {
          this.waiting = `${key}: ${String(answer.body.message)}`;
          return; // listed again from the same key next poll
        }
        if (answer.status !== 200)
          throw new Error(`${key}: ${String(answer.body.code)}: ${String(answer.body.message)}`);
        this.after.set(folder, key);
        this.objects++;
      }
      if (keys.length < 100) return;
    }
  }
}
