/**
 * Keys and certificates the security tests make for themselves: an Ed25519 key pair per
 * region (node:crypto), and a CA with a certificate per node (openssl, ECDSA P-256, valid for
 * 127.0.0.1 and localhost, usable as server and as client certificate).
 */
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export interface RegionKey {
  privateKeyFile: string;
  publicKeyFile: string;
}

/** One Ed25519 key pair per name, written under `dir` as <name>.key / <name>.pub (PEM). */
export function regionKeys(dir: string, names: string[]): Record<string, RegionKey> {
  fs.mkdirSync(dir, { recursive: true });
  return Object.fromEntries(
    names.map((name) => {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      const privateKeyFile = path.join(dir, `${name}.key`);
      const publicKeyFile = path.join(dir, `${name}.pub`);
      fs.writeFileSync(privateKeyFile, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
      fs.writeFileSync(publicKeyFile, publicKey.export({ type: "spki", format: "pem" }));
      return [name, { privateKeyFile, publicKeyFile }];
    }),
  );
}

/** The config blocks that give every region of `keys` its own key (merge into each region's config). */
export function keyConfig(keys: Record<string, RegionKey>, self: string): Record<string, unknown> {
  return {
    auth: { peerSecret: undefined, privateKeyFile: keys[self]!.privateKeyFile },
    regions: Object.fromEntries(
      Object.entries(keys).map(([name, k]) => [name, { publicKeyFiles: [k.publicKeyFile] }]),
    ),
  };
}

export interface Ca {
  dir: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

export function makeCa(dir: string, name = "crr-test-ca"): Ca {
  fs.mkdirSync(dir, { recursive: true });
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.crt`);
  openssl(
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"].concat([
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
    ]),
    dir,
  );
  return { dir, certFile, keyFile };
}

export interface Cert {
  certFile: string;
  keyFile: string;
}

/** A certificate for `name` signed by `ca`, written to <dir>/<name>.crt/.key (replacing what is there). */
export function makeCert(ca: Ca, dir: string, name: string): Cert {
  fs.mkdirSync(dir, { recursive: true });
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.crt`);
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(
    ext,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  openssl(
    ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"].concat([
      "-keyout",
      `${keyFile}.new`,
      "-out",
      csr,
      "-subj",
      `/CN=${name}`,
    ]),
    dir,
  );
  openssl(
    ["x509", "-req", "-in", csr, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-CAcreateserial"].concat([
      "-out",
      `${certFile}.new`,
      "-days",
      "2",
      "-extfile",
      ext,
    ]),
    dir,
  );
  // Both files replaced by rename, key first (what a secret mount's atomic swap looks like).
  fs.renameSync(`${keyFile}.new`, keyFile);
  fs.renameSync(`${certFile}.new`, certFile);
  return { certFile, keyFile };
}

/** The serial number of a certificate file (to tell which one a server presented). */
export function serialOf(certFile: string): string {
  return execFileSync("openssl", ["x509", "-in", certFile, "-noout", "-serial"], { encoding: "utf8" })
    .trim()
    .replace(/^serial=/, "")
    .toUpperCase();
}
