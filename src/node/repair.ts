/**
 * What reconcile and the operator change by hand, each audited: records read back from
 * this region's own WAL (the origin's truth), versions a reconcile established, and a
 * shipper's allowance to skip LSNs nobody holds.
 */
import { ruleName, type StoredRecord } from "../store/index.js";
import { decodeFrames } from "../wal/index.js";
import { UnavailableError } from "./append-path.js";
import type { Region } from "./region.js";

/** Records of this region's own WAL by LSN (reconcile asks the origin: its WAL is the truth). */
export async function walRecords(r: Region, lsns: readonly number[]): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for (const lsn of lsns) {
    if (lsn < r.wal.firstLsn || lsn > r.wal.durableLsn) continue;
    const chunk = await r.wal.read(lsn, { bytesMax: 1, recordsMax: 1 }).catch(() => undefined);
    if (!chunk) continue;
    const [rec] = decodeFrames(chunk.frames, {
      source: chunk.segment,
      baseOffset: chunk.offset,
      firstLsn: lsn,
    });
    if (rec) out.push({ ...rec, origin: r.name, incarnation: r.wal.incarnation });
  }
  return out;
}

/** Write versions a reconcile established, with an audit entry per changed key. */
export async function repairVersions(
  r: Region,
  versions: readonly StoredRecord[],
  requestedBy: string,
): Promise<string[]> {
  const changed = r.store.repair(versions);
  for (const key of changed) {
    const v = versions.find((x) => x.key === key)!;
    void r.auditPump.record({ kind: "repair", key, requestedBy, written: v, rule: ruleName(r.store.rule) });
  }
  if (changed.length > 0)
    r.log.warn({ keys: changed.slice(0, 20), count: changed.length, requestedBy }, "reconcile repaired keys");
  await r.auditPump.pump();
  return changed;
}

/** An operator allows `peer`'s shipper to skip LSNs nobody holds, up to `throughLsn`: audited first. */
export async function allowSkip(
  r: Region,
  peer: string,
  throughLsn: number,
  requestedBy: string,
): Promise<void> {
  const s = r.shippers.get(peer);
  if (!s) throw new UnavailableError("unknown_peer", `region ${r.name} does not ship to '${peer}'`, 0);
  await r.auditPump.record({
    kind: "gap-skip-allowed",
    peer,
    incarnation: r.wal.incarnation,
    throughLsn,
    requestedBy,
  });
  s.allowSkip(throughLsn);
  r.log.warn({ peer, throughLsn, requestedBy }, "operator allowed skipping LSNs nobody holds (audited)");
}
