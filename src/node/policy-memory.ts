/**
 * What this region's store remembers of its replication policy: the tenants it takes from
 * its peers, and since when it takes those a widened policy added (the watermarks view says
 * so, so no detector takes the records a backfill still brings for lost ones).
 */
import { acceptedTenants, wideningOf, type NodeConfig, type PolicyWidening } from "../config/index.js";
import type { MetaStore } from "../store/index.js";

export const acceptedMeta = "policy_accepts";
export const wideningMeta = "policy_widened";

type Meta = Pick<MetaStore, "getMeta" | "setMeta">;

function parse<T>(raw: string | undefined, valid: (v: unknown) => v is T): T | undefined {
  if (raw === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(raw);
    return valid(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

const isTenantList = (v: unknown): v is string[] => Array.isArray(v) && v.every((t) => typeof t === "string");
const isTenants = (v: unknown): v is "*" | string[] => v === "*" || isTenantList(v);
/** A widening: when, and the tenants taken before it (a list: "*" cannot be widened). */
const isWidening = (v: unknown): v is PolicyWidening => {
  const w = v as Partial<PolicyWidening> | null;
  return typeof w === "object" && w !== null && typeof w.atMs === "number" && isTenantList(w.before);
};

/** The last widening of this region's policy, if the store keeps one. */
export async function readWidening(store: Pick<MetaStore, "getMeta">): Promise<PolicyWidening | undefined> {
  return parse(await store.getMeta(wideningMeta), isWidening);
}

/**
 * At open: compare the configured policy with the one the store remembers, note a widening
 * (before the region admits anything, so the view says it from the first answer), then
 * remember the configured one. Returns the widening in force, if any.
 */
export async function notePolicy(
  store: Meta,
  config: Pick<NodeConfig, "region" | "crr" | "divergence">,
  nowMs: number,
): Promise<PolicyWidening | undefined> {
  const raw = await store.getMeta(acceptedMeta);
  const now = acceptedTenants(config);
  const earlier = await readWidening(store);
  const widening = wideningOf(parse(raw, isTenants), now, nowMs, earlier, config.divergence.inFlightMsMax);
  if (widening) await store.setMeta(wideningMeta, JSON.stringify(widening));
  if (raw !== JSON.stringify(now)) await store.setMeta(acceptedMeta, JSON.stringify(now));
  return widening ?? earlier;
}
