/**
 * Object keys of the archive. A key names what the object holds, so a restore or a reader
 * finds what it needs with `start-after` listings, never a full one:
 *
 *   <prefix>/<origin>/<incarnation>/<firstLsn:20>-<lastLsn:20>.wal
 *
 * Zero-padded LSNs sort like numbers, so keys of one incarnation sort by LSN.
 */

const lsnDigits = 20;

export interface SegmentObject {
  origin: string;
  incarnation: string;
  firstLsn: number;
  lastLsn: number;
}

/** The folder of one incarnation's segments (with its trailing slash). */
export function incarnationPrefix(prefix: string, origin: string, incarnation: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  return `${p === "" ? "" : `${p}/`}${origin}/${incarnation}/`;
}

export function segmentObjectKey(prefix: string, o: SegmentObject): string {
  const pad = (n: number) => String(n).padStart(lsnDigits, "0");
  return `${incarnationPrefix(prefix, o.origin, o.incarnation)}${pad(o.firstLsn)}-${pad(o.lastLsn)}.wal`;
}

/** What a key names, or undefined for a key this archive did not write. */
export function parseSegmentObjectKey(key: string): SegmentObject | undefined {
  const m = /(?:^|\/)([^/]+)\/([0-9a-f]{32})\/(\d{20})-(\d{20})\.wal$/.exec(key);
  if (!m) return undefined;
  const o = { origin: m[1]!, incarnation: m[2]!, firstLsn: Number(m[3]), lastLsn: Number(m[4]) };
  return o.lastLsn >= o.firstLsn - 1 ? o : undefined;
}
