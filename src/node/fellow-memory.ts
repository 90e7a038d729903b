/**
 * What a node of a region served by several nodes remembers of the region outside the shared
 * store (`<dataDir>/fellows.json`): the live nodes and how far the store held each one's
 * stream, as of its last heartbeat. A store that was lost or restored from a backup has
 * forgotten some of it; the node then waits, before it admits appends, for every fellow it
 * remembers to replay its WAL into the store again (or to be declared gone): until then the
 * store may not hold keys that fellow decided and answered, and this node would decide them
 * again. Pure: the file and the store are read by the caller.
 */
import type { RegionNode } from "../store/index.js";

export interface RememberedNode {
  nodeId: string;
  incarnation: string;
  boot: string;
  /** How far the store held this incarnation's stream (its watermark). */
  storedLsn: number;
  /** When its WAL was last replayed into the store (a replay is a change worth remembering: see `awaitedFellows`). */
  replayedAtMs?: number;
}

export interface FellowMemory {
  region: string;
  /** When it was written, by the store's clock (this node's heartbeat then): a fellow's replay counts only after it. */
  atMs: number;
  /** The region's live nodes (this one included) at the last heartbeat after admission. */
  nodes: RememberedNode[];
  /**
   * Set while this node waits for its fellows after finding the store forgot (what it forgot):
   * a restart during the wait waits again, though the store, refilled meanwhile, may no
   * longer look forgetful. Cleared once the wait is over.
   */
  forgotten?: string[];
}

/** The memory a heartbeat leaves: the live nodes the store lists now, with their stored LSNs. */
export function memoryOf(
  region: string,
  rows: readonly RegionNode[],
  stored: ReadonlyMap<string, number>,
  atMs: number,
): FellowMemory {
  return {
    region,
    atMs,
    nodes: rows
      .filter((n) => n.leftAtMs === undefined)
      .map((n) => ({
        nodeId: n.nodeId,
        incarnation: n.incarnation,
        boot: n.boot,
        storedLsn: stored.get(n.incarnation) ?? 0,
        ...(n.replayedAtMs !== undefined ? { replayedAtMs: n.replayedAtMs } : {}),
      })),
  };
}

/**
 * What the store forgot of what the node remembers: a node it no longer lists, or a stream it
 * holds less of than it did. Empty when it forgot nothing. (A node it lists as left is not
 * forgotten: it was declared gone.)
 */
export function forgottenBy(
  memory: FellowMemory,
  rows: readonly RegionNode[],
  stored: ReadonlyMap<string, number>,
): string[] {
  const byIncarnation = new Map(rows.map((n) => [n.incarnation, n]));
  const leftIds = new Set(rows.filter((n) => n.leftAtMs !== undefined).map((n) => n.nodeId));
  const reasons: string[] = [];
  for (const n of memory.nodes) {
    if (leftIds.has(n.nodeId)) continue;
    const held = stored.get(n.incarnation) ?? 0;
    if (!byIncarnation.has(n.incarnation))
      reasons.push(`node ${n.nodeId} (incarnation ${n.incarnation}) is not in the store`);
    else if (held < n.storedLsn)
      reasons.push(
        `the store holds incarnation ${n.incarnation}'s stream to LSN ${held}; it held it to ${n.storedLsn}`,
      );
  }
  return reasons;
}

/**
 * The remembered fellows (not `selfNodeId`) whose WAL the store does not hold again yet: none
 * of their rows shows a replay later than the memory (by the store's clock: a row a backup
 * brought back says its node replayed before the backup, whatever its boot), and none is
 * marked left. Each once, with its remembered incarnation.
 */
export function awaitedFellows(
  memory: FellowMemory,
  rows: readonly RegionNode[],
  selfNodeId: string,
): RememberedNode[] {
  const waiting = new Map<string, RememberedNode>();
  for (const n of memory.nodes) {
    if (n.nodeId === selfNodeId || waiting.has(n.nodeId)) continue;
    const theirs = rows.filter((r) => r.nodeId === n.nodeId);
    const left = theirs.some((r) => r.leftAtMs !== undefined);
    const replayedSince = theirs.some((r) => r.replayedAtMs !== undefined && r.replayedAtMs > memory.atMs);
    if (!left && !replayedSince) waiting.set(n.nodeId, n);
  }
  return [...waiting.values()];
}

/** The memory file's content checked: undefined and a reason when it is not a memory. */
export function parseMemory(text: string): FellowMemory | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  const m = v as Partial<FellowMemory>;
  if (typeof m?.region !== "string" || !Number.isSafeInteger(m.atMs) || !Array.isArray(m.nodes))
    return "expected {region, atMs, nodes: [...]}";
  if (
    m.forgotten !== undefined &&
    !(Array.isArray(m.forgotten) && m.forgotten.every((f) => typeof f === "string"))
  )
    return "forgotten: expected an array of strings";
  for (const [i, n] of m.nodes.entries()) {
    const ok =
      typeof n?.nodeId === "string" &&
      typeof n.incarnation === "string" &&
      typeof n.boot === "string" &&
      Number.isSafeInteger(n.storedLsn) &&
      n.storedLsn >= 0 &&
      (n.replayedAtMs === undefined || Number.isSafeInteger(n.replayedAtMs));
    if (!ok) return `nodes[${i}]: expected {nodeId, incarnation, boot, storedLsn}`;
  }
  return m as FellowMemory;
}
