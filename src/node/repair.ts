/**
 * What reconcile and the operator change by hand, each audited: records read back from
 * this region's own WAL (the origin's truth), versions a reconcile established, and a
 * shipper's allowance to skip LSNs nobody holds.
 */
import { RepairRefusedError } from "../errors.js";
import { bodyBytesMax, keyBytesMax, outcomeBytesMax, tenantBytesMax } from "../limits.js";
import type { StoredRecord } from "../store/index.js";
import { decodeFrames } from "../wal/index.js";
import { UnavailableError } from "./append-path.js";
import type { Region } from "./region.js";
import { askPeers, holeCheckLsns, splitByWinner, streamCheckLsns, streamHoles } from "./stream-check.js";

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
    // A stored record, field by field: the frame's own fields (its batch flags) are not part
    // of a version, and a peer's repair route refuses a version carrying them.
    if (rec)
      out.push({
        key: rec.key,
        tenant: rec.tenant,
        outcome: rec.outcome,
        bodyJson: rec.bodyJson,
        origin: r.name,
        incarnation: r.wal.incarnation,
        lsn: rec.lsn,
        hlc: rec.hlc,
      });
  }
  return out;
}

/** LSNs of the own stream one store read covers in restoreOwnFromWal (whole rows: stream-check.ts). */
const ownCheckLsns = holeCheckLsns;

/**
 * `crr verify`'s check of this region's own records against its WAL, the origin's truth:
 * every LSN of its current stream that the WAL still holds and the store applied must be in
 * the store, as the winner or as a loser kept in conflicts. One missing there was removed
 * outside the engine, and the winner digests cannot show it once another version of the key
 * won since: found by the simulator (seeds 315 and 454), an operator's hand delete of an own
 * record, then another region's older version of the key arrived and won; every region
 * agreed on the winner, and the deleted record, a loser now, was in no store of its origin.
 * One changed there (a hand edit of a winner or of a loser's row) is put back the same way.
 * Each is put back from the WAL through the rule (a repair, logged; a loser it becomes is
 * audited as a conflict). Returns the keys whose winner changed.
 */
export async function restoreOwnFromWal(r: Region): Promise<Restored> {
  const incarnation = r.wal.incarnation;
  const applied = Math.min(await r.store.watermark(r.name, incarnation), r.wal.durableLsn);
  const changed: string[] = [];
  let restored = 0;
  // A window at a time, each put back at once: one store transaction per window, not one
  // for all (a bulk hand delete would hold a live node's event loop).
  for (let from = Math.max(1, r.wal.firstLsn); from <= applied; from += ownCheckLsns) {
    const to = Math.min(applied, from + ownCheckLsns - 1);
    const held = await r.store.streamVersions(r.name, incarnation, from, to, to - from + 1);
    // A copy changed outside the engine (a winner or a loser) is no copy: put back too.
    const lsns = new Set(held.filter((v) => v.intact).map((v) => v.lsn));
    const missing: number[] = [];
    for (let lsn = from; lsn <= to; lsn++) if (!lsns.has(lsn)) missing.push(lsn);
    const found = missing.length > 0 ? await walRecords(r, missing) : [];
    if (found.length === 0) continue;
    r.log.error(
      { lsns: found.slice(0, 20).map((v) => v.lsn), count: found.length },
      "records of this region's own WAL were missing from its store, or changed there (outside the engine): put back from the WAL",
    );
    changed.push(...(await repairVersions(r, found, "crr verify: this region's own WAL")));
    restored += found.length;
  }
  return { restored, changed };
}

/** What a check of `crr verify` put back: versions written, and the keys whose winner changed. */
export interface Restored {
  restored: number;
  changed: string[];
}

/**
 * `crr verify`'s check of every stream this store holds below its watermark against the
 * peers' copies (stream-check.ts): what is missing here, the policy sends here, a peer holds
 * intact and loses against this store's winner of its key is put back as a conflict loser
 * (logged, audited as a conflict). One that would win is left to the divergence check, which
 * shows it. Returns how many were put back (no winner changes).
 */
export async function restoreStreamsFromPeers(
  r: Region,
): Promise<Restored & { failed: Array<{ peer: string; error: string }> }> {
  const c = {
    self: r.name,
    incarnation: r.wal.incarnation,
    walFirstLsn: r.wal.firstLsn,
    store: r.store,
    links: r.links,
    accepts: (origin: string, tenant: string) => r.policy.accepts(origin, tenant),
    rule: r.store.rule,
    yieldTurn: () => new Promise<void>((resolve) => r.runtime.soon(resolve)),
  };
  const streams = await streamHoles(c);
  if (streams.length === 0) return { restored: 0, changed: [], failed: [] };
  const a = await askPeers(c, streams);
  const failed = [...a.failed].map(([peer, error]) => ({ peer, error: `stream check: ${error}` }));
  for (const [peer, err] of a.failed)
    r.log.warn({ peer, err }, "crr verify: could not ask this peer for the stream LSNs missing here");
  if (a.unanswered.size > 0)
    r.log.info(
      { streams: Object.fromEntries(a.unanswered) },
      "crr verify: LSNs below a stream's watermark that this store lacks and no peer gave intact (tenants the policy does not send here, or held nowhere)",
    );
  const { losers, changedHere, left } = await splitByWinner(c, a.found);
  const ids = (vs: StoredRecord[]) => vs.slice(0, 20).map((v) => `${v.origin}/${v.incarnation}/${v.lsn}`);
  if (changedHere.length > 0)
    r.log.warn(
      { versions: ids(changedHere), count: changedHere.length },
      "crr verify: this store's winners of these records were changed outside the engine (the peers hold them intact): left to the divergence check and crr reconcile",
    );
  if (left.length > 0)
    r.log.warn(
      { versions: ids(left), count: left.length },
      "crr verify: records below their stream's watermark are missing from this store and would win their key here: left to the divergence check and crr reconcile",
    );
  if (losers.length === 0) return { restored: 0, changed: [], failed };
  r.log.error(
    { versions: ids(losers), count: losers.length },
    "conflict losers below their stream's watermark were missing from this store (removed outside the engine): put back from the peers' copies",
  );
  const changed: string[] = [];
  for (let i = 0; i < losers.length; i += streamCheckLsns)
    changed.push(
      ...(await repairVersions(r, losers.slice(i, i + streamCheckLsns), "crr verify: the peers' copies")),
    );
  return { restored: losers.length, changed, failed };
}

/** Write versions a reconcile established, with an audit entry per changed key. */
export async function repairVersions(
  r: Region,
  versions: readonly StoredRecord[],
  requestedBy: string,
): Promise<string[]> {
  // Each version written is noted for the audit in the repair's own transaction: a crash
  // before the audit write loses no entry (the pump writes it from the store).
  const changed = await r.store.repair(versions, { requestedBy });
  if (changed.length > 0)
    r.log.warn({ keys: changed.slice(0, 20), count: changed.length, requestedBy }, "reconcile repaired keys");
  await r.auditPump.pump();
  return changed;
}

/**
 * A repair a peer sends (its reconcile's decision): every version must fit the limits, come
 * from a region of the deployment, be one this region may hold under the tenant policy, and
 * be for a key this region's own detector reports as divergent or missing with that peer
 * (checked now, for those keys). Signed as this region itself, it is the operator's own
 * reconcile (an admin): the detector check is skipped. One version failing refuses the
 * whole request.
 */
export async function repairFromPeer(
  r: Region,
  versions: readonly StoredRecord[],
  sender: string,
): Promise<string[]> {
  for (const v of versions) {
    const tooLong = (
      [
        ["key", v.key, keyBytesMax],
        ["tenant", v.tenant, tenantBytesMax],
        ["outcome", v.outcome, outcomeBytesMax],
        ["bodyJson", v.bodyJson ?? "", bodyBytesMax],
      ] as const
    ).find(([, value, max]) => Buffer.byteLength(value) > max);
    if (tooLong) throw new RepairRefusedError(v.key, `${tooLong[0]} longer than ${tooLong[2]} bytes`);
    if (!(v.origin in r.config.regions))
      throw new RepairRefusedError(v.key, `origin '${v.origin}' is not a region of this deployment`);
    if (v.origin !== r.name && !r.policy.accepts(v.origin, v.tenant))
      throw new RepairRefusedError(
        v.key,
        `tenant '${v.tenant}' from ${v.origin} is not held in ${r.name} by policy`,
      );
  }
  if (sender === r.name) return repairVersions(r, versions, sender);
  const keys = [...new Set(versions.map((v) => v.key))];
  let findings;
  try {
    findings = await r.divergence.checkKeys(sender, keys);
  } catch (err) {
    throw new UnavailableError(
      "repair_unverified",
      `cannot compare these keys with ${sender} (${(err as Error).message}); nothing was written`,
      5,
    );
  }
  const reported = new Set(findings.map((f) => f.key));
  const unreported = keys.find((k) => !reported.has(k));
  if (unreported !== undefined)
    throw new RepairRefusedError(
      unreported,
      `this region's detector finds no difference with ${sender} for it`,
    );
  return repairVersions(r, versions, sender);
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
