/**
 * A region served by several nodes that share one store (PostgreSQL): the claim each append
 * takes before its WAL append, and the end of this node's claims once its WAL is in the store.
 * (ARCHITECTURE.md, "Several nodes in one region".)
 */
import type { DedupStore } from "../store/index.js";
import type { AppendPathDeps } from "./append-path.js";
import type { Region } from "./region.js";

/** The append path's claims, when the store is shared; undefined otherwise (one node per store). */
export function claimsOf(
  store: Pick<DedupStore, "shared">,
  incarnation: string,
  nodeId: string | undefined,
  waitMs: number,
): AppendPathDeps["claims"] {
  const shared = store.shared;
  if (!shared || !nodeId) return undefined;
  return {
    claim: (key) => shared.claim(key, incarnation),
    release: (key) => shared.releaseClaim(key, incarnation),
    waitMs,
  };
}

/**
 * Once this node's WAL is applied to the store, every key it claimed is either decided there
 * or was never appended (so never acknowledged): its claims, of every incarnation of this
 * data directory, end. Runs before appends are admitted.
 */
export async function releaseOwnClaims(r: Region): Promise<void> {
  const shared = r.store.shared;
  if (!shared || !r.nodeId) return;
  const mine = (await shared.regionNodes()).filter((n) => n.nodeId === r.nodeId).map((n) => n.incarnation);
  const released = await shared.releaseClaims(mine);
  if (released > 0)
    r.log.info({ released }, "released the claims of appends that never reached this node's WAL");
}
