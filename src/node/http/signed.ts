/** Signed peer requests: verification, and noting which instance of the sender is alive. */
import type { FastifyRequest } from "fastify";
import { headerBoot, headerIncarnation } from "../../protocol/index.js";
import type { VerifyResult } from "../../protocol/index.js";
import type { Region } from "../region.js";

/** Verify a signed request and note the sender's instance (health probes, watermark queries, divergence calls). */
export function verifySigned(region: Region, req: FastifyRequest): VerifyResult {
  const auth = region.verifier.verify(req.method, req.url, req.headers);
  const incarnation = req.headers[headerIncarnation];
  const boot = req.headers[headerBoot];
  if (auth.ok && typeof incarnation === "string")
    region.incarnations.note(auth.region, incarnation, typeof boot === "string" ? boot : "", region.nowMs());
  return auth;
}

/** On a public route: when the request is signed (a peer asking), note who asked. */
export function noteSigned(region: Region, req: FastifyRequest): void {
  if (req.headers["x-crr-signature"] !== undefined) verifySigned(region, req);
}
