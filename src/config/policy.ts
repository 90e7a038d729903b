/**
 * Which regions a tenant's records go to, from the config's `crr` block. Pure.
 *
 * - multi-way: every region in `peers`.
 * - two-region: the one region in `targetRegions` (active-active pair).
 * - selective: per tenant, the `targetRegions` of its policy; a tenant without a policy stays
 *   in its origin region (never shipped), the safe default for data-residency rules.
 */
import type { NodeConfig } from "./load.js";

export interface ReplicationPolicy {
  /** Every peer this node ships to (it may still send each one only some tenants). */
  readonly peers: readonly string[];
  /** Whether `peer` receives records of `tenant`. */
  sendsTo(peer: string, tenant: string): boolean;
  /** Whether this region may hold `tenant`'s records shipped from `origin` (the reader's check). */
  accepts(origin: string, tenant: string): boolean;
  /** Whether the policy filters by tenant at all (false: every record goes to every peer). */
  readonly filtersTenants: boolean;
  /** The peers that receive `tenant` (for semi-synchronous appends). */
  peersFor(tenant: string): string[];
  /**
   * Whether `region` holds `tenant`'s records (of any origin) by this policy: what the peer
   * routes that answer with records send it (others' records of a tenant kept from it are
   * withheld).
   */
  regionTakes(region: string, tenant: string): boolean;
}

export function replicationPolicy(c: Pick<NodeConfig, "region" | "crr">): ReplicationPolicy {
  const self = c.region;
  const crr = c.crr;
  if (!crr.enabled) {
    return {
      peers: [],
      filtersTenants: false,
      sendsTo: () => false,
      accepts: () => false,
      peersFor: () => [],
      // Nothing is replicated: a peer is sent only its own records (the routes always do).
      regionTakes: () => false,
    };
  }
  if (crr.replicationMode !== "selective") {
    const peers = crr.replicationMode === "multi-way" ? [...crr.peers] : [...crr.targetRegions];
    return {
      peers,
      filtersTenants: false,
      sendsTo: (peer) => peers.includes(peer),
      accepts: () => true,
      peersFor: () => [...peers],
      regionTakes: () => true,
    };
  }
  const targets = new Map(crr.policies.map((p) => [p.tenantID, p.targetRegions]));
  const peers = [...new Set(crr.policies.flatMap((p) => p.targetRegions))].filter((r) => r !== self);
  return {
    peers,
    filtersTenants: true,
    sendsTo: (peer, tenant) => targets.get(tenant)?.includes(peer) ?? false,
    accepts: (_origin, tenant) => targets.get(tenant)?.includes(self) ?? false,
    peersFor: (tenant) => (targets.get(tenant) ?? []).filter((r) => r !== self),
    regionTakes: (region, tenant) => targets.get(tenant)?.includes(region) ?? false,
  };
}

/** The tenants this region takes from its peers: "*" (every one) or their ids, sorted. */
export function acceptedTenants(c: Pick<NodeConfig, "region" | "crr">): "*" | string[] {
  if (!c.crr.enabled) return [];
  if (c.crr.replicationMode !== "selective") return "*";
  return c.crr.policies
    .filter((p) => p.targetRegions.includes(c.region))
    .map((p) => p.tenantID)
    .sort();
}

/**
 * Since when a region takes tenants it did not take before (its policy was widened): every
 * tenant not in `before` is taken only since `atMs`. Its watermarks may have passed their
 * older records while the policy left them out; the backfill brings those.
 */
export interface PolicyWidening {
  atMs: number;
  before: string[];
}

/**
 * The widening from `before` to `now` at `atMs`, or undefined when `now` takes nothing new
 * (or `before` is unknown: a first start, or a store from before this was kept). An earlier
 * widening still within `keepMs` keeps its tenants new too (their backfill may still run).
 */
export function wideningOf(
  before: "*" | string[] | undefined,
  now: "*" | string[],
  atMs: number,
  earlier: PolicyWidening | undefined,
  keepMs: number,
): PolicyWidening | undefined {
  if (before === undefined || before === "*") return undefined;
  if (now !== "*" && now.every((t) => before.includes(t))) return undefined;
  const recent = earlier && atMs - earlier.atMs <= keepMs ? earlier : undefined;
  return { atMs, before: recent ? before.filter((t) => recent.before.includes(t)) : [...before] };
}
