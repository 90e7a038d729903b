import type { RegionStatus } from "../node/index.js";
import { CliUsageError, parseCommand } from "./args.js";
import { adminCredentialFromEnv, callNode } from "./http.js";

const help = `crr skip-gap --url URL --peer PEER --through LSN

When a peer needs LSNs of this region that neither its WAL nor its store holds (the shipper
is failing with "neither in the WAL nor in this region's store"), let that peer's shipper
skip them, up to LSN. Those records are lost for that peer. The decision is written to this
region's audit log, and the peer audits the skip when it arrives.`;

export async function runSkipGap(argv: string[]): Promise<number> {
  const { values } = parseCommand("skip-gap", argv, {
    url: { type: "string" },
    peer: { type: "string" },
    through: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  if (typeof values.url !== "string" || typeof values.peer !== "string" || typeof values.through !== "string")
    throw new CliUsageError(`skip-gap: --url, --peer and --through are required\n\n${help}`);
  const throughLsn = Number(values.through);
  if (!Number.isInteger(throughLsn) || throughLsn < 1)
    throw new CliUsageError(`skip-gap: --through must be a positive LSN, not ${values.through}`);
  const s = await callNode<RegionStatus>(values.url, "v1/admin/skip-gap", {
    method: "POST",
    timeoutMs: 10_000,
    body: { peer: values.peer, throughLsn },
    credential: await adminCredentialFromEnv(values.url),
  });
  process.stdout.write(
    `${s.region}: ${values.peer} may skip LSNs it cannot get up to ${throughLsn} (audited: head seq ${s.audit.seq})\n`,
  );
  return 0;
}
