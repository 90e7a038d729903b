/**
 * The WAL as the shipper of a node that shares its store with the region's other nodes sees
 * it: only the LSNs the store holds. A record durable in this node's WAL but not applied (the
 * store failed, or the node was marked left and the store refuses it) was never acknowledged
 * and may lose to another node's decision of its key: shipping it would let peers overturn an
 * acknowledged answer (found by review). A single node ships what is durable, as before.
 */
import type { ShipperWal } from "../shipper/index.js";
import type { LocalApplier } from "./local-applier.js";

export function appliedOnly(
  wal: ShipperWal,
  applier: Pick<LocalApplier, "applied" | "waitApplied">,
): ShipperWal {
  const shippable = () => Math.min(wal.durableLsn, Math.max(0, applier.applied));
  return {
    get incarnation() {
      return wal.incarnation;
    },
    get firstLsn() {
      return wal.firstLsn;
    },
    get durableLsn() {
      return shippable();
    },
    read: (fromLsn, limits) => {
      const upTo = shippable();
      if (fromLsn > upTo) return Promise.resolve(undefined);
      return wal.read(fromLsn, { ...limits, recordsMax: Math.min(limits.recordsMax, upTo - fromLsn + 1) });
    },
    waitForDurable: async (afterLsn, signal) => {
      for (;;) {
        const upTo = shippable();
        if (upTo > afterLsn) return upTo;
        if (signal?.aborted) throw signal.reason;
        if (wal.durableLsn <= afterLsn) await wal.waitForDurable(afterLsn, signal);
        else await applier.waitApplied(afterLsn, signal);
      }
    },
    segmentRange: (lsn) => wal.segmentRange(lsn),
  };
}

/**
 * The WAL a node's shippers read: the applied-only view when the node shares its store with
 * other nodes of its region (a shared store and a node id), else the WAL itself.
 */
export function shippedWal(node: {
  store: { shared: unknown };
  nodeId: string | undefined;
  wal: ShipperWal;
  applier: Pick<LocalApplier, "applied" | "waitApplied">;
}): ShipperWal {
  return node.store.shared && node.nodeId ? appliedOnly(node.wal, node.applier) : node.wal;
}
