/**
 * The audience of a region's archive: which regions its replication policy sends its records
 * to, published by the region itself, sealed with its key, at `<prefix>/<origin>/_audience.json`
 * before it archives anything in each process (a policy changes only with a restart).
 *
 * An archived object holds every tenant its origin wrote, and a region reading it learns all
 * of them, whatever its own config says: configs may disagree (during a rolling policy
 * change, or by mistake), and a follower's config cannot tell what the origin's policy sends
 * it. So a region follows a peer's archive (`via: s3`) only while that peer's audience sends it
 * everything, a bootstrap or rebuild seeds from a peer's objects only then too (the peers give
 * the rest, withholding what is not for the asker), and a restore keeps of a peer's records
 * only the tenants its audience sends here.
 *
 * Pure apart from `publishAudience` and `readAudience` (one PUT, one GET).
 */
import type { NodeConfig } from "../config/index.js";
import { replicationPolicy } from "../config/index.js";
import { checkSeal, sealObject, type KeyRing, type Signer } from "../protocol/index.js";
import { NoSuchObjectError, type ArchiveStore } from "./s3-store.js";

export interface Audience {
  origin: string;
  /** The origin's replication mode when it published this (`off`: crr.enabled false). */
  mode: "multi-way" | "two-region" | "selective" | "off";
  /** Regions sent every record (multi-way's peers, two-region's target). */
  sendsAllTo: string[];
  /** Selective: per tenant, the regions sent its records (other tenants go nowhere). */
  tenants: Record<string, string[]>;
  /** When it was published (the origin's clock): shown, not trusted. */
  atMs: number;
}

/** Where `origin` publishes its audience: inside its own folder (write access to it is the origin's only). */
export function audienceObjectKey(prefix: string, origin: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  return `${p === "" ? "" : `${p}/`}${origin}/_audience.json`;
}

/** The audience a region's config gives its archive. */
export function audienceOf(c: Pick<NodeConfig, "region" | "crr">, atMs: number): Audience {
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
export function sendsEverything(a: Audience, region: string): boolean {
  return a.sendsAllTo.includes(region);
}

/** Whether the origin sends `region` the records of `tenant`. */
export function sendsTenant(a: Audience, region: string, tenant: string): boolean {
  return sendsEverything(a, region) || (a.tenants[tenant]?.includes(region) ?? false);
}

/** The identity the seal covers: no segment has this incarnation (theirs are 32 hex digits). */
const sealedAs = (origin: string, body: Buffer) => ({
  origin,
  incarnation: "audience",
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
  await store.put(audienceObjectKey(prefix, a.origin), body, sealObject(signer, sealedAs(a.origin, body)));
}

/** An origin's audience could not be read or trusted: its archive is not read here. */
export class AudienceError extends Error {}

/** `origin`'s published audience, checked: its seal, then every field. Throws AudienceError saying why not. */
export async function readAudience(
  store: ArchiveStore,
  keys: KeyRing,
  prefix: string,
  origin: string,
): Promise<Audience> {
  const key = audienceObjectKey(prefix, origin);
  let got;
  try {
    got = await store.get(key, 1024 * 1024);
  } catch (err) {
    if (err instanceof NoSuchObjectError)
      throw new AudienceError(
        `${origin} has published no audience at ${key} (its archiver has not run since it was upgraded, or it archives elsewhere): its archive is not read here`,
      );
    throw err;
  }
  const seal = checkSeal(keys, sealedAs(origin, got.body), got.seal);
  if (seal !== "ok") throw new AudienceError(`${key}: ${seal}: not trusted, its archive is not read here`);
  return parseAudience(key, origin, got.body);
}

function parseAudience(key: string, origin: string, body: Buffer): Audience {
  const bad = (field: string, what: string) => new AudienceError(`${key}: ${field}: ${what}`);
  let a: Partial<Audience>;
  try {
    a = JSON.parse(body.toString("utf8")) as Partial<Audience>;
  } catch (err) {
    throw bad("(whole object)", `not JSON (${(err as Error).message})`);
  }
  const names = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
  if (a.origin !== origin) throw bad("origin", `${JSON.stringify(a.origin)}, expected "${origin}"`);
  if (!["multi-way", "two-region", "selective", "off"].includes(a.mode as string))
    throw bad("mode", `unknown ${JSON.stringify(a.mode)}`);
  if (!names(a.sendsAllTo)) throw bad("sendsAllTo", "expected a list of region names");
  const tenants = a.tenants;
  if (typeof tenants !== "object" || tenants === null || !Object.values(tenants).every(names))
    throw bad("tenants", "expected {tenant: [region, …]}");
  if (typeof a.atMs !== "number") throw bad("atMs", "expected a number");
  return a as Audience;
}

/** What the archive may give this region of its peers: their audiences, and why one could not be used. */
export interface PeerAudiences {
  audiences: Map<string, Audience>;
  passedOver: Map<string, string>;
}

/** The audiences of `origins` other than `self` (each read and checked); the others with why not. */
export async function peerAudiences(
  store: ArchiveStore,
  keys: KeyRing,
  prefix: string,
  self: string,
  origins: readonly string[],
): Promise<PeerAudiences> {
  const out: PeerAudiences = { audiences: new Map(), passedOver: new Map() };
  for (const origin of origins) {
    if (origin === self) continue;
    try {
      out.audiences.set(origin, await readAudience(store, keys, prefix, origin));
    } catch (err) {
      if (!(err instanceof AudienceError)) throw err;
      out.passedOver.set(origin, err.message);
    }
  }
  return out;
}

/**
 * The origins a bootstrap or rebuild may seed from the archive (their objects read whole):
 * this region, and each other whose audience sends it everything. The peers give the rest,
 * withholding what is not for the asker.
 */
export async function seedOrigins(
  store: ArchiveStore,
  keys: KeyRing,
  prefix: string,
  self: string,
  origins: readonly string[],
): Promise<{ origins: string[]; passedOver: Map<string, string> }> {
  const peers = await peerAudiences(store, keys, prefix, self, origins);
  const whole: string[] = [];
  for (const [origin, a] of peers.audiences)
    if (sendsEverything(a, self)) whole.push(origin);
    else peers.passedOver.set(origin, `${origin}'s policy (${a.mode}) does not send ${self} every record`);
  return { origins: [self, ...whole], passedOver: peers.passedOver };
}
