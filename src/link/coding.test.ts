/**
 * Compressed batches (shipper.compression): what a node reads (gzip, bounded), what it
 * refuses (another coding, a body that decodes too large, one that does not decode), and how
 * a shipper negotiates: it codes a batch only after its peer named gzip in an answer, with the
 * signed Content-Digest over the bytes it sent, and goes back to plain batches for a minute
 * after a coded one was refused as unreadable.
 */
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { contentDigest, headerNonce, sharedSecret, signAnswer } from "../protocol/index.js";
import { realRuntime } from "../runtime/index.js";
import { decodeBody, namesCoding } from "./coding.js";
import { HttpPeerLink, type PeerRequest } from "./http-link.js";

describe("namesCoding (Accept-Encoding, RFC 9110 §12.5.3)", () => {
  it("finds gzip in a list, with or without a weight, and not with q=0", () => {
    expect(namesCoding("gzip", "gzip")).toBe(true);
    expect(namesCoding("br, GZIP;q=0.5", "gzip")).toBe(true);
    expect(namesCoding(["identity", "gzip"], "gzip")).toBe(true);
    expect(namesCoding("gzip;q=0", "gzip")).toBe(false);
    expect(namesCoding("x-gzip, br", "gzip")).toBe(false);
    expect(namesCoding(undefined, "gzip")).toBe(false);
  });
});

describe("decodeBody", () => {
  const batch = Buffer.from("a batch ".repeat(1000));
  it("returns a plain body as it is, and decodes gzip", () => {
    expect(decodeBody(batch, undefined, 1 << 20)).toEqual({ ok: true, body: batch });
    expect(decodeBody(batch, "identity", 1 << 20)).toEqual({ ok: true, body: batch });
    expect(decodeBody(gzipSync(batch), "gzip", 1 << 20)).toEqual({ ok: true, body: batch });
  });

  it("refuses another coding (415), a body that decodes beyond the bound (413) and one that does not decode (400)", () => {
    expect(decodeBody(batch, "br", 1 << 20)).toMatchObject({
      ok: false,
      status: 415,
      code: "unsupported_encoding",
    });
    // 16 MiB of zeros is about 16 KiB coded: the bound holds on what it decodes to.
    const bomb = gzipSync(Buffer.alloc(16 << 20));
    expect(bomb.length).toBeLessThan(64 << 10);
    expect(decodeBody(bomb, "gzip", 1 << 20)).toMatchObject({
      ok: false,
      status: 413,
      code: "body_too_large",
    });
    expect(decodeBody(batch, "gzip", 1 << 20)).toMatchObject({
      ok: false,
      status: 400,
      code: "bad_encoding",
    });
    // Cut short (its trailer, or half of it): an error, never a prefix taken for the batch.
    const coded = gzipSync(batch);
    for (const cut of [coded.subarray(0, coded.length - 8), coded.subarray(0, coded.length >> 1)])
      expect(decodeBody(cut, "gzip", 1 << 20)).toMatchObject({
        ok: false,
        status: 400,
        code: "bad_encoding",
      });
  });
});

describe("a link set to compress", () => {
  const keys = sharedSecret("coding-test-secret-0123456789abcdef", ["us-east-1", "eu-west-1"]);
  /** A link whose peer answers each batch 200 (or `status`), naming `accepts` in Accept-Encoding. */
  const linkTo = (answers: Array<{ status: number; accepts?: string }>, compress = true) => {
    const sent: PeerRequest[] = [];
    const clock = { ms: 1_000_000 };
    const link = new HttpPeerLink({
      runtime: { ...realRuntime, nowMs: () => clock.ms },
      region: "us-east-1",
      signer: keys.signer,
      keys: keys.ring,
      peer: "eu-west-1",
      url: "http://eu-west-1.test",
      connectTimeoutMs: 1000,
      requestTimeoutMs: 1000,
      compression: compress ? { coding: "gzip", bytesMin: 100 } : undefined,
      transport: {
        request: async (r) => {
          sent.push(r);
          const a = answers[sent.length - 1]!;
          const text =
            a.status === 200 ? '{"watermark":1}' : '{"code":"unsupported_encoding","message":"no"}';
          const headers = {
            ...signAnswer({
              signer: keys.signer,
              status: a.status,
              body: text,
              region: "eu-west-1",
              to: "us-east-1",
              requestNonce: r.headers[headerNonce]!,
            }),
            ...(a.accepts ? { "accept-encoding": a.accepts } : {}),
          };
          return { status: a.status, headers, text };
        },
        close: async () => undefined,
      },
    });
    return { link, sent, clock };
  };
  const batch = Buffer.from("record ".repeat(200));

  it("sends plain batches until the peer names gzip, then gzip-coded ones signed over the coded bytes", async () => {
    const { link, sent } = linkTo([
      { status: 200 },
      { status: 200, accepts: "gzip" },
      { status: 200, accepts: "gzip" },
      { status: 200, accepts: "gzip" },
    ]);
    await link.replicate(batch);
    await link.replicate(batch);
    await link.replicate(batch);
    await link.replicate(Buffer.from("small")); // below bytesMin: plain
    expect(sent.map((r) => r.headers["content-encoding"])).toEqual([undefined, undefined, "gzip", undefined]);
    const coded = sent[2]!.body as Buffer;
    expect(coded.length).toBeLessThan(batch.length / 10);
    expect(decodeBody(coded, "gzip", 1 << 20)).toEqual({ ok: true, body: batch });
    expect(sent[2]!.headers["content-digest"]).toBe(contentDigest(coded));
  });

  it("goes back to plain batches for a minute after a coded one was refused (415, or 400 from an older node behind the same address)", async () => {
    const gzipOk = { status: 200, accepts: "gzip" };
    const { link, sent, clock } = linkTo([
      gzipOk,
      { status: 415, accepts: "gzip" },
      gzipOk,
      gzipOk,
      gzipOk,
      { status: 400 },
      gzipOk,
      gzipOk,
      gzipOk,
    ]);
    await link.replicate(batch);
    await expect(link.replicate(batch)).rejects.toThrow(/415 unsupported_encoding/);
    await link.replicate(batch); // plain: the 415 said so
    await link.replicate(batch); // its answer named gzip again: still plain for a minute
    clock.ms += 60_000;
    await link.replicate(batch);
    await expect(link.replicate(batch)).rejects.toThrow(/400/); // an older node behind the address
    await link.replicate(batch);
    clock.ms += 59_000;
    await link.replicate(batch);
    clock.ms += 1_000;
    await link.replicate(batch);
    expect(sent.map((r) => r.headers["content-encoding"])).toEqual([
      undefined,
      "gzip",
      undefined,
      undefined,
      "gzip",
      "gzip",
      undefined,
      undefined,
      "gzip",
    ]);
  });

  it("never codes a batch when compression is off, whatever the peer reads", async () => {
    const { link, sent } = linkTo(
      [
        { status: 200, accepts: "gzip" },
        { status: 200, accepts: "gzip" },
      ],
      false,
    );
    await link.replicate(batch);
    await link.replicate(batch);
    expect(sent.map((r) => r.headers["content-encoding"])).toEqual([undefined, undefined]);
  });
});
