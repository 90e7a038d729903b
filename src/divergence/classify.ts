/**
 * What a difference between two regions' versions of one key means. Pure.
 *
 * - divergent: both regions hold the key with different winners although each has applied
 *   both versions (by its watermarks);
 * - missing: one region lacks a record that, by its watermark for that record's stream, it
 *   has already applied (lost data), and the policy says it should hold;
 * - in flight: replication has not got there yet (a watermark is below the version's LSN):
 *   not reported, so normal lag raises no alarm.
 */
import type { StoredRecord } from "../store/index.js";

export type FindingKind = "divergent" | "missing";

export interface Finding {
  kind: FindingKind;
  key: string;
  /** The two regions compared. */
  local: string;
  remote: string;
  /** For "missing": the region that lacks the record. */
  missingIn?: string;
  localVersion: StoredRecord | undefined;
  remoteVersion: StoredRecord | undefined;
  /** The watermarks that made this a finding rather than in flight. */
  watermarks: { local: Record<string, number>; remote: Record<string, number> };
}

/** Watermarks of one region, keyed by `${origin}/${incarnation}`. */
export type StreamWatermarks = ReadonlyMap<string, number>;

export const streamKey = (origin: string, incarnation: string) => `${origin}/${incarnation}`;

function applied(wm: StreamWatermarks, v: StoredRecord): boolean {
  return (wm.get(streamKey(v.origin, v.incarnation)) ?? 0) >= v.lsn;
}

function sameContent(a: StoredRecord, b: StoredRecord): boolean {
  return (
    a.origin === b.origin &&
    a.incarnation === b.incarnation &&
    a.lsn === b.lsn &&
    a.outcome === b.outcome &&
    a.tenant === b.tenant &&
    a.bodyJson === b.bodyJson &&
    a.hlc.wallMs === b.hlc.wallMs &&
    a.hlc.logical === b.hlc.logical
  );
}

export interface ClassifyInput {
  key: string;
  local: { region: string; version: StoredRecord | undefined; watermarks: StreamWatermarks };
  remote: { region: string; version: StoredRecord | undefined; watermarks: StreamWatermarks };
  /** Whether `region` should hold records of `tenant` written in `origin` (the replication policy). */
  shouldHold: (region: string, origin: string, tenant: string) => boolean;
}

/** A finding, or undefined when the versions agree or the difference is still in flight. */
export function classify(c: ClassifyInput): Finding | undefined {
  const a = c.local.version;
  const b = c.remote.version;
  if (a && b && sameContent(a, b)) return undefined;
  const wm = (side: ClassifyInput["local"]) => {
    const involved = [a, b].filter((v): v is StoredRecord => v !== undefined);
    return Object.fromEntries(
      involved.map((v) => [
        streamKey(v.origin, v.incarnation),
        side.watermarks.get(streamKey(v.origin, v.incarnation)) ?? 0,
      ]),
    );
  };
  const finding = (kind: FindingKind, missingIn?: string): Finding => ({
    kind,
    key: c.key,
    local: c.local.region,
    remote: c.remote.region,
    missingIn,
    localVersion: a,
    remoteVersion: b,
    watermarks: { local: wm(c.local), remote: wm(c.remote) },
  });
  if (a && b) {
    // Same identity, different content: one side's store was changed outside the engine.
    if (a.origin === b.origin && a.incarnation === b.incarnation && a.lsn === b.lsn)
      return finding("divergent");
    const settled = applied(c.local.watermarks, b) && applied(c.remote.watermarks, a);
    return settled ? finding("divergent") : undefined;
  }
  const [lacking, v] = a ? [c.remote, a] : [c.local, b!];
  if (!c.shouldHold(lacking.region, v.origin, v.tenant)) return undefined;
  // The origin applies its own records too (with its own watermark), so one rule covers both.
  return applied(lacking.watermarks, v) ? finding("missing", lacking.region) : undefined;
}
