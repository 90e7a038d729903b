/**
 * The S3 archive store's folder listing, page after page. s3rver (the suite's S3 server)
 * cannot answer a truncated ListObjectsV2 on Node 20 (its continuation token is DES, which
 * OpenSSL 3 leaves out: "InternalError"), and it counts only keys in a page where S3 counts
 * folders and keys together. So this test answers the listing itself, as S3 documents it:
 * MaxKeys entries of both kinds a page, IsTruncated and NextContinuationToken.
 */
import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { realRuntime } from "../runtime/index.js";
import { s3ArchiveStore } from "./s3-store.js";

const closing: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c();
});

/** A bucket listing `entries` (folders end in "/") in pages of `pageMax`, counting both kinds. */
async function listingServer(entries: string[], pageMax: number) {
  const tokens: Array<string | null> = [];
  const server = http.createServer((req, res) => {
    const q = new URL(req.url!, "http://x").searchParams;
    tokens.push(q.get("continuation-token"));
    const from = Number(q.get("continuation-token") ?? "0");
    const page = entries.slice(from, from + pageMax);
    const more = from + pageMax < entries.length;
    const xml = [
      `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`,
      `<Name>b</Name><Prefix>${q.get("prefix")}</Prefix><Delimiter>/</Delimiter><KeyCount>${page.length}</KeyCount>`,
      `<IsTruncated>${more}</IsTruncated>${more ? `<NextContinuationToken>${from + pageMax}</NextContinuationToken>` : ""}`,
      ...page.map((e) =>
        e.endsWith("/")
          ? `<CommonPrefixes><Prefix>${e}</Prefix></CommonPrefixes>`
          : `<Contents><Key>${e}</Key><Size>1</Size></Contents>`,
      ),
      `</ListBucketResult>`,
    ].join("");
    res.writeHead(200, { "content-type": "application/xml" }).end(xml);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closing.push(() => new Promise((r) => server.close(r)));
  return { tokens, endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

describe("s3ArchiveStore", () => {
  it("lists every folder under a prefix page after page: a page counts folders and keys together, so one page of 1,000 held ~500 incarnations", async () => {
    const incarnations = ["a", "b", "c", "d", "e"].map((c) => `crr/us-east-1/${c.repeat(32)}`);
    // Each incarnation's audience object sorts right before its folder ("." < "/").
    const entries = incarnations.flatMap((i) => [`${i}.audience.json`, `${i}/`]);
    const bucket = await listingServer(entries, 3);
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test" });
    const store = s3ArchiveStore({
      s3: {
        bucket: "b",
        prefix: "crr",
        region: "us-east-1",
        endpoint: bucket.endpoint,
        forcePathStyle: true,
      },
      attempts: 1,
      requestTimeoutMs: 5000,
      runtime: realRuntime,
      onRequest: () => undefined,
      listPageMax: 3,
    });
    closing.push(async () => store.close());
    expect(await store.folders("crr/us-east-1/")).toEqual(incarnations.map((i) => `${i}/`));
    expect(bucket.tokens).toEqual([null, "3", "6", "9"]);
  });
});
