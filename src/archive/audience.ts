/**
 * The audience of a region's archive: which regions its replication policy sends its records
 * to, published by each of its WAL's incarnations (each node of a region has its own), sealed
 * with the region's key, at `<prefix>/<origin>/<incarnation>.audience.json`, before that
 * incarnation archives anything in each process (a policy changes only with a restart).
 *
 * An archived object holds every tenant its origin wrote, and a region reading it learns all
 * of them, whatever its own config says: configs may disagree (during a rolling policy
 * change, or by mistake), and a follower's config cannot tell what the origin's policy sends
 * it. So a region follows a peer's stream in the archive (`via: s3`) only while that stream's
 * audience sends it everything, a bootstrap or rebuild seeds from a peer's stream only then too
 * (the peers give the rest, withholding what is not for the asker), and a restore keeps of a
 * peer's stream only the tenants its audience sends here. Per incarnation, not per region: the
 * nodes of one region restart one by one, each under its own config (found by review).
 *
 * Pure apart from `publishAudience` and `readAudience` (one PUT, one GET).
 */
import type { NodeConfig } from "../config/index.js";
import { replicationPolicy } from "../config/index.js";
import { checkSeal, sealObject, type KeyRing, type Signer } from "../protocol/index.js";
import { NoSuchObjectError, type ArchiveStore } from "./s3-store.js";

export interface Audience {
  origin: string;
  /** The WAL incarnation (one node's stream) this audience is of. */
  incarnation: string;
  /** The origin's replication mode when it published this (`off`: crr.enabled false). */
  mode: "multi-way" | "two-region" | "selective" | "off";
  /** Regions sent every record (multi-way's peers, two-region's target). */
  sendsAllTo: string[];
  /** Selective: per tenant, the regions sent its records (other tenants go nowhere). */
  tenants: Record<string, string[]>;
  /** When it was published (the origin's clock): shown, not trusted. */
  atMs: number;
}

/**
 * Where an incarnation publishes its audience: in its origin's folder (write access to it is
 * the origin's only), beside the incarnation's folder of objects, not in it (a listing of
 * objects never meets it, nor a listing of incarnation folders).
 */
export function audienceObjectKey(prefix: string, origin: string, incarnation: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  return `${p === "" ? "" : `${p}/`}${origin}/${incarnation}.audience.json`;
}

/** An audience before the incarnation it is published for is known (each archiver adds its WAL's). */
export type Policy = Omit<Audience, "incarnation">;

/** The audience a region's config gives its archive. */
export function audienceOf(c: Pick<NodeConfig, "region" | "crr">, atMs: number): Policy {
  const base = { origin: c.region, sendsAllTo: [] as string[], tenants: {}, atMs };
  if (!c.crr.enabled) return { ...base, mode: "off" };
  if (c.crr.replicationMode !== "selective")
    return { ...base, mode: c.crr.replicationMode, sendsAllTo: [...replicationPolicy(c).peers].sort() };
  const tenants = Object.fromEntries(
    c.crr.policies.map((p) => [p.tenantID, p.targetRegions.filter((r) => r !== c.region).sort()]),
  );
  return { ...base, mode: "selective", tenants };
}

/** Whether the origin sends `region` every record (its objects may be read there whole). */
export function sendsEverything(a: Policy, region: string): boolean {
  return a.sendsAllTo.includes(region);
}

/** Whether the origin sends `region` the records of `tenant`. */
export function sendsTenant(a: Policy, region: string, tenant: string): boolean {
  // Own keys only: a tenant named "constructor" must not reach Object.prototype (found by review).
  return (
    sendsEverything(a, region) || (Object.hasOwn(a.tenants, tenant) && a.tenants[tenant]!.includes(region))
  );
}

/** The identity the seal covers: no segment has this incarnation (theirs are 32 hex digits). */
const sealedAs = (origin: string, incarnation: string, body: Buffer) => ({
  origin,
  incarnation: `audience ${incarnation}`,
  firstLsn: 0,
  lastLsn: 0,
  body,
});

export async function publishAudience(
  store: ArchiveStore,
  signer: Signer,
  prefix: string,
  a: Audience,
): Promise<void> {
  const body = Buffer.from(`${JSON.stringify(a)}\n`);
  const key = audienceObjectKey(prefix, a.origin, a.incarnation);
  await store.put(key, body, sealObject(signer, sealedAs(a.origin, a.incarnation, body)));
}

/** An origin's audience could not be read or trusted: its archive is not read here. `missing`: none was ever put. */
export class AudienceError extends Error {
  constructor(
    message: string,
    readonly missing = false,
  ) {
    super(message);
  }
}

/** The published audience of `origin`'s `incarnation`, checked: its seal, then every field. Throws AudienceError saying why not. */
export async function readAudience(
  store: ArchiveStore,
  keys: KeyRing,
  prefix: string,
  origin: string,
  incarnation: string,
): Promise<Audience> {
  const key = audienceObjectKey(prefix, origin, incarnation);
  let got;
  try {
    got = await store.get(key, 1024 * 1024);
  } catch (err) {
    if (err instanceof NoSuchObjectError)
      throw new AudienceError(
        `${origin} (incarnation ${incarnation}) has published no audience at ${key} (its archiver has not run since it was upgraded, or it archives elsewhere)`,
        true,
      );
    throw err;
  }
  const seal = checkSeal(keys, sealedAs(origin, incarnation, got.body), got.seal);
  if (seal !== "ok") throw new AudienceError(`${key}: ${seal}: not trusted`);
  return parseAudience(key, origin, incarnation, got.body);
}

function parseAudience(key: string, origin: string, incarnation: string, body: Buffer): Audience {
  const bad = (field: string, what: string) => new AudienceError(`${key}: ${field}: ${what}`);
  let a: Partial<Audience>;
  try {
    a = JSON.parse(body.toString("utf8")) as Partial<Audience>;
  } catch (err) {
    throw bad("(whole object)", `not JSON (${(err as Error).message})`);
  }
  const names = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
  if (a.origin !== origin) throw bad("origin", `${JSON.stringify(a.origin)}, expected "${origin}"`);
  if (a.incarnation !== incarnation)
    throw bad("incarnation", `${JSON.stringify(a.incarnation)}, expected "${incarnation}"`);
  if (!["multi-way", "two-region", "selective", "off"].includes(a.mode as string))
    throw bad("mode", `unknown ${JSON.stringify(a.mode)}`);
  if (!names(a.sendsAllTo)) throw bad("sendsAllTo", "expected a list of region names");
  const tenants = a.tenants;
  if (typeof tenants !== "object" || tenants === null || !Object.values(tenants).every(names))
    throw bad("tenants", "expected {tenant: [region, …]}");
  if (typeof a.atMs !== "number") throw bad("atMs", "expected a number");
  return a as Audience;
}

/**
 * The audiences of the streams of a restore plan that are not this region's own: each read and
 * checked, or why not. Any failure is a reason, not a throw: one unreadable audience (a
 * timeout) must not cost a seed the streams it can take, its own first (found by review).
 *
 * A stream with no audience at all (an incarnation that ended before audiences existed: a
 * dead node, a WAL replaced) takes its origin's word from its other streams in the plan when
 * every one of them that could be read agrees: the origin's current policy, as over HTTP.
 */
export async function streamAudiences(
  store: ArchiveStore,
  keys: KeyRing,
  prefix: string,
  self: string,
  streams: ReadonlyArray<{ origin: string; incarnation: string }>,
): Promise<{ audiences: Map<string, Audience>; passedOver: Map<string, string> }> {
  const out = { audiences: new Map<string, Audience>(), passedOver: new Map<string, string>() };
  const unpublished: Array<{ origin: string; incarnation: string }> = [];
  for (const s of streams) {
    if (s.origin === self) continue;
    const id = streamId(s.origin, s.incarnation);
    try {
      out.audiences.set(id, await readAudience(store, keys, prefix, s.origin, s.incarnation));
    } catch (err) {
      const why = (err as Error).message;
      out.passedOver.set(
        id,
        err instanceof AudienceError ? why : `${id}: its audience could not be read (${why})`,
      );
      if (err instanceof AudienceError && err.missing) unpublished.push(s);
    }
  }
  for (const s of unpublished) {
    const word = [...out.audiences.values()].filter((a) => a.origin === s.origin);
    const same = word.every((a) => JSON.stringify(policyOf(a)) === JSON.stringify(policyOf(word[0]!)));
    if (word.length === 0 || !same) continue;
    const id = streamId(s.origin, s.incarnation);
    out.passedOver.delete(id);
    out.audiences.set(id, { ...word[0]!, incarnation: s.incarnation });
  }
  return out;
}

const policyOf = (a: Audience) => ({ mode: a.mode, sendsAllTo: a.sendsAllTo, tenants: a.tenants });

export const streamId = (origin: string, incarnation: string) => `${origin}/${incarnation}`;
