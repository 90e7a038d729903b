/**
 * What the peer routes that answer with records send the asking region: its own records, and
 * others' of the tenants it holds by the replication policy. A record of a tenant the policy
 * keeps from the asker never crosses the wire; its LSN is named as withheld, with its tenant,
 * so a stream copied by LSN tells a policy's hole from a record the peer lacks.
 */
import type { Withheld } from "../../link/index.js";

export function forAsker<V extends { origin: string; tenant: string; lsn: number }>(
  versions: readonly V[],
  asker: string,
  takes: (region: string, tenant: string) => boolean,
): { sent: V[]; withheld: Withheld[]; withheldTenants: string[] } {
  const sent: V[] = [];
  const withheld: Withheld[] = [];
  for (const v of versions) {
    if (v.origin === asker || takes(asker, v.tenant)) sent.push(v);
    else withheld.push({ lsn: v.lsn, tenant: v.tenant });
  }
  // The routes that answer by key (export, buckets) name only the tenants, sorted, never LSNs.
  const withheldTenants = [...new Set(withheld.map((w) => w.tenant))].sort();
  return { sent, withheld, withheldTenants };
}
