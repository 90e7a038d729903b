/**
 * One PeerLink per other region of the config, owned by the region (closed when it closes).
 * HTTP between processes by default; tests and the simulator pass their own factory.
 */
import type { Credentials, NodeConfig } from "../config/index.js";
import { HttpPeerLink, type ClientTls, type PeerLink } from "../link/index.js";
import { formatVersion } from "../protocol/index.js";
import type { Runtime } from "../runtime/index.js";

/** Who this region is on the wire: every request it sends is signed with these. */
export interface LinkIdentity {
  incarnation: () => string | undefined;
  boot: string;
  rule: string;
  credentials: Credentials;
}

export type LinkFactory = (peer: string, identity: LinkIdentity) => PeerLink;

export function httpLinks(
  config: NodeConfig,
  runtime: Runtime,
  tls: (() => ClientTls) | undefined,
  onBatchSent?: (peer: string, bytes: number, wireBytes: number) => void,
): LinkFactory {
  const s = config.shipper;
  return (peer, identity) =>
    new HttpPeerLink({
      region: config.region,
      incarnation: identity.incarnation,
      boot: identity.boot,
      rule: `${identity.rule}/${formatVersion}`,
      signer: identity.credentials.signer,
      keys: identity.credentials.ring,
      tls,
      peer,
      url: config.regions[peer]!.url,
      connectTimeoutMs: config.shipper.connectTimeoutMs,
      requestTimeoutMs: config.shipper.requestTimeoutMs,
      inflightBatchesMax: config.shipper.inflightBatchesMax,
      runtime,
      compression: s.compression === "gzip" ? { coding: "gzip", bytesMin: s.compressionBytesMin } : undefined,
      onBatchSent: onBatchSent && ((bytes, wireBytes) => onBatchSent(peer, bytes, wireBytes)),
    });
}

/** Every region of the config but this one. */
export function otherRegions(config: NodeConfig): string[] {
  return Object.keys(config.regions).filter((r) => r !== config.region);
}
