/**
 * What a difference between two regions' versions of one key means. Pure.
 *
 * - divergent: both regions hold the key with different winners although each has settled
 *   both versions;
 * - missing: one region lacks a record it has settled, and the policy says it should hold it;
 * - in flight: replication has not got there yet: not reported, so normal lag raises no alarm.
 *
 * A version is settled in a region when the region's watermark for its stream covers it, or
 * when it can no longer be in flight: it is older than `inFlightMsMax`, or its stream's
 * incarnation is dead (the origin has moved to a newer one, so the old stream will never
 * advance). Without that bound, a record an origin shipped to one peer but not another
 * before losing its disk would stay "in flight" forever.
 */
import type { StoredRecord } from "../store/pure.js";

export type FindingKind = "divergent" | "missing";

/** Why a difference is not in flight: a watermark covers it, it is too old, or its stream is dead. */
export type SettledBy = "watermark" | "age" | "dead-incarnation";

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
  /** Why it is not in flight (the lacking side's view, for missing; the later of both, for divergent). */
  reason: SettledBy;
}

/** Watermarks of one region, keyed by `${origin}/${incarnation}`. */
export type StreamWatermarks = ReadonlyMap<string, number>;

export const streamKey = (origin: string, incarnation: string) => `${origin}/${incarnation}`;

/**
 * How a side has settled `v`, or undefined while `v` may still be in flight to it. A side
 * whose policy was widened since `v` was written, to take `v`'s tenant, may have passed `v`
 * while its policy left it out: a backfill brings it, so it is in flight until
 * `inFlightMsMax` after the widening, then settled by age. "Since" allows for the clocks: a
 * record stamped up to `maxSkewMs` after the widening may have been written before it by a
 * clock ahead (simulator seed 749).
 */
function settledBy(side: Side, v: StoredRecord, c: ClassifyInput): SettledBy | undefined {
  const w = side.widened;
  if (
    w &&
    v.origin !== side.region &&
    !w.before.includes(v.tenant) &&
    v.hlc.wallMs <= w.atMs + (c.maxSkewMs ?? 0)
  )
    return c.nowMs - w.atMs > c.inFlightMsMax ? "age" : undefined;
  if ((side.watermarks.get(streamKey(v.origin, v.incarnation)) ?? 0) >= v.lsn) return "watermark";
  if (c.deadStreams.has(streamKey(v.origin, v.incarnation))) return "dead-incarnation";
  if (c.nowMs - v.hlc.wallMs > c.inFlightMsMax) return "age";
  return undefined;
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

interface Side {
  region: string;
  version: StoredRecord | undefined;
  watermarks: StreamWatermarks;
  /** The side's policy was widened at `atMs` to take tenants not in `before` (its watermarks view says so). */
  widened?: { atMs: number; before: readonly string[] };
}

export interface ClassifyInput {
  key: string;
  local: Side;
  remote: Side;
  /** Whether `region` should hold records of `tenant` written in `origin` (the replication policy). */
  shouldHold: (region: string, origin: string, tenant: string) => boolean;
  nowMs: number;
  inFlightMsMax: number;
  /** How far ahead of a region's clock a record may be stamped (hlc.maxSkewMs); default 0. */
  maxSkewMs?: number;
  /** `${origin}/${incarnation}` of streams whose origin has moved to a newer incarnation. */
  deadStreams: ReadonlySet<string>;
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
  const finding = (kind: FindingKind, reason: SettledBy, missingIn?: string): Finding => ({
    kind,
    key: c.key,
    local: c.local.region,
    remote: c.remote.region,
    missingIn,
    localVersion: a,
    remoteVersion: b,
    watermarks: { local: wm(c.local), remote: wm(c.remote) },
    reason,
  });
  if (a && b) {
    // Same identity, different content: one side's store was changed outside the engine.
    if (a.origin === b.origin && a.incarnation === b.incarnation && a.lsn === b.lsn)
      return finding("divergent", "watermark");
    const localHasB = settledBy(c.local, b, c);
    const remoteHasA = settledBy(c.remote, a, c);
    return localHasB && remoteHasA
      ? finding("divergent", localHasB === "watermark" ? remoteHasA : localHasB)
      : undefined;
  }
  const [lacking, v] = a ? [c.remote, a] : [c.local, b!];
  if (!c.shouldHold(lacking.region, v.origin, v.tenant)) return undefined;
  // The origin applies its own records too (with its own watermark), so one rule covers both.
  const by = settledBy(lacking, v, c);
  return by ? finding("missing", by, lacking.region) : undefined;
}

/**
 * Streams whose origin has moved on: a region's own stream of an incarnation other than the
 * one it runs now, or a stream either side holds for an origin with a newer incarnation
 * updated after it on the same side. A third region whose live incarnations are known
 * (`liveElsewhere`: several nodes serve it, and one side heard them lately) is judged by
 * them instead: each of its nodes has a stream, and the one updated last is not the only live one.
 */
export function deadStreams(
  sides: ReadonlyArray<{
    region: string;
    incarnation: string;
    /** Every live incarnation of the side's region (several nodes on one store); default its own. */
    incarnations?: readonly string[];
    streams: ReadonlyArray<{ origin: string; incarnation: string; updatedAtMs: number }>;
  }>,
  liveElsewhere: ReadonlyMap<string, ReadonlySet<string>> = new Map(),
): Set<string> {
  const dead = new Set<string>();
  const current = new Map(sides.map((s) => [s.region, new Set([s.incarnation, ...(s.incarnations ?? [])])]));
  for (const [region, live] of liveElsewhere) if (!current.has(region)) current.set(region, new Set(live));
  for (const side of sides) {
    for (const s of side.streams) {
      const live = current.get(s.origin);
      if (live !== undefined && !live.has(s.incarnation)) dead.add(streamKey(s.origin, s.incarnation));
      const newer = side.streams.some(
        (o) => o.origin === s.origin && o.incarnation !== s.incarnation && o.updatedAtMs > s.updatedAtMs,
      );
      if (newer && live === undefined) dead.add(streamKey(s.origin, s.incarnation));
    }
  }
  return dead;
}
