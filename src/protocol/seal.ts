/**
 * The seal of an archived WAL object: its origin's signature over what the object is (origin,
 * incarnation, LSN range, SHA-256 and length of its bytes), stored with it in the bucket's
 * metadata. A region that applies an archived object (a follower, a restore, a bootstrap)
 * checks the seal with the origin's key as it checks a signed HTTP batch: write access to
 * the bucket (which every archiving region has) is not enough to forge a region's records.
 *
 * Pure (node:crypto only).
 */
import { createHash } from "node:crypto";
import type { KeyRing, Signer } from "./keys.js";

/** What a seal covers: the object's identity and its bytes. */
export interface SealedObject {
  origin: string;
  incarnation: string;
  firstLsn: number;
  lastLsn: number;
  body: Buffer;
}

/** A seal as it travels in the object's metadata. */
export interface Seal {
  sha256Hex: string;
  keyId: string;
  signature: string;
}

export function sha256Hex(body: Buffer): string {
  return createHash("sha256").update(body).digest("hex");
}

function sealCanonical(o: SealedObject, sha: string, keyId: string): string {
  return [
    "crr-archive-object-v1",
    o.origin,
    o.incarnation,
    String(o.firstLsn),
    String(o.lastLsn),
    sha,
    String(o.body.length),
    keyId,
  ].join("\n");
}

/** The seal of `o`, signed by its origin (the signer must be the origin's). */
export function sealObject(signer: Signer, o: SealedObject): Seal {
  const sha = sha256Hex(o.body);
  return { sha256Hex: sha, keyId: signer.keyId, signature: signer.sign(sealCanonical(o, sha, signer.keyId)) };
}

/** "ok" when `seal` is `o.origin`'s genuine seal of exactly these bytes; else why not. */
export function checkSeal(keys: KeyRing, o: SealedObject, seal: Partial<Seal>): string {
  if (!seal.keyId || !seal.signature) return "unsealed (no origin signature in its metadata)";
  const sha = sha256Hex(o.body);
  if (seal.sha256Hex !== undefined && seal.sha256Hex !== sha)
    return `its bytes have SHA-256 ${sha}, its metadata says ${seal.sha256Hex}`;
  const check = keys.check(o.origin, seal.keyId, sealCanonical(o, sha, seal.keyId), seal.signature);
  return check === "ok" ? "ok" : `seal of ${o.origin}: ${check}`;
}
