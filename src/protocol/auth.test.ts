import { createHmac, createPrivateKey, createPublicKey, randomBytes, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  RequestVerifier,
  contentDigest,
  signAnswer,
  signRequest,
  verifyAnswer,
  verifyContentDigest,
  type VerifierOptions,
} from "./auth.js";
import { ed25519PublicKey, ed25519Signer, keyIdOf, publicKeyRing, sharedSecret } from "./keys.js";

const nonce = () => randomBytes(16).toString("hex");

const secret = "s3cret-s3cret-s3cret";
const regions = ["us-east-1", "us-west-2", "eu-west-1"];
const shared = sharedSecret(secret, regions);

/** An Ed25519 private key from a fixed 32-byte seed (PKCS#8 DER: a fixed prefix, then the seed). */
function seededKey(seedByte: number) {
  const der = Buffer.concat([
    Buffer.from("302e020100300506032b657004220420", "hex"),
    Buffer.alloc(32, seedByte),
  ]);
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
}
const pem = (k: ReturnType<typeof seededKey>) => k.export({ type: "pkcs8", format: "pem" });
const publicPem = (k: ReturnType<typeof seededKey>) =>
  createPublicKey(k).export({ type: "spki", format: "pem" });

describe("peer request signing", () => {
  const body = Buffer.from("batch bytes");
  const signed = (nowMs: number, over: Partial<Parameters<typeof signRequest>[0]> = {}) =>
    signRequest({
      signer: shared.signer,
      method: "POST",
      path: "/v1/replicate",
      body,
      region: "us-east-1",
      to: "us-west-2",
      nowMs,
      nonce: nonce(),
      ...over,
    });
  const verifier = (o: Partial<VerifierOptions> & { nowMs: () => number }) =>
    new RequestVerifier({ self: "us-west-2", keys: shared.ring, windowMs: 30_000, ...o });

  it("accepts a fresh signed request once, and refuses its replay", () => {
    let now = 1_000_000;
    const v = verifier({ nowMs: () => now });
    const h = signed(now);
    expect(v.verify("POST", "/v1/replicate", h)).toEqual({
      ok: true,
      region: "us-east-1",
      nonce: h["x-crr-nonce"],
      timestampMs: now - 0,
    });
    now += 1000;
    expect(v.verify("POST", "/v1/replicate", h)).toEqual({
      ok: false,
      status: 401,
      reason: "replayed request (nonce already used)",
    });
  });

  it("refuses a missing signature, another secret, a changed path, digest or region, and a stale timestamp", () => {
    const now = 5_000_000;
    const v = verifier({ nowMs: () => now });
    const { "x-crr-signature": _, ...unsigned } = signed(now);
    expect(v.verify("POST", "/v1/replicate", unsigned)).toMatchObject({
      ok: false,
      reason: "missing signature",
    });
    const other = sharedSecret("another-secret-value", regions).signer;
    expect(v.verify("POST", "/v1/replicate", signed(now, { signer: other }))).toMatchObject({
      reason: "bad signature",
    });
    expect(v.verify("POST", "/v1/other", signed(now))).toMatchObject({ reason: "bad signature" });
    expect(
      v.verify("POST", "/v1/replicate", { ...signed(now), "content-digest": contentDigest("other") }),
    ).toMatchObject({ reason: "bad signature" });
    expect(v.verify("POST", "/v1/replicate", { ...signed(now), "x-crr-region": "eu-west-1" })).toMatchObject({
      reason: "bad signature",
    });
    expect(v.verify("POST", "/v1/replicate", signed(now, { region: "nobody" }))).toMatchObject({
      reason: "unknown region 'nobody'",
    });
    expect(v.verify("POST", "/v1/replicate", signed(now - 31_000))).toMatchObject({
      reason: "timestamp outside the 30000 ms window",
    });
    expect(v.verify("POST", "/v1/replicate", signed(now + 31_000))).toMatchObject({ ok: false });
  });

  it("refuses a request signed for another region (403), and one whose destination was changed", () => {
    const now = 5_000_000;
    const v = verifier({ nowMs: () => now });
    expect(v.verify("POST", "/v1/replicate", signed(now, { to: "eu-west-1" }))).toEqual({
      ok: false,
      status: 403,
      reason: "signed for region 'eu-west-1', this is 'us-west-2'",
    });
    expect(
      v.verify("POST", "/v1/replicate", { ...signed(now, { to: "eu-west-1" }), "x-crr-to": "us-west-2" }),
    ).toMatchObject({ reason: "bad signature" });
  });

  it("refuses what was signed at or below the sender's replay floor (a restart forgot the nonces)", () => {
    const now = 5_000_000;
    const floors: Record<string, number> = { "us-east-1": now - 1000 };
    const v = verifier({ nowMs: () => now, floor: { floorMs: (r) => floors[r] ?? 0 } });
    expect(v.verify("POST", "/v1/replicate", signed(now - 1000))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/signed before this node last restarted/),
    });
    expect(v.verify("POST", "/v1/replicate", signed(now - 999))).toMatchObject({ ok: true });
    expect(v.verify("POST", "/v1/replicate", signed(now - 5000, { region: "eu-west-1" }))).toMatchObject({
      ok: true,
    });
  });

  it("refuses each missing header and a malformed nonce before computing anything", () => {
    const now = 5_000_000;
    const v = verifier({ nowMs: () => now });
    for (const h of [
      "content-digest",
      "x-crr-timestamp",
      "x-crr-nonce",
      "x-crr-region",
      "x-crr-to",
      "x-crr-key",
    ]) {
      const { [h]: _, ...rest } = signed(now) as Record<string, string>;
      expect(v.verify("POST", "/v1/replicate", rest), h).toEqual({
        ok: false,
        status: 401,
        reason: "missing authentication header",
      });
    }
    for (const bad of ["abc", "g".repeat(32), `${"a".repeat(32)}\n`, "a".repeat(65), `x${"a".repeat(32)}`])
      expect(v.verify("POST", "/v1/replicate", signed(now, { nonce: bad })), bad).toMatchObject({
        ok: false,
        reason: "malformed nonce",
      });
    expect(v.verify("POST", "/v1/replicate", signed(now, { nonce: "a".repeat(16) }))).toMatchObject({
      ok: true,
    });
    // A signature of another length is refused, not thrown on.
    expect(v.verify("POST", "/v1/replicate", { ...signed(now), "x-crr-signature": "AAAA" })).toMatchObject({
      ok: false,
      reason: "bad signature",
    });
    expect(verifyContentDigest("sha-256=:AAAA:", body)).toBe("mismatch");
  });

  it("accepts a timestamp exactly at the window's edge, either way", () => {
    const now = 5_000_000;
    const v = verifier({ nowMs: () => now });
    expect(v.verify("POST", "/v1/replicate", signed(now - 30_000))).toMatchObject({ ok: true });
    expect(v.verify("POST", "/v1/replicate", signed(now + 30_000))).toMatchObject({ ok: true });
    expect(v.verify("POST", "/v1/replicate", signed(now - 30_001))).toMatchObject({ ok: false });
  });

  it("forgets nonces once they expire, and the oldest beyond its bound (a replay inside the window is still refused)", () => {
    let now = 1_000_000;
    const v = verifier({ windowMs: 1000, nowMs: () => now, noncesMax: 3 });
    const first = signed(now);
    expect(v.verify("POST", "/v1/replicate", first)).toMatchObject({ ok: true });
    expect(v.verify("POST", "/v1/replicate", first)).toMatchObject({
      reason: "replayed request (nonce already used)",
    });
    // Two windows later the nonce is forgotten (its timestamp is then refused as stale anyway).
    now += 2000;
    const seen = (v as unknown as { seen: Map<string, number> }).seen;
    expect(v.verify("POST", "/v1/replicate", signed(now))).toMatchObject({ ok: true });
    expect(seen.size).toBe(1);
    // At the bound, the oldest goes first.
    const hs = [signed(now), signed(now), signed(now)];
    for (const h of hs) expect(v.verify("POST", "/v1/replicate", h)).toMatchObject({ ok: true });
    expect(seen.size).toBe(3);
    expect(seen.has(hs[2]!["x-crr-nonce"]!)).toBe(true);
    expect(v.verify("POST", "/v1/replicate", hs[2]!)).toMatchObject({ ok: false });
  });

  it("checks Content-Digest (RFC 9530) against the body", () => {
    expect(contentDigest(body)).toMatch(/^sha-256=:[A-Za-z0-9+/]+=*:$/);
    expect(verifyContentDigest(contentDigest(body), body)).toBe("ok");
    expect(verifyContentDigest(`sha-512=:abc=:, ${contentDigest(body)}`, body)).toBe("ok");
    expect(verifyContentDigest(contentDigest("x"), body)).toBe("mismatch");
    expect(verifyContentDigest(undefined, body)).toBe("missing");
    expect(verifyContentDigest("md5=:abc:", body)).toBe("unsupported");
  });
});

describe("per-region keys (Ed25519)", () => {
  const east = seededKey(1);
  const west = seededKey(2);
  const eastNext = seededKey(3);
  const ring = publicKeyRing({
    "us-east-1": [ed25519PublicKey(publicPem(east)), ed25519PublicKey(publicPem(eastNext))],
    "us-west-2": [ed25519PublicKey(publicPem(west))],
  });
  const now = 7_000_000;
  const v = () => new RequestVerifier({ self: "us-west-2", keys: ring, windowMs: 30_000, nowMs: () => now });
  const req = (key: ReturnType<typeof seededKey>, region: string) =>
    signRequest({
      signer: ed25519Signer(pem(key)),
      method: "POST",
      path: "/v1/replicate",
      body: "b",
      region,
      to: "us-west-2",
      nowMs: now,
      nonce: nonce(),
    });

  it("accepts each region's own key, and both of its keys during a rollover", () => {
    expect(v().verify("POST", "/v1/replicate", req(east, "us-east-1"))).toMatchObject({ ok: true });
    expect(v().verify("POST", "/v1/replicate", req(eastNext, "us-east-1"))).toMatchObject({ ok: true });
  });

  it("no region can speak for another: a region's key signing as another is refused", () => {
    expect(v().verify("POST", "/v1/replicate", req(west, "us-east-1"))).toMatchObject({
      ok: false,
      reason: "unknown key",
    });
    expect(v().verify("POST", "/v1/replicate", req(east, "eu-west-1"))).toMatchObject({
      reason: "unknown region 'eu-west-1'",
    });
    // The key id names a key of the region, but the signature is another key's.
    const forged = { ...req(west, "us-east-1"), "x-crr-key": keyIdOf(east) };
    expect(v().verify("POST", "/v1/replicate", forged)).toMatchObject({ reason: "bad signature" });
  });

  it("refuses a key that is not Ed25519, naming what it got", () => {
    const rsa = createPrivateKey(
      "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----",
    );
    expect(() => ed25519Signer(rsa.export({ type: "pkcs8", format: "pem" }), "k.pem")).toThrow(
      "k.pem: expected an Ed25519 key, got x25519",
    );
    expect(() => ed25519Signer("not a key", "k.pem")).toThrow(/k.pem: not a PEM private key/);
  });
});

describe("signed answers", () => {
  const body = '{"watermark":42}';
  const answer = (over: Partial<Parameters<typeof signAnswer>[0]> = {}) =>
    signAnswer({
      signer: shared.signer,
      status: 200,
      body,
      region: "us-west-2",
      to: "us-east-1",
      requestNonce: "ab".repeat(16),
      ...over,
    });
  const check = (headers: Record<string, string>, over: Partial<Parameters<typeof verifyAnswer>[0]> = {}) =>
    verifyAnswer({
      keys: shared.ring,
      status: 200,
      headers,
      body,
      from: "us-west-2",
      to: "us-east-1",
      requestNonce: "ab".repeat(16),
      ...over,
    });

  it("verify only for the request they answer, from the region asked, over exactly that body and status", () => {
    expect(check(answer())).toBe("ok");
    expect(check(answer(), { requestNonce: "cd".repeat(16) })).toBe("answer: bad signature");
    expect(check(answer(), { body: '{"watermark":999999999}' })).toBe(
      "answer body does not match its signed digest",
    );
    expect(
      check(
        { ...answer(), "content-digest": contentDigest('{"watermark":999999999}') },
        {
          body: '{"watermark":999999999}',
        },
      ),
    ).toBe("answer: bad signature");
    expect(check(answer(), { status: 409 })).toBe("answer: bad signature");
    expect(check(answer({ region: "eu-west-1" }))).toBe("answer signed by 'eu-west-1', expected 'us-west-2'");
    expect(check(answer(), { to: "eu-west-1" })).toBe("answer: bad signature");
    expect(check({})).toBe("unsigned answer");
  });
});

describe("the signed strings (golden)", () => {
  const golden = {
    method: "post",
    path: "/v1/replicate",
    body: Buffer.from("golden"),
    region: "us-east-1",
    to: "us-west-2",
    nowMs: 1_700_000_000_000,
    nonce: "0123456789abcdef0123456789abcdef",
    incarnation: "a".repeat(32),
    boot: "b".repeat(32),
    rule: "first-write-wins/1",
  };
  // The same bytes by hand: the lines FORMAT.md lists, joined by newlines.
  const canonical = (keyId: string) =>
    [
      "crr-request-v3",
      "POST",
      "/v1/replicate",
      "sha-256=:3VbeQTeVHZySaBsDQW7BX4hrRIKifjpRfTLwhSRMvl0=:",
      "1700000000000",
      "0123456789abcdef0123456789abcdef",
      "us-east-1",
      "us-west-2",
      keyId,
      "a".repeat(32),
      "b".repeat(32),
      "first-write-wins/1",
    ].join("\n");

  it("requests, shared secret: method, path, digest, timestamp, nonce, from, to, key, incarnation, boot, rule", () => {
    const headers = signRequest({ ...golden, signer: sharedSecret("golden-secret-0123456789", []).signer });
    expect(headers).toEqual({
      "content-digest": "sha-256=:3VbeQTeVHZySaBsDQW7BX4hrRIKifjpRfTLwhSRMvl0=:",
      "x-crr-timestamp": "1700000000000",
      "x-crr-nonce": "0123456789abcdef0123456789abcdef",
      "x-crr-region": "us-east-1",
      "x-crr-to": "us-west-2",
      "x-crr-key": "shared",
      "x-crr-incarnation": "a".repeat(32),
      "x-crr-boot": "b".repeat(32),
      "x-crr-rule": "first-write-wins/1",
      "x-crr-signature": "xDJjSPtTjl5cO7Yl4PquI4YSQAh12NUTYGYyt+o0eWs=",
    });
    expect(
      createHmac("sha256", "golden-secret-0123456789").update(canonical("shared")).digest("base64"),
    ).toBe(headers["x-crr-signature"]);
  });

  it("requests, Ed25519: the key id is the SPKI hash, the signature Ed25519 over the same string", () => {
    const key = seededKey(7);
    const headers = signRequest({ ...golden, signer: ed25519Signer(pem(key)) });
    expect(headers["x-crr-key"]).toBe("Mkvi3qi8REYbAjPlH6SJAg");
    expect(headers["x-crr-signature"]).toBe(
      "uWLrZ4+8jROhxuRxwnHIuqWzdCQV8cVVvTjOlPwk1d3kU4H5HeT/Ojh6W9HL6Dgpk78lnH2HlEOLt8pzH8orAw==",
    );
    expect(
      verify(
        null,
        Buffer.from(canonical("Mkvi3qi8REYbAjPlH6SJAg")),
        createPublicKey(key),
        Buffer.from(headers["x-crr-signature"]!, "base64"),
      ),
    ).toBe(true);
  });

  it("answers: status, digest, from, to, the request's nonce, key", () => {
    const headers = signAnswer({
      signer: sharedSecret("golden-secret-0123456789", []).signer,
      status: 200,
      body: '{"watermark":7}',
      region: "us-west-2",
      to: "us-east-1",
      requestNonce: "0123456789abcdef0123456789abcdef",
    });
    const data = [
      "crr-answer-v3",
      "200",
      contentDigest('{"watermark":7}'),
      "us-west-2",
      "us-east-1",
      "0123456789abcdef0123456789abcdef",
      "shared",
    ].join("\n");
    expect(headers["x-crr-signature"]).toBe(
      createHmac("sha256", "golden-secret-0123456789").update(data).digest("base64"),
    );
    expect(headers["x-crr-signature"]).toBe("ccPEaOkBp6QeDFpgTRMxSWWvL4LRnFgAI1qyfgk9Y5Q=");
  });

  it("covers the incarnation and the rule: changing either breaks the signature", () => {
    const v = new RequestVerifier({
      self: "us-west-2",
      keys: shared.ring,
      windowMs: 30_000,
      nowMs: () => 1_000,
    });
    const h = signRequest({
      signer: shared.signer,
      method: "POST",
      path: "/x",
      body: Buffer.from("batch bytes"),
      region: "us-east-1",
      to: "us-west-2",
      nowMs: 1_000,
      nonce: nonce(),
      incarnation: "a".repeat(32),
      rule: "first-write-wins/1",
    });
    expect(v.verify("POST", "/x", { ...h, "x-crr-incarnation": "b".repeat(32) })).toMatchObject({
      ok: false,
    });
    expect(v.verify("POST", "/x", { ...h, "x-crr-rule": "last-write-wins/1" })).toMatchObject({ ok: false });
    expect(v.verify("POST", "/x", h)).toMatchObject({ ok: true });
  });
});
