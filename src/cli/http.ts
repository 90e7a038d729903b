/** Small HTTP helpers for the operator commands (they talk to a running node). */
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { Agent, request } from "undici";
import type { NodeConfig } from "../config/index.js";
import type { ClientTls } from "../link/index.js";
import { sharedSecret, signRequest, type Signer } from "../protocol/index.js";
import { CliUsageError } from "./args.js";

/**
 * Where this config's node serves: what its running process wrote to `node.json` (it may have
 * bound port 0), else the configured listen address.
 */
export function nodeUrl(config: NodeConfig): string {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(config.dataDir, "node.json"), "utf8")) as {
      url?: string;
      pid?: number;
    };
    if (typeof info.url === "string" && typeof info.pid === "number" && alive(info.pid)) return info.url;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT" && !(err instanceof SyntaxError)) throw err;
  }
  return `${config.listen.tls ? "https" : "http"}://${config.listen.host}:${config.listen.port}`;
}

/** The TLS material of a config, for an operator command's links (read once). */
export function clientTlsOf(config: NodeConfig): (() => ClientTls) | undefined {
  const t = config.listen.tls;
  if (!t) return undefined;
  const m: ClientTls = {
    version: 1,
    cert: fs.readFileSync(t.certFile),
    key: fs.readFileSync(t.keyFile),
    ...(t.caFile ? { ca: fs.readFileSync(t.caFile) } : {}),
  };
  return () => m;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH: no such process
  }
}

export class NodeUnreachableError extends Error {}

/** Who an operator command is to a node's admin routes. */
export type AdminCredential =
  { kind: "token"; token: string } | { kind: "signed"; region: string; signer: Signer } | { kind: "none" };

const tokenCharsMin = 16;

/**
 * The credential of a command given only a URL, from its environment: CRR_ADMIN_TOKEN (or the
 * file CRR_ADMIN_TOKEN_FILE names), else a request signed as the node's own region with the
 * shared secret CRR_PEER_SECRET (shared-secret mode), else none (a node with
 * auth.loopbackAdmin accepts it from loopback).
 */
export async function adminCredentialFromEnv(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AdminCredential> {
  const token = env.CRR_ADMIN_TOKEN_FILE
    ? fs.readFileSync(env.CRR_ADMIN_TOKEN_FILE, "utf8").trim()
    : (env.CRR_ADMIN_TOKEN ?? "");
  if (token) {
    if (token.length < tokenCharsMin)
      throw new CliUsageError(`CRR_ADMIN_TOKEN: must be at least ${tokenCharsMin} characters`);
    return { kind: "token", token };
  }
  const secret = env.CRR_PEER_SECRET ?? "";
  if (!secret) return { kind: "none" };
  if (secret.length < tokenCharsMin)
    throw new CliUsageError(`CRR_PEER_SECRET: must be at least ${tokenCharsMin} characters`);
  const { region } = await callNode<{ region: string }>(url, "v1/watermarks");
  return { kind: "signed", region, signer: sharedSecret(secret, [region]).signer };
}

function credentialHeaders(
  c: AdminCredential,
  method: string,
  target: URL,
  body: string,
): Record<string, string> {
  if (c.kind === "token") return { authorization: `Bearer ${c.token}` };
  if (c.kind === "none") return {};
  return signRequest({
    signer: c.signer,
    method,
    path: `${target.pathname}${target.search}`,
    body,
    region: c.region,
    to: c.region,
    nowMs: Date.now(),
    nonce: randomBytes(16).toString("hex"),
  });
}

export interface CallOptions {
  method?: "GET" | "POST";
  timeoutMs?: number;
  body?: unknown;
  credential?: AdminCredential;
  /** The CA (and client certificate) for an https:// node; default: the system's CAs. */
  tls?: ClientTls;
}

/**
 * TLS material for a command given only a URL, from its environment: CRR_CA_FILE (the CA the
 * node's certificate is checked against), CRR_CLIENT_CERT_FILE and CRR_CLIENT_KEY_FILE (for a
 * node that requires client certificates). Undefined when none is set.
 */
export function clientTlsFromEnv(env: NodeJS.ProcessEnv = process.env): ClientTls | undefined {
  const read = (name: string) => (env[name] ? fs.readFileSync(env[name]) : undefined);
  const m = { ca: read("CRR_CA_FILE"), cert: read("CRR_CLIENT_CERT_FILE"), key: read("CRR_CLIENT_KEY_FILE") };
  return m.ca || m.cert ? { version: 1, ...m } : undefined;
}

export async function callNode<T>(url: string, path: string, o: CallOptions = {}): Promise<T> {
  const { method = "GET", timeoutMs = 5000, body, credential = { kind: "none" } } = o;
  const tls = o.tls ?? clientTlsFromEnv();
  const target = new URL(path, url.endsWith("/") ? url : `${url}/`);
  const text = body === undefined ? "" : JSON.stringify(body);
  let res;
  try {
    res = await request(target, {
      method,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(tls ? { dispatcher: new Agent({ connect: { ca: tls.ca, cert: tls.cert, key: tls.key } }) } : {}),
      headers: {
        ...credentialHeaders(credential, method, target, text),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: text }),
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    throw new NodeUnreachableError(
      `cannot reach ${target.toString()}: ${e.code ?? e.cause?.code ?? e.message}`,
    );
  }
  const answer = await res.body.text();
  if (res.statusCode >= 400)
    throw new NodeUnreachableError(
      `${method} ${target.toString()} answered ${res.statusCode}: ${answer.slice(0, 300)}`,
    );
  return JSON.parse(answer) as T;
}
