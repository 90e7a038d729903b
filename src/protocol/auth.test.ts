import { createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { RequestVerifier, contentDigest, signRequest, verifyContentDigest } from "./auth.js";

const nonce = () => randomBytes(16).toString("hex");

const secret = "s3cret-s3cret-s3cret";

describe("peer request signing", () => {
  const body = Buffer.from("batch bytes");
  const signed = (nowMs: number, over: Partial<Parameters<typeof signRequest>[0]> = {}) =>
    signRequest({
      secret,
      method: "POST",
      path: "/v1/replicate",
      body,
      region: "us-east-1",
      nowMs,
      nonce: nonce(),
      ...over,
    });

  it("accepts a fresh signed request once, and refuses its replay", () => {
    let now = 1_000_000;
    const v = new RequestVerifier({ secret, windowMs: 30_000, nowMs: () => now });
    const h = signed(now);
    expect(v.verify("POST", "/v1/replicate", h)).toEqual({ ok: true, region: "us-east-1" });
    now += 1000;
    expect(v.verify("POST", "/v1/replicate", h)).toEqual({
      ok: false,
      reason: "replayed request (nonce already used)",
    });
  });

  it("refuses a missing signature, another secret, a changed path, digest or region, and a stale timestamp", () => {
    const now = 5_000_000;
    const v = new RequestVerifier({ secret, windowMs: 30_000, nowMs: () => now });
    const { "x-crr-signature": _, ...unsigned } = signed(now);
    expect(v.verify("POST", "/v1/replicate", unsigned)).toMatchObject({
      ok: false,
      reason: "missing signature",
    });
    expect(v.verify("POST", "/v1/replicate", signed(now, { secret: "another-secret-value" }))).toMatchObject({
      reason: "bad signature",
    });
    expect(v.verify("POST", "/v1/other", signed(now))).toMatchObject({ reason: "bad signature" });
    expect(
      v.verify("POST", "/v1/replicate", { ...signed(now), "content-digest": contentDigest("other") }),
    ).toMatchObject({ reason: "bad signature" });
    expect(v.verify("POST", "/v1/replicate", { ...signed(now), "x-crr-region": "eu-west-1" })).toMatchObject({
      reason: "bad signature",
    });
    expect(v.verify("POST", "/v1/replicate", signed(now - 31_000))).toMatchObject({
      reason: "timestamp outside the 30000 ms window",
    });
    expect(v.verify("POST", "/v1/replicate", signed(now + 31_000))).toMatchObject({ ok: false });
  });

  it("refuses each missing header and a malformed nonce before computing anything", () => {
    const now = 5_000_000;
    const v = new RequestVerifier({ secret, windowMs: 30_000, nowMs: () => now });
    for (const h of ["content-digest", "x-crr-timestamp", "x-crr-nonce", "x-crr-region"]) {
      const { [h]: _, ...rest } = signed(now) as Record<string, string>;
      expect(v.verify("POST", "/v1/replicate", rest), h).toEqual({
        ok: false,
        reason: "missing authentication header",
      });
    }
    for (const bad of ["abc", "g".repeat(32), `${"a".repeat(32)}\n`, "a".repeat(65), `x${"a".repeat(32)}`])
      expect(v.verify("POST", "/v1/replicate", signed(now, { nonce: bad })), bad).toEqual({
        ok: false,
        reason: "malformed nonce",
      });
    expect(v.verify("POST", "/v1/replicate", signed(now, { nonce: "a".repeat(16) }))).toMatchObject({
      ok: true,
    });
    // A signature of another length is refused, not thrown on.
    expect(v.verify("POST", "/v1/replicate", { ...signed(now), "x-crr-signature": "AAAA" })).toEqual({
      ok: false,
      reason: "bad signature",
    });
    expect(verifyContentDigest("sha-256=:AAAA:", body)).toBe("mismatch");
  });

  it("accepts a timestamp exactly at the window's edge, either way", () => {
    const now = 5_000_000;
    const v = new RequestVerifier({ secret, windowMs: 30_000, nowMs: () => now });
    expect(v.verify("POST", "/v1/replicate", signed(now - 30_000))).toMatchObject({ ok: true });
    expect(v.verify("POST", "/v1/replicate", signed(now + 30_000))).toMatchObject({ ok: true });
    expect(v.verify("POST", "/v1/replicate", signed(now - 30_001))).toMatchObject({ ok: false });
  });

  it("forgets nonces once they expire, and the oldest beyond its bound (a replay inside the window is still refused)", () => {
    let now = 1_000_000;
    const v = new RequestVerifier({ secret, windowMs: 1000, nowMs: () => now, noncesMax: 3 });
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

describe("the signed string (golden)", () => {
  it("is pinned: method, path, digest, timestamp, nonce, region, incarnation, boot and rule, in that order", () => {
    const headers = signRequest({
      secret: "golden-secret-0123456789",
      method: "post",
      path: "/v1/replicate",
      body: Buffer.from("golden"),
      region: "us-east-1",
      nowMs: 1_700_000_000_000,
      nonce: "0123456789abcdef0123456789abcdef",
      incarnation: "a".repeat(32),
      boot: "b".repeat(32),
      rule: "first-write-wins/1",
    });
    expect(headers).toEqual({
      "content-digest": "sha-256=:3VbeQTeVHZySaBsDQW7BX4hrRIKifjpRfTLwhSRMvl0=:",
      "x-crr-timestamp": "1700000000000",
      "x-crr-nonce": "0123456789abcdef0123456789abcdef",
      "x-crr-region": "us-east-1",
      "x-crr-incarnation": "a".repeat(32),
      "x-crr-boot": "b".repeat(32),
      "x-crr-rule": "first-write-wins/1",
      "x-crr-signature": "HdjxbMQ5dPvOxmDyIC6StdjqqocLfFO8K2dM7pjtkKc=",
    });
    // The same bytes by hand: the lines FORMAT.md lists, joined by newlines.
    const canonical = [
      "crr-hmac-v2",
      "POST",
      "/v1/replicate",
      headers["content-digest"],
      "1700000000000",
      "0123456789abcdef0123456789abcdef",
      "us-east-1",
      "a".repeat(32),
      "b".repeat(32),
      "first-write-wins/1",
    ].join("\n");
    expect(createHmac("sha256", "golden-secret-0123456789").update(canonical).digest("base64")).toBe(
      headers["x-crr-signature"],
    );
  });

  it("covers the incarnation and the rule: changing either breaks the signature", () => {
    const v = new RequestVerifier({ secret, windowMs: 30_000, nowMs: () => 1_000 });
    const body = Buffer.from("batch bytes");
    const h = signRequest({
      secret,
      method: "POST",
      path: "/x",
      body,
      region: "us-east-1",
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
