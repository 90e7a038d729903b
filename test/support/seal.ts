/**
 * Archive seal keys for in-process tests: one Ed25519 key pair per region, made once per
 * test file, and the ring of their public keys. `testKeys(region)` is what an Archiver (its
 * signer and keys) or a follower (keys) of that region needs; `objectBytesMax` comes with it.
 * `testArchiver` is region us-east-1's archiver into a bucket, passes run by the test.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { ed25519Signer, publicKeyRing, type KeyRing, type Signer } from "../../src/protocol/index.js";
import { Archiver, type ArchiveStore, type AudiencePolicy } from "../../src/archive/index.js";
import { silentLogger } from "../../src/log.js";
import { realRuntime } from "../../src/runtime/index.js";
import type { Wal } from "../../src/wal/index.js";
import { tempDir } from "./tmp.js";

export const sealRegions = ["us-east-1", "eu-west-1", "ap-south-1"];

const pairs = new Map<string, { signer: Signer; publicKey: KeyObject }>(
  sealRegions.map((name) => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    return [name, { signer: ed25519Signer(privateKey.export({ type: "pkcs8", format: "pem" })), publicKey }];
  }),
);

export const sealRing: KeyRing = publicKeyRing(
  Object.fromEntries([...pairs].map(([name, p]) => [name, [p.publicKey]])),
);

export function testKeys(region: string): { signer: Signer; keys: KeyRing; objectBytesMax: number } {
  const p = pairs.get(region);
  if (!p) throw new Error(`no test key for ${region}`);
  return { signer: p.signer, keys: sealRing, objectBytesMax: 1 << 24 };
}

/** us-east-1's audience in a multi-way mesh of the three test regions: every record to both others. */
export const meshAudience: AudiencePolicy = {
  origin: "us-east-1",
  mode: "multi-way",
  sendsAllTo: ["ap-south-1", "eu-west-1"],
  tenants: {},
  atMs: 0,
};

export function testArchiver(
  wal: Wal,
  store: ArchiveStore,
  dataDir = tempDir(),
  where = "test bucket",
  /** Published before its first upload (none by default: the archiver's own tests count puts). */
  audience?: AudiencePolicy,
): Archiver {
  return new Archiver({
    wal,
    region: "us-east-1",
    store,
    audience,
    ...testKeys("us-east-1"),
    prefix: "crr",
    where,
    intervalMs: 60_000,
    dataDir,
    runtime: realRuntime,
    log: silentLogger(),
  });
}
