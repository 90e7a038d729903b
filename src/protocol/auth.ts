/**
 * Peer authentication: an HMAC-SHA256 over the request line, the body's Content-Digest
 * (RFC 9530), a timestamp, a nonce and the sending region, with a secret shared by the
 * deployment. The receiver refuses a missing or bad signature, a timestamp outside the
 * window, and a nonce it has already seen inside the window (replay).
 * No I/O; time is injected.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { realRuntime } from "../runtime/index.js";

export const headerRegion = "x-crr-region";
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
  if (!header) return "missing";
  const m = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):/.exec(header);
  if (!m) return "unsupported";
  const expected = createHash("sha256").update(body).digest();
  const given = Buffer.from(m[1]!, "base64");
  return given.length === expected.length && timingSafeEqual(given, expected) ? "ok" : "mismatch";
}

/** Headers a peer request may carry that are signed with it (empty when absent). */
export const headerIncarnation = "x-crr-incarnation";
export const headerBoot = "x-crr-boot";
export const headerRule = "x-crr-rule";

function canonical(
  method: string,
  path: string,
  digest: string,
  timestamp: string,
  nonce: string,
  region: string,
  incarnation: string,
  boot: string,
  rule: string,
): string {
  return `crr-hmac-v2\n${method.toUpperCase()}\n${path}\n${digest}\n${timestamp}\n${nonce}\n${region}\n${incarnation}\n${boot}\n${rule}`;
}

export interface SignInput {
  secret: string;
  method: string;
  /** Path and query exactly as sent. */
  path: string;
  body: Buffer | string;
  region: string;
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
  const nonce = s.nonce;
  const signature = createHmac("sha256", s.secret)
    .update(
      canonical(
        s.method,
        s.path,
        digest,
        timestamp,
        nonce,
        s.region,
        s.incarnation ?? "",
        s.boot ?? "",
        s.rule ?? "",
      ),
    )
    .digest("base64");
  return {
    [headerContentDigest]: digest,
    [headerTimestamp]: timestamp,
    [headerNonce]: nonce,
    [headerRegion]: s.region,
    ...(s.incarnation ? { [headerIncarnation]: s.incarnation } : {}),
    ...(s.boot ? { [headerBoot]: s.boot } : {}),
    ...(s.rule ? { [headerRule]: s.rule } : {}),
    [headerSignature]: signature,
  };
}

export type VerifyResult = { ok: true; region: string } | { ok: false; reason: string };

export interface VerifierOptions {
  secret: string;
  /** Accept timestamps at most this far from our clock, either way. */
  windowMs: number;
  nowMs?: () => number;
  /** Nonces remembered for replay detection; beyond it the oldest are forgotten early. */
  noncesMax?: number;
}

export class RequestVerifier {
  private readonly secret: string;
  private readonly windowMs: number;
  private readonly nowMs: () => number;
  private readonly noncesMax: number;
  /** nonce -> expiry (ms); insertion order is expiry order, so pruning walks from the front. */
  private readonly seen = new Map<string, number>();

  constructor(o: VerifierOptions) {
    this.secret = o.secret;
    this.windowMs = o.windowMs;
    this.nowMs = o.nowMs ?? realRuntime.nowMs;
    this.noncesMax = o.noncesMax ?? 200_000;
  }

  /** Verify a request whose body's Content-Digest was already checked against the body. */
  verify(method: string, path: string, headers: Record<string, string | string[] | undefined>): VerifyResult {
    const get = (h: string) => {
      const v = headers[h];
      return Array.isArray(v) ? v[0] : v;
    };
    const digest = get(headerContentDigest);
    const timestamp = get(headerTimestamp);
    const nonce = get(headerNonce);
    const region = get(headerRegion);
    const signature = get(headerSignature);
    if (!signature) return { ok: false, reason: "missing signature" };
    if (!digest || !timestamp || !nonce || !region)
      return { ok: false, reason: "missing authentication header" };
    if (!/^[0-9a-f]{16,64}$/.test(nonce)) return { ok: false, reason: "malformed nonce" };
    const expected = createHmac("sha256", this.secret)
      .update(
        canonical(
          method,
          path,
          digest,
          timestamp,
          nonce,
          region,
          get(headerIncarnation) ?? "",
          get(headerBoot) ?? "",
          get(headerRule) ?? "",
        ),
      )
      .digest();
    const given = Buffer.from(signature, "base64");
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return { ok: false, reason: "bad signature" };
    const now = this.nowMs();
    const ts = Number(timestamp);
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.windowMs) {
      return { ok: false, reason: `timestamp outside the ${this.windowMs} ms window` };
    }
    this.prune(now);
    if (this.seen.has(nonce)) return { ok: false, reason: "replayed request (nonce already used)" };
    this.seen.set(nonce, now + 2 * this.windowMs);
    return { ok: true, region };
  }

  private prune(now: number): void {
    for (const [nonce, expiry] of this.seen) {
      if (expiry > now && this.seen.size < this.noncesMax) break;
      this.seen.delete(nonce);
    }
  }
}
