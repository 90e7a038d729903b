/**
 * A region's credentials from its config: the signer it speaks with and the key ring that
 * verifies every region (itself included: an operator holding this region's key may call its
 * admin routes). Key mode when `auth.privateKeyFile` is set, else the shared secret.
 */
import fs from "node:fs";
import {
  KeyFormatError,
  ed25519PublicKey,
  ed25519Signer,
  keyIdOf,
  publicKeyRing,
  sharedSecret,
  type KeyRing,
  type Signer,
} from "../protocol/index.js";
import type { NodeConfig } from "./load.js";

export interface Credentials {
  signer: Signer;
  ring: KeyRing;
}

function read(file: string, at: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new KeyFormatError(
      `${at}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
}

/** A region without replication and without a secret: it signs nothing and accepts no signature. */
const alone: Credentials = {
  signer: {
    keyId: "none",
    sign: () => {
      throw new Error("this region has no peer credentials (auth.peerSecret or auth.privateKeyFile)");
    },
  },
  ring: { mode: "shared", check: () => "unknown key" },
};

/** Load the key files (a KeyFormatError names the setting and the file) or take the shared secret. */
export function credentialsOf(c: NodeConfig): Credentials {
  const keyFile = c.auth.privateKeyFile;
  if (!keyFile && !c.auth.peerSecret) return alone;
  if (!keyFile) {
    const shared = sharedSecret(c.auth.peerSecret, Object.keys(c.regions));
    return { signer: shared.signer, ring: shared.ring };
  }
  const signer = ed25519Signer(read(keyFile, "auth.privateKeyFile"), `auth.privateKeyFile (${keyFile})`);
  const keys = Object.fromEntries(
    Object.entries(c.regions).map(([name, r]) => [
      name,
      (r.publicKeyFiles ?? []).map((f, i) => {
        const at = `regions.${name}.publicKeyFiles[${i}]`;
        return ed25519PublicKey(read(f, at), `${at} (${f})`);
      }),
    ]),
  );
  if (!keys[c.region]!.some((k) => keyIdOf(k) === signer.keyId))
    throw new KeyFormatError(
      `auth.privateKeyFile: its public key (id ${signer.keyId}) is not among regions.${c.region}.publicKeyFiles, so no peer would accept this region's signatures`,
    );
  return { signer, ring: publicKeyRing(keys) };
}
