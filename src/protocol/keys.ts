/**
 * Who a region is on the wire. Two modes:
 *
 * - **Key pairs** (recommended): each region signs with its own Ed25519 private key and
 *   every region holds the others' public keys, so no region can speak for another. A
 *   region may have several public keys at once (a rollover: the new key is published
 *   everywhere before the region signs with it, the old one is removed after).
 * - **Shared secret** (`auth.peerSecret`, the original contract): an HMAC-SHA256 key the whole
 *   deployment shares. Whoever holds it can sign as any region: a weaker mode, kept for
 *   compatibility and small setups.
 *
 * Pure (node:crypto only); key files are read by the config loader.
 */
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  sign,
  timingSafeEqual,
  verify,
  type KeyObject,
} from "node:crypto";

/** Signs the canonical strings of requests and answers as one region. */
export interface Signer {
  /** Which key signed (sent with every signature, so the verifier picks the key). */
  readonly keyId: string;
  /** Base64 signature of `data`. */
  sign(data: string): string;
}

export type KeyCheck = "ok" | "unknown region" | "unknown key" | "bad signature";

/** The keys that verify each region's signatures. */
export interface KeyRing {
  readonly mode: "keys" | "shared";
  /** Whether a signature by `region` with key `keyId` over `data` is genuine. */
  check(region: string, keyId: string, data: string, signature: string): KeyCheck;
}

/** The key id of a public key: the first 16 bytes of the SHA-256 of its SPKI DER, base64url. */
export function keyIdOf(key: KeyObject): string {
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  const der = publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest().subarray(0, 16).toString("base64url");
}

export class KeyFormatError extends Error {}

function ed25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== "ed25519")
    throw new KeyFormatError(
      `${what}: expected an Ed25519 key, got ${key.asymmetricKeyType ?? "a secret key"}`,
    );
  return key;
}

/** A signer from an Ed25519 private key in PEM (PKCS#8). */
export function ed25519Signer(pem: string | Buffer, what = "private key"): Signer {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new KeyFormatError(`${what}: not a PEM private key (${(err as Error).message})`);
  }
  ed25519(key, what);
  const keyId = keyIdOf(key);
  return { keyId, sign: (data) => sign(null, Buffer.from(data), key).toString("base64") };
}

/** A public key from PEM (SPKI), or the public half of a private key. */
export function ed25519PublicKey(pem: string | Buffer, what = "public key"): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new KeyFormatError(`${what}: not a PEM public key (${(err as Error).message})`);
  }
  return ed25519(key, what);
}

/** Verifies with each region's public keys (several during a rollover). */
export function publicKeyRing(keys: Readonly<Record<string, readonly KeyObject[]>>): KeyRing {
  const byRegion = new Map(
    Object.entries(keys).map(([region, list]) => [region, new Map(list.map((k) => [keyIdOf(k), k]))]),
  );
  return {
    mode: "keys",
    check(region, keyId, data, signature) {
      const ring = byRegion.get(region);
      if (!ring) return "unknown region";
      const key = ring.get(keyId);
      if (!key) return "unknown key";
      const given = Buffer.from(signature, "base64");
      return given.length === 64 && verify(null, Buffer.from(data), key, given) ? "ok" : "bad signature";
    },
  };
}

/** The key id every shared-secret signature carries (the secret itself is never named). */
export const sharedKeyId = "shared";

/** Shared-secret mode: one HMAC key signs and verifies for every region of `regions`. */
export function sharedSecret(secret: string, regions: readonly string[]): { signer: Signer; ring: KeyRing } {
  const mac = (data: string) => createHmac("sha256", secret).update(data).digest();
  const known = new Set(regions);
  return {
    signer: { keyId: sharedKeyId, sign: (data) => mac(data).toString("base64") },
    ring: {
      mode: "shared",
      check(region, keyId, data, signature) {
        if (!known.has(region)) return "unknown region";
        if (keyId !== sharedKeyId) return "unknown key";
        const given = Buffer.from(signature, "base64");
        const expected = mac(data);
        return given.length === expected.length && timingSafeEqual(given, expected) ? "ok" : "bad signature";
      },
    },
  };
}
