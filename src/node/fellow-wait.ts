/**
 * A region's nodes on a shared store, after the store was lost or restored from a backup
 * (ARCHITECTURE.md, "A store that forgot"). Each node keeps `<dataDir>/fellows.json` (what it
 * last saw of the region: `fellow-memory.ts`); at open it compares that with the store, and
 * when the store forgot something, it admits appends only once every fellow it remembers has
 * replayed its WAL into the store again (a row replayed after the memory was written, by the
 * store's clock) or was declared gone (`crr leave --node-id`). It marks its own replay before
 * it waits, so two nodes waiting for each other both go on. After admission each heartbeat
 * refreshes the file (one more read of the store's watermarks per beat), and a store that
 * forgets a node or part of a stream under running nodes stops this one.
 */
import fs from "node:fs";
import path from "node:path";
import type { Logger } from "../log.js";
import { sleep, type Runtime } from "../runtime/index.js";
import type { DedupStore, RegionNode, SharedRegionStore } from "../store/index.js";
import { writeFileDurable } from "../util/durable-file.js";
import type { FileOps } from "../util/file-ops.js";
import { awaitedFellows, forgottenBy, memoryOf, parseMemory, type FellowMemory } from "./fellow-memory.js";
import { StartupRefusedError } from "./startup.js";

export function memoryFile(dataDir: string): string {
  return path.join(dataDir, "fellows.json");
}

/** The data directory's memory of its region, if it has one (refuses a damaged file, naming it). */
export function readFellowMemory(dataDir: string): FellowMemory | undefined {
  const file = memoryFile(dataDir);
  if (!fs.existsSync(file)) return undefined;
  const m = parseMemory(fs.readFileSync(file, "utf8"));
  if (typeof m === "string")
    throw new StartupRefusedError(
      `${file}: ${m}; nothing was changed. Restore it, or remove it (the node then cannot tell whether the shared store forgot a fellow's records)`,
    );
  return m;
}

/** How far the store holds each of `region`'s streams, by incarnation. */
export async function storedLsns(store: Pick<DedupStore, "watermarks">, region: string) {
  const w = await store.watermarks();
  return new Map(w.filter((x) => x.origin === region).map((x) => [x.incarnation, x.lsn]));
}

/** What the store forgot of the memory, read at open before this node joins or replays. */
export async function forgottenAtOpen(
  store: Pick<DedupStore, "watermarks" | "shared">,
  memory: FellowMemory | undefined,
  region: string,
): Promise<string[]> {
  if (!memory || !store.shared) return [];
  const now = forgottenBy(memory, await store.shared.regionNodes(), await storedLsns(store, region));
  // A wait a restart cut short: the store, refilled by then, may look whole.
  return [...new Set([...(memory.forgotten ?? []), ...now])];
}

export interface FellowWatchOptions {
  dataDir: string;
  region: string;
  nodeId: string;
  incarnation: string;
  boot: string;
  store: Pick<DedupStore, "watermarks"> & { shared: SharedRegionStore };
  /** The memory read at open, and what the store had forgotten of it then. */
  memory: FellowMemory | undefined;
  forgotten: readonly string[];
  probeIntervalMs: number;
  fileOps: FileOps | undefined;
  runtime: Runtime;
  log: Logger;
  audit: (entry: { kind: string; [field: string]: unknown }) => Promise<void>;
  /** The store forgot a node while this one ran: stop taking appends. */
  stop: (reason: string) => void;
  /** How far this node knows the store holds its own stream (read before the store is asked). */
  ownAppliedLsn: () => number;
  /** `fellows.json` could not be written (the disk): logged, tried again at the next beat. */
  onWriteError: (err: Error) => void;
}

export class FellowWatch {
  private memory: FellowMemory | undefined;

  constructor(private readonly o: FellowWatchOptions) {
    this.memory = o.memory;
  }

  /**
   * The incarnations of the fellows this node remembers: not rivals at the twin check, even
   * before they joined a store that forgot them (after a lost store, every node's check
   * otherwise took the others for a second process serving the region and refused).
   */
  rememberedFellows(): string[] {
    return (this.memory?.nodes ?? []).filter((n) => n.nodeId !== this.o.nodeId).map((n) => n.incarnation);
  }

  /** This node's WAL is in the store at this boot: fellows waiting for it go on. */
  replayed(): Promise<void> {
    return this.o.store.shared.markReplayed(this.o.incarnation, this.o.boot);
  }

  /**
   * Before admission: when the store forgot something at open, wait until every remembered
   * fellow replayed its WAL into it again or was declared gone; refused at `untilMs`.
   */
  async waitForFellows(w: { untilMs: number; onWait: (detail: string) => void }): Promise<void> {
    if (this.o.forgotten.length === 0 || !this.memory) return;
    const memory = this.memory;
    // Kept across a restart until the wait is over (the next start waits again).
    if (!memory.forgotten) await this.write({ ...memory, forgotten: [...this.o.forgotten] });
    let awaited = awaitedFellows(memory, await this.o.store.shared.regionNodes(), this.o.nodeId);
    this.o.log.error(
      { forgotten: this.o.forgotten, awaiting: awaited.map((n) => n.nodeId) },
      "the shared store forgot what it held (lost, or restored from a backup): waiting for the fellows' WALs before admitting appends",
    );
    await this.o.audit({
      kind: "store-forgot",
      forgotten: this.o.forgotten,
      awaiting: awaited.map((n) => ({ nodeId: n.nodeId, incarnation: n.incarnation })),
    });
    while (awaited.length > 0) {
      const names = awaited.map((n) => `${n.nodeId} (incarnation ${n.incarnation})`).join(", ");
      if (this.o.runtime.nowMs() >= w.untilMs)
        throw new StartupRefusedError(
          `the shared store forgot what it held (${this.o.forgotten[0]}), and node ${names} of region ${this.o.region} has not replayed its WAL into it since: keys it decided may be missing, and this node would decide them again. Start it; if its data directory is lost, declare it gone with: crr leave --config FILE --node-id ID`,
        );
      w.onWait(`the shared store forgot what it held: waiting for node ${names} to replay its WAL into it`);
      await sleep(this.o.runtime, this.o.probeIntervalMs);
      awaited = awaitedFellows(memory, await this.o.store.shared.regionNodes(), this.o.nodeId);
    }
    this.o.log.info("every fellow this node remembers has replayed its WAL into the shared store");
    // The store is whole again: what it lists now is the memory (rows it never got back, such
    // as a retired incarnation's, would otherwise read as forgotten at the next heartbeat).
    const rows = await this.o.store.shared.regionNodes();
    const next = this.next(rows, await storedLsns(this.o.store, this.o.region));
    if (next) await this.write(next);
  }

  /** The memory a heartbeat's rows give (undefined without this node's own row). */
  private next(rows: readonly RegionNode[], stored: ReadonlyMap<string, number>): FellowMemory | undefined {
    const me = rows.find((n) => n.incarnation === this.o.incarnation);
    return me && memoryOf(this.o.region, rows, stored, me.seenAtMs);
  }

  private async write(memory: FellowMemory): Promise<void> {
    const text = JSON.stringify(memory);
    await writeFileDurable(memoryFile(this.o.dataDir), `${text}\n`, this.o.fileOps);
    this.memory = memory;
  }

  /**
   * After admission, at each heartbeat: a store that forgot a node or part of a stream under
   * this running node stops it (a restart replays its WAL and waits for its fellows');
   * otherwise the memory follows the store.
   */
  async remember(rows: readonly RegionNode[]): Promise<void> {
    const applied = this.o.ownAppliedLsn(); // before the store is read: it holds at least this
    const stored = await storedLsns(this.o.store, this.o.region);
    const forgotten = this.memory ? forgottenBy(this.memory, rows, stored) : [];
    const held = stored.get(this.o.incarnation) ?? 0;
    if (held < applied)
      forgotten.push(`the store holds this node's stream to LSN ${held}; it applied it to ${applied}`);
    if (forgotten.length > 0) {
      this.o.stop(
        `the shared store forgot what it held while this node ran (${forgotten[0]}): it was lost or restored from a backup. Stop every node of the region and start them again: each replays its WAL into the store, and waits for the others' before it admits appends`,
      );
      return;
    }
    const next = this.next(rows, stored);
    // Unchanged but for the time: not rewritten (only a change is worth an fsync).
    if (!next || JSON.stringify({ ...next, atMs: 0 }) === JSON.stringify({ ...this.memory, atMs: 0 })) return;
    try {
      await this.write(next);
    } catch (err) {
      // Not a failed heartbeat (the store answered): the file keeps what it held (a node that
      // joined since is missing from it until a write passes), and the next beat writes again.
      this.o.onWriteError(err as Error);
    }
  }
}
