/**
 * Peer authentication. A request is signed by its sending region over the request line, the
 * body's Content-Digest (RFC 9530), a timestamp, a nonce, the sender, the destination and
 * the sender's instance; the receiver checks the headers before it reads the body (the
 * body is then checked against the signed digest), and refuses a missing or bad signature,
 * a request signed for another region, a timestamp outside the window or below the sender's
 * replay floor, and a nonce already seen inside the window. The answer is signed back by
 * the receiver, bound to the request's nonce: an acknowledgement nobody can forge or replay.
 * Keys: keys.ts (per-region Ed25519, or the deployment's shared secret). No I/O; time is
 * injected.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { realRuntime } from "../runtime/index.js";
import type { KeyRing, Signer } from "./keys.js";

export const headerRegion = "x-crr-region";
export const headerTo = "x-crr-to";
export const headerKey = "x-crr-key";
export const headerTimestamp = "x-crr-timestamp";
export const headerNonce = "x-crr-nonce";
export const headerSignature = "x-crr-signature";
export const headerContentDigest = "content-digest";

/** RFC 9530 Content-Digest value for `body`: `sha-256=:<base64>:`. */
export function contentDigest(body: Buffer | string): string {
  return `sha-256=:${createHash("sha256").update(body).digest("base64")}:`;
}

/** Check a Content-Digest header against the body. Only sha-256 is accepted (the RFC's own recommendation). */
export function verifyContentDigest(
  header: string | undefined,
  body: Buffer,
): "ok" | "missing" | "mismatch" | "unsupported" {
  return verifyDigestHash(header, createHash("sha256").update(body).digest());
}

/** Check a Content-Digest header against the SHA-256 of a body hashed as it arrived. */
export function verifyDigestHash(
  header: string | undefined,
  sha256: Buffer,
): "ok" | "missing" | "mismatch" | "unsupported" {
  if (!header) return "missing";
  const m = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):/.exec(header);
  if (!m) return "unsupported";
  const given = Buffer.from(m[1]!, "base64");
  return given.length === sha256.length && timingSafeEqual(given, sha256) ? "ok" : "mismatch";
}

/** Headers a peer request may carry that are signed with it (empty when absent). */
export const headerIncarnation = "x-crr-incarnation";
export const headerBoot = "x-crr-boot";
export const headerRule = "x-crr-rule";

/** The signed string of a request (FORMAT.md lists its lines). */
export function requestCanonical(f: {
  method: string;
  path: string;
  digest: string;
  timestamp: string;
  nonce: string;
  from: string;
  to: string;
  keyId: string;
  incarnation: string;
  boot: string;
  rule: string;
}): string {
  return [
    "crr-request-v3",
    f.method.toUpperCase(),
    f.path,
    f.digest,
    f.timestamp,
    f.nonce,
    f.from,
    f.to,
    f.keyId,
    f.incarnation,
    f.boot,
    f.rule,
  ].join("\n");
}

/** The signed string of an answer (FORMAT.md lists its lines). */
export function answerCanonical(f: {
  status: number;
  digest: string;
  from: string;
  to: string;
  requestNonce: string;
  keyId: string;
}): string {
  return ["crr-answer-v3", String(f.status), f.digest, f.from, f.to, f.requestNonce, f.keyId].join("\n");
}

export interface SignInput {
  signer: Signer;
  method: string;
  /** Path and query exactly as sent. */
  path: string;
  body: Buffer | string;
  /** The sending region. */
  region: string;
  /** The region the request is for (a request signed for one region is refused by every other). */
  to: string;
  nowMs: number;
  /** Fresh for every request (the caller draws it from its runtime). */
  nonce: string;
  /** The sender's WAL incarnation (which of its streams is alive), signed with the request. */
  incarnation?: string;
  /** The sending process's boot id (two processes of one incarnation are told apart), signed. */
  boot?: string;
  /** The sender's `conflict-rule/format-version`, signed with the request. */
  rule?: string;
}

/** Headers to add to a peer request (a fresh nonce each call: every retry is signed anew). */
export function signRequest(s: SignInput): Record<string, string> {
  const digest = contentDigest(s.body);
  const timestamp = String(s.nowMs);
  const fields = {
    method: s.method,
    path: s.path,
    digest,
    timestamp,
    nonce: s.nonce,
    from: s.region,
    to: s.to,
    keyId: s.signer.keyId,
    incarnation: s.incarnation ?? "",
    boot: s.boot ?? "",
    rule: s.rule ?? "",
  };
  return {
    [headerContentDigest]: digest,
    [headerTimestamp]: timestamp,
    [headerNonce]: s.nonce,
    [headerRegion]: s.region,
    [headerTo]: s.to,
    [headerKey]: s.signer.keyId,
    ...(s.incarnation ? { [headerIncarnation]: s.incarnation } : {}),
    ...(s.boot ? { [headerBoot]: s.boot } : {}),
    ...(s.rule ? { [headerRule]: s.rule } : {}),
    [headerSignature]: s.signer.sign(requestCanonical(fields)),
  };
}

export type VerifyResult =
  | { ok: true; region: string; nonce: string; timestampMs: number }
  | { ok: false; reason: string; status: 401 | 403 };

/**
 * Timestamps at or below a sender's floor are refused: the floor is above everything this
 * node accepted before its last restart (the nonces it remembered died with the process).
 */
export interface ReplayFloor {
  floorMs(region: string): number;
}

export interface VerifierOptions {
  /** This region: requests signed for another are refused. */
  self: string;
  keys: KeyRing;
  /** Accept timestamps at most this far from our clock, either way. */
  windowMs: number;
  nowMs?: () => number;
  /** Nonces remembered for replay detection; beyond it the oldest are forgotten early. */
  noncesMax?: number;
  floor?: ReplayFloor;
}

type Headers = Record<string, string | string[] | undefined>;

function headerOf(headers: Headers, h: string): string | undefined {
  const v = headers[h];
  return Array.isArray(v) ? v[0] : v;
}

function refused(reason: string, status: 401 | 403 = 401): VerifyResult {
  return { ok: false, reason, status };
}

export class RequestVerifier {
  private readonly o: VerifierOptions;
  private readonly nowMs: () => number;
  private readonly noncesMax: number;
  /** nonce -> expiry (ms); insertion order is expiry order, so pruning walks from the front. */
  private readonly seen = new Map<string, number>();

  constructor(o: VerifierOptions) {
    this.o = o;
    this.nowMs = o.nowMs ?? realRuntime.nowMs;
    this.noncesMax = o.noncesMax ?? 200_000;
  }

  /**
   * Verify a request from its headers alone (before its body is read: the body is then
   * checked against the signed Content-Digest with verifyContentDigest).
   */
  verify(method: string, path: string, headers: Headers): VerifyResult {
    const get = (h: string) => headerOf(headers, h);
    const [digest, timestamp, nonce, region, to, keyId, signature] = [
      headerContentDigest,
      headerTimestamp,
      headerNonce,
      headerRegion,
      headerTo,
      headerKey,
      headerSignature,
    ].map(get);
    if (!signature) return refused("missing signature");
    if (!digest || !timestamp || !nonce || !region || !to || !keyId)
      return refused("missing authentication header");
    if (!/^[0-9a-f]{16,64}$/.test(nonce)) return refused("malformed nonce");
    const data = requestCanonical({
      method,
      path,
      digest,
      timestamp,
      nonce,
      from: region,
      to,
      keyId,
      incarnation: get(headerIncarnation) ?? "",
      boot: get(headerBoot) ?? "",
      rule: get(headerRule) ?? "",
    });
    const check = this.o.keys.check(region, keyId, data, signature);
    if (check !== "ok") return refused(check === "unknown region" ? `unknown region '${region}'` : check);
    if (to !== this.o.self) return refused(`signed for region '${to}', this is '${this.o.self}'`, 403);
    const now = this.nowMs();
    const ts = Number(timestamp);
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.o.windowMs)
      return refused(`timestamp outside the ${this.o.windowMs} ms window`);
    if (this.o.floor && ts <= this.o.floor.floorMs(region))
      return refused("signed before this node last restarted (a replay, or a retry: sign anew)");
    this.prune(now);
    if (this.seen.has(nonce)) return refused("replayed request (nonce already used)");
    this.seen.set(nonce, now + 2 * this.o.windowMs);
    return { ok: true, region, nonce, timestampMs: ts };
  }

  private prune(now: number): void {
    for (const [nonce, expiry] of this.seen) {
      if (expiry > now && this.seen.size < this.noncesMax) break;
      this.seen.delete(nonce);
    }
  }
}

/** Headers that sign an answer to a verified request, bound to that request's nonce. */
export function signAnswer(a: {
  signer: Signer;
  status: number;
  body: Buffer | string;
  /** The answering region. */
  region: string;
  /** The region that asked. */
  to: string;
  requestNonce: string;
}): Record<string, string> {
  const digest = contentDigest(a.body);
  const data = answerCanonical({
    status: a.status,
    digest,
    from: a.region,
    to: a.to,
    requestNonce: a.requestNonce,
    keyId: a.signer.keyId,
  });
  return {
    [headerContentDigest]: digest,
    [headerRegion]: a.region,
    [headerKey]: a.signer.keyId,
    [headerSignature]: a.signer.sign(data),
  };
}

/**
 * Check an answer: signed by the region asked (`from`), for this region (`to`), for the
 * request with `requestNonce`, over exactly this body. Returns "ok" or why not.
 */
export function verifyAnswer(a: {
  keys: KeyRing;
  status: number;
  headers: Headers;
  body: Buffer | string;
  from: string;
  to: string;
  requestNonce: string;
}): string {
  const get = (h: string) => headerOf(a.headers, h);
  const [digest, region, keyId, signature] = [
    headerContentDigest,
    headerRegion,
    headerKey,
    headerSignature,
  ].map(get);
  if (!signature || !digest || !region || !keyId) return "unsigned answer";
  if (region !== a.from) return `answer signed by '${region}', expected '${a.from}'`;
  const body = typeof a.body === "string" ? Buffer.from(a.body) : a.body;
  if (verifyContentDigest(digest, body) !== "ok") return "answer body does not match its signed digest";
  const data = answerCanonical({
    status: a.status,
    digest,
    from: region,
    to: a.to,
    requestNonce: a.requestNonce,
    keyId,
  });
  const check = a.keys.check(region, keyId, data, signature);
  return check === "ok" ? "ok" : `answer: ${check}`;
}
