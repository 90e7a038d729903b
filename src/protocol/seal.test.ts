import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ed25519Signer, publicKeyRing, sharedSecret } from "./keys.js";
import { checkSeal, sealObject, type SealedObject } from "./seal.js";

const object: SealedObject = {
  origin: "us-east-1",
  incarnation: "00112233445566778899aabbccddeeff",
  firstLsn: 11,
  lastLsn: 20,
  body: Buffer.from("segment bytes"),
};

function pair() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { signer: ed25519Signer(privateKey.export({ type: "pkcs8", format: "pem" })), publicKey };
}

describe("archive object seals", () => {
  const east = pair();
  const west = pair();
  const ring = publicKeyRing({ "us-east-1": [east.publicKey], "eu-west-1": [west.publicKey] });

  it("a seal verifies for exactly the object it was made for", () => {
    const seal = sealObject(east.signer, object);
    expect(checkSeal(ring, object, seal)).toBe("ok");
    const changed: Array<Partial<SealedObject>> = [
      { origin: "eu-west-1" },
      { incarnation: "f".repeat(32) },
      { firstLsn: 12 },
      { lastLsn: 21 },
      { body: Buffer.from("segment bytez") },
      { body: Buffer.from("segment bytes ") },
    ];
    for (const c of changed)
      expect(checkSeal(ring, { ...object, ...c }, seal), JSON.stringify(c)).not.toBe("ok");
  });

  it("another region's key cannot seal for an origin; a seal needs its signature", () => {
    expect(checkSeal(ring, object, sealObject(west.signer, object))).toBe("seal of us-east-1: unknown key");
    const seal = sealObject(east.signer, object);
    expect(checkSeal(ring, object, { sha256Hex: seal.sha256Hex })).toContain("unsealed");
    expect(checkSeal(ring, object, { ...seal, sha256Hex: "0".repeat(64) })).toContain("its metadata says");
    expect(
      checkSeal(ring, object, {
        ...seal,
        signature: sealObject(east.signer, { ...object, lastLsn: 19 }).signature,
      }),
    ).toBe("seal of us-east-1: bad signature");
  });

  it("works with the shared secret (where any region can seal for any)", () => {
    const shared = sharedSecret("a-shared-secret-of-some-length", ["us-east-1", "eu-west-1"]);
    expect(checkSeal(shared.ring, object, sealObject(shared.signer, object))).toBe("ok");
    expect(
      checkSeal(
        shared.ring,
        object,
        sealObject(sharedSecret("another-secret-entirely", ["us-east-1"]).signer, object),
      ),
    ).toBe("seal of us-east-1: bad signature");
  });
});
