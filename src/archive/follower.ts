/**
 * S3 as a transport (`regions.X.via: s3`): this region follows peer X's archive, as well as
 * whatever X ships over HTTP. Every `archive.pollMs`: the incarnations of X (one listing
 * with a delimiter, every `foldersEvery` polls), then per incarnation the objects after the
 * last key taken (`start-after`: never a full listing after the first), each checked as the
 * archiver checked it (X's seal over its bytes, a whole scan of the LSN range its key names) and applied
 * through the reader like a sent batch, idempotently from the watermark. An object that
 * does not continue the watermark (one the origin has not archived yet, or a hole) is
 * waited for: the next poll lists from the same key again.
 *
 * Lag on this path is bounded by the origin's `archive.intervalMs` plus `archive.pollMs`.
 */
import type { Reader } from "../reader/index.js";
import type { Logger } from "../log.js";
import type { KeyRing } from "../protocol/index.js";
import type { Runtime, Timer } from "../runtime/index.js";
import { readAudience, sendsEverything } from "./audience.js";
import { parseSegmentObjectKey, segmentObjectKey, type SegmentObject } from "./keys.js";
import { checkedFrames } from "./restore.js";
import type { ArchiveStore } from "./s3-store.js";

export interface FollowerOptions {
  origin: string;
  /** This region: the origin's audience must send it everything (audience.ts). */
  self: string;
  store: ArchiveStore;
  /** The archive's prefix (as configured: no slashes around it). */
  prefix: string;
  reader: Pick<Reader, "replicateArchived">;
  /** The origin's keys: an object without its genuine seal is refused. */
  keys: KeyRing;
  objectBytesMax: number;
  /** This region's watermark of (origin, incarnation): objects wholly below it are not fetched. */
  applied(origin: string, incarnation: string): Promise<number>;
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
    this.o.store.close();
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
    const errors: string[] = [];
    const every = this.o.foldersEvery ?? 12;
    try {
      // Every poll until the origin's archive shows up, then every `every` polls.
      if (this.polls % every === 0 || this.incarnations.length === 0)
        this.incarnations = (await this.o.store.folders(this.originPrefix)).sort();
      this.polls++; // only once listed: a failed listing is tried again next poll
    } catch (err) {
      errors.push(`listing ${this.originPrefix}: ${(err as Error).message}`);
    }
    if (errors.length === 0 && this.incarnations.length === 0 && this.polls > every)
      errors.push(
        `no archive of ${this.o.origin} under ${this.originPrefix} (is its archive.s3 the same bucket and prefix?)`,
      );
    this.waiting = undefined;
    // Each incarnation on its own: a bad object in one never stops the others (found by review).
    for (const folder of this.incarnations) {
      try {
        await this.follow(folder);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    this.lastError = errors.length > 0 ? errors.join("; ") : undefined;
    if (this.lastError !== undefined) {
      this.o.onError?.();
      this.o.log.error(
        { origin: this.o.origin, err: this.lastError },
        "following a peer's archive failed; retrying next poll",
      );
    }
  }

  /**
   * Apply the objects of one incarnation after the last key taken, in order. A key that is
   * not one this archive writes is passed over within the poll but never taken as the place
   * to list from (one that sorts after every object key stalled the follower for good: found
   * by review), and it is reported.
   */
  private async follow(folder: string): Promise<void> {
    const junk: string[] = [];
    for (let listAfter = this.after.get(folder); ;) {
      if (this.stopped) return;
      const keys = await this.o.store.list(folder, listAfter, 100);
      let allowed = false;
      for (const key of keys) {
        listAfter = key;
        const obj = parseSegmentObjectKey(key);
        if (!obj || obj.origin !== this.o.origin || key !== segmentObjectKey(this.o.prefix, obj)) {
          junk.push(key);
          continue;
        }
        if (obj.lastLsn <= (await this.o.applied(obj.origin, obj.incarnation))) {
          this.after.set(folder, key); // already here (over HTTP, or before a restart): no GET
          continue;
        }
        // Read after the listing, before the first GET of the page: an origin publishes its
        // audience before it archives under a new policy, so an object listed here was
        // archived under the audience read now or an older one.
        if (!allowed) await this.checkAudience(obj.incarnation);
        allowed = true;
        if (!(await this.apply(folder, key, obj))) return;
      }
      if (keys.length < 100) break;
    }
    if (junk.length > 0)
      throw new Error(
        `${junk.length} keys under ${folder} are not objects of this archive (e.g. ${junk[0]}): passed over; remove them`,
      );
  }

  /** Refuse, before any of its objects is read, a stream whose published audience does not send this region everything. */
  private async checkAudience(incarnation: string): Promise<void> {
    const a = await readAudience(this.o.store, this.o.keys, this.o.prefix, this.o.origin, incarnation).catch(
      (err: Error) => {
        throw new Error(
          `${err.message}: not followed (records come over HTTP, filtered by ${this.o.origin})`,
        );
      },
    );
    if (!sendsEverything(a, this.o.self))
      throw new Error(
        `${this.o.origin}'s archive (incarnation ${incarnation}) is not for ${this.o.self}: its policy (${a.mode}, published ${new Date(a.atMs).toISOString()}) does not send it every record, and an object holds them all; not followed (records come over HTTP, filtered by ${this.o.origin})`,
      );
  }

  /** Apply one object; false when it does not continue the watermark yet (listed again next poll). */
  private async apply(folder: string, key: string, obj: SegmentObject): Promise<boolean> {
    const got = await this.o.store.get(key, this.o.objectBytesMax);
    const records = checkedFrames({ ...obj, key }, got, this.o.keys);
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
      // Not archived yet, or an object that sorts before one already taken: list this
      // incarnation from its start next poll.
      this.waiting = `${key}: ${String(answer.body.message)}`;
      this.after.delete(folder);
      return false;
    }
    if (answer.status !== 200)
      throw new Error(`${key}: ${String(answer.body.code)}: ${String(answer.body.message)}`);
    this.after.set(folder, key);
    this.objects++;
    return true;
  }
}
