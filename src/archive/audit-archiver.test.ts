/**
 * The audit log's sealed files in the archive, against a real S3-protocol server (s3rver)
 * behind a recording HTTP proxy: only files the log rotated away from are uploaded, each
 * sealed, read back and checked; with `lockDays` the AWS SDK sends S3 Object Lock's
 * compliance-mode headers and Content-MD5 (what S3 requires of a locked put). s3rver
 * ignores Object Lock, so what the test can check is what crr asks of the server.
 */
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { s3Credentials, startS3 } from "../../test/support/s3.js";
import { testKeys } from "../../test/support/seal.js";
import { tempDir } from "../../test/support/tmp.js";
import { realRuntime } from "../runtime/index.js";
import { AuditArchiver, auditObjectKey } from "./audit-archiver.js";
import { NoSuchObjectError, s3ArchiveStore, type ArchiveStore, type StoredObject } from "./s3-store.js";

const closing: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c();
});

/** An HTTP proxy to `port` that records each request's method, path and headers. */
async function recordingProxy(port: number) {
  const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    const up = http.request(
      { host: "127.0.0.1", port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      },
    );
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closing.push(() => new Promise((r) => server.close(r)));
  return { seen, endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

/** s3rver behind the recording proxy, and a store of its bucket making up to `attempts` tries per request. */
async function bucketBehindProxy() {
  Object.assign(process.env, s3Credentials);
  const s3 = await startS3();
  closing.push(() => s3.close());
  const proxy = await recordingProxy(s3.port);
  const storeOf = (attempts: number) =>
    s3ArchiveStore({
      s3: {
        bucket: s3.bucket,
        prefix: "crr",
        region: "us-east-1",
        endpoint: proxy.endpoint,
        forcePathStyle: true,
      },
      attempts,
      requestTimeoutMs: 5000,
      runtime: realRuntime,
      onRequest: () => undefined,
    });
  return { s3, proxy, storeOf };
}

describe("audit files in the archive", () => {
  it("archives each sealed audit file once, sealed and read back, under compliance-mode Object Lock", async () => {
    const { s3, proxy, storeOf } = await bucketBehindProxy();
    const auditDir = tempDir();
    for (let n = 1; n <= 3; n++)
      fs.writeFileSync(path.join(auditDir, `audit-00000${n}.log`), `{"seq":${n}}\n`);
    const nowMs = Date.UTC(2026, 11, 3);
    const archiver = (dataDir: string, current = 3) =>
      new AuditArchiver({
        region: "us-east-1",
        store: storeOf(1),
        prefix: "crr",
        where: "test",
        auditDir,
        currentFile: () => path.join(auditDir, `audit-00000${current}.log`),
        lockDays: 7,
        ...testKeys("us-east-1"),
        dataDir,
        runtime: { ...realRuntime, nowMs: () => nowMs },
      });
    const dataDir = tempDir();
    const a = archiver(dataDir);
    await a.pass();
    expect(a.status()).toEqual({ archivedThrough: 2, lockDays: 7 });
    expect(await s3.keys("crr/_audit/")).toEqual([
      auditObjectKey("crr", "us-east-1", "audit-000001.log"),
      auditObjectKey("crr", "us-east-1", "audit-000002.log"),
    ]); // never the file the log still writes
    expect((await s3.object("crr/_audit/us-east-1/audit-000002.log")).toString()).toBe('{"seq":2}\n');
    const puts = proxy.seen.filter((r) => r.method === "PUT" && r.url.includes("_audit"));
    expect(puts).toHaveLength(2);
    for (const p of puts) {
      expect(p.headers["x-amz-object-lock-mode"]).toBe("COMPLIANCE");
      expect(Date.parse(String(p.headers["x-amz-object-lock-retain-until-date"]))).toBe(
        nowMs + 7 * 86_400_000,
      );
      expect(p.headers["content-md5"]).toBeDefined();
      expect(p.headers["x-amz-meta-crr-signature"]).toBeDefined();
    }
    // After a restart (its cursor), and a rotation: only the newly sealed file.
    fs.writeFileSync(path.join(auditDir, "audit-000004.log"), "");
    const before = proxy.seen.length;
    await archiver(dataDir, 4).pass();
    const later = proxy.seen.slice(before).filter((r) => r.method === "PUT");
    expect(later.map((r) => r.url)).toEqual([expect.stringContaining("audit-000003.log")]);
  });

  it("a copy that reads back different or unsealed is not counted", async () => {
    const auditDir = tempDir();
    fs.writeFileSync(path.join(auditDir, "audit-000001.log"), '{"seq":1}\n');
    fs.writeFileSync(path.join(auditDir, "audit-000002.log"), "");
    const objects = new Map<string, StoredObject>();
    let spoil: ((o: StoredObject) => void) | undefined;
    const store: ArchiveStore = {
      put: async (key, body, seal) => void objects.set(key, { body: Buffer.from(body), seal }),
      get: async (key) => {
        const o = objects.get(key)!;
        const copy = { body: Buffer.from(o.body), seal: { ...o.seal } };
        spoil?.(copy);
        return copy;
      },
      list: async () => [],
      folders: async () => [],
      close: () => undefined,
    };
    const a = new AuditArchiver({
      region: "us-east-1",
      store,
      prefix: "crr",
      where: "memory",
      auditDir,
      currentFile: () => path.join(auditDir, "audit-000002.log"),
      lockDays: 0,
      ...testKeys("us-east-1"),
      dataDir: tempDir(),
      runtime: realRuntime,
    });
    for (const [why, s] of [
      ["reads back different", (o: StoredObject) => void (o.body[0]! ^= 1)],
      ["unsealed", (o: StoredObject) => void (o.seal = {})],
    ] as const) {
      spoil = s;
      await expect(a.pass()).rejects.toThrow(why);
      expect(a.status().archivedThrough).toBe(0);
    }
    spoil = undefined;
    await a.pass();
    expect(a.status().archivedThrough).toBe(1);
  });
});

describe("the bucket (s3rver)", () => {
  it("a key without an object is NoSuchObjectError at once, not retried like a failed request", async () => {
    const { proxy, storeOf } = await bucketBehindProxy();
    const store = storeOf(4);
    closing.push(async () => store.close());
    await expect(store.get("crr/us-east-1/_audience.json", 1024)).rejects.toBeInstanceOf(NoSuchObjectError);
    expect(proxy.seen.filter((r) => r.method === "GET")).toHaveLength(1);
  });
});
