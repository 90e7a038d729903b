/**
 * The config's security settings: secrets read from files as Kubernetes mounts them (the
 * `…File` settings), paths resolved against the config file's directory, the choice between
 * per-region keys and the shared secret, TLS consistency, and every key file loaded once to
 * report a bad one at startup (file and what is wrong), never later.
 */
import fs from "node:fs";
import path from "node:path";
import { KeyFormatError } from "../protocol/index.js";
import { credentialsOf } from "./credentials.js";
import type { NodeConfig } from "./load.js";

const secretCharsMin = 16;

/** A secret given inline or as a file (not both); "" when neither. Whitespace around a file's content is dropped. */
function secretOf(raw: Record<string, unknown>, name: string, baseDir: string, problems: string[]): string {
  const inline = raw[name] as string | undefined;
  const file = raw[`${name}File`] as string | undefined;
  if (inline !== undefined && file !== undefined) {
    problems.push(`auth.${name}: set either auth.${name} or auth.${name}File, not both`);
    return "";
  }
  if (file === undefined) return inline ?? "";
  try {
    return fs.readFileSync(path.resolve(baseDir, file), "utf8").trim();
  } catch (err) {
    problems.push(
      `auth.${name}File: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
    return "";
  }
}

function checkSecretLength(value: string, at: string, problems: string[]): void {
  if (value.length > 0 && value.length < secretCharsMin)
    problems.push(`${at}: must be at least ${secretCharsMin} characters`);
}

/** Fill `c.auth` and resolve file paths from the raw `auth` section; push every problem found. */
export function checkSecurity(
  c: NodeConfig,
  raw: Record<string, unknown>,
  baseDir: string,
  problems: string[],
): void {
  const before = problems.length;
  c.auth.peerSecret = secretOf(raw, "peerSecret", baseDir, problems);
  c.auth.adminToken = secretOf(raw, "adminToken", baseDir, problems);
  c.auth.windowMs = (raw.windowMs as number | undefined) ?? c.auth.windowMs;
  c.auth.loopbackAdmin = (raw.loopbackAdmin as boolean | undefined) ?? c.auth.loopbackAdmin;
  const resolve = (f: string) => path.resolve(baseDir, f);
  if (typeof raw.privateKeyFile === "string") c.auth.privateKeyFile = resolve(raw.privateKeyFile);
  for (const r of Object.values(c.regions))
    if (r.publicKeyFiles) r.publicKeyFiles = r.publicKeyFiles.map(resolve);
  checkSecretLength(c.auth.peerSecret, "auth.peerSecret", problems);
  checkSecretLength(c.auth.adminToken, "auth.adminToken", problems);
  checkMode(c, problems);
  checkTls(c, baseDir, problems);
  if (problems.length > before) return;
  try {
    credentialsOf(c);
  } catch (err) {
    if (!(err instanceof KeyFormatError)) throw err;
    problems.push(err.message);
  }
}

function checkMode(c: NodeConfig, problems: string[]): void {
  if (c.auth.privateKeyFile) {
    if (c.auth.peerSecret)
      problems.push(
        "auth.peerSecret: not used with auth.privateKeyFile (each region signs with its own key); remove it",
      );
    for (const [name, r] of Object.entries(c.regions))
      if (!r.publicKeyFiles)
        problems.push(`regions.${name}.publicKeyFiles: required with auth.privateKeyFile (its public key)`);
    return;
  }
  if (Object.values(c.regions).some((r) => r.publicKeyFiles))
    problems.push("auth.privateKeyFile: required when regions list publicKeyFiles (this region's own key)");
  else if (c.crr.enabled && !c.auth.peerSecret && !problems.some((p) => p.startsWith("auth.peerSecret")))
    problems.push(
      'auth.peerSecret: required (e.g. peerSecret: "${CRR_PEER_SECRET}"), or per-region keys: auth.privateKeyFile and regions.*.publicKeyFiles',
    );
  else if (c.archive.s3 && !c.auth.peerSecret && !problems.some((p) => p.startsWith("auth.peerSecret")))
    problems.push(
      "archive.s3: needs auth.privateKeyFile or auth.peerSecret (every archived object is sealed by its origin's key)",
    );
}

function checkTls(c: NodeConfig, baseDir: string, problems: string[]): void {
  const tls = c.listen.tls;
  const own = c.regions[c.region]?.url ?? "";
  if (!tls) {
    if (own.startsWith("https://"))
      problems.push(`regions.${c.region}.url: https:// needs listen.tls (certFile, keyFile)`);
    return;
  }
  if (own.startsWith("http://"))
    problems.push(`regions.${c.region}.url: listen.tls is set, so this region's URL must be https://`);
  const files = ["certFile", "keyFile", "caFile"] as const;
  for (const f of files) {
    const v = tls[f];
    if (v === undefined) continue;
    tls[f] = path.resolve(baseDir, v);
    if (!fs.existsSync(tls[f]!)) problems.push(`listen.tls.${f}: ${v} does not exist`);
  }
  tls.requireClientCert ??= false;
  if (tls.requireClientCert && !tls.caFile)
    problems.push(
      "listen.tls.requireClientCert: needs listen.tls.caFile (the CA client certificates are checked against)",
    );
}
