/**
 * The archive's bucket, through @aws-sdk/client-s3: put with the SHA-256 as the S3 checksum
 * (`x-amz-checksum-sha256`) and in metadata, get, and `start-after` listings. Each request
 * is retried with backoff (p-retry) and counted. Credentials come from the AWS SDK's
 * standard chain (environment, shared files), never from crr's config.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import pRetry, { AbortError } from "p-retry";
import type { Seal } from "../protocol/index.js";
import { timeoutSignal, type Runtime } from "../runtime/index.js";

export interface S3Settings {
  bucket: string;
  prefix: string;
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
}

export type ArchiveOp = "put" | "get" | "list";

/** What the archiver needs of a bucket (the tests and a simulator may hand in another). */
export interface ArchiveStore {
  /**
   * Store `body` under `key` with its origin's seal (SHA-256 also as the S3 checksum); with
   * `lock`, under S3 Object Lock in compliance mode until `retainUntil`.
   */
  put(key: string, body: Buffer, seal: Seal, lock?: { retainUntil: Date }): Promise<void>;
  /** The object's bytes and the seal its metadata holds (what of it there is); refused beyond `bytesMax`. */
  get(key: string, bytesMax: number): Promise<StoredObject>;
  /** Keys under `prefix` after `startAfter`, in order, at most `max`. */
  list(prefix: string, startAfter: string | undefined, max: number): Promise<string[]>;
  /** The "folders" right under `prefix` (common prefixes up to the next "/"). */
  folders(prefix: string): Promise<string[]>;
  close(): void;
}

/** The key holds no object (S3's NoSuchKey): not retried, unlike a failed request. */
export class NoSuchObjectError extends Error {}

export interface StoredObject {
  body: Buffer;
  seal: Partial<Seal>;
}

/** The metadata names of a seal (S3 sends them as `x-amz-meta-<name>`). */
const sealMeta = { sha256Hex: "sha256", keyId: "crr-key", signature: "crr-signature" } as const;

export function sealMetadata(seal: Seal): Record<string, string> {
  return {
    [sealMeta.sha256Hex]: seal.sha256Hex,
    [sealMeta.keyId]: seal.keyId,
    [sealMeta.signature]: seal.signature,
  };
}

export function sealOfMetadata(meta: Record<string, string> | undefined): Partial<Seal> {
  return {
    sha256Hex: meta?.[sealMeta.sha256Hex],
    keyId: meta?.[sealMeta.keyId],
    signature: meta?.[sealMeta.signature],
  };
}

export interface S3StoreOptions {
  s3: S3Settings;
  /** Attempts per request before the archiver's pass fails (it tries again next pass). */
  attempts: number;
  /** A request not answered within this fails (a bucket that accepts and never answers must not stall the archive). */
  requestTimeoutMs: number;
  runtime: Runtime;
  onRequest(op: ArchiveOp, outcome: "ok" | "error", bytes: number): void;
  /** Entries per listing page (default S3's 1,000; tests make pages small). */
  listPageMax?: number;
}

export function s3ArchiveStore(o: S3StoreOptions): ArchiveStore {
  const client = new S3Client({
    region: o.s3.region,
    endpoint: o.s3.endpoint,
    forcePathStyle: o.s3.forcePathStyle,
    // S3-compatible servers refuse the default CRC32 trailers of SDK 3.729+.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: {
      requestTimeout: o.requestTimeoutMs,
      connectionTimeout: Math.min(o.requestTimeoutMs, 5000),
    },
  });
  const Bucket = o.s3.bucket;
  /** Each request is aborted past requestTimeoutMs (the SDK's own request timeout only warns). */
  const bounded = () => ({ abortSignal: timeoutSignal(o.runtime, o.requestTimeoutMs) });
  const counted = async <T>(op: ArchiveOp, bytes: (t: T) => number, run: () => Promise<T>): Promise<T> =>
    pRetry(
      async () => {
        try {
          const t = await run();
          o.onRequest(op, "ok", bytes(t));
          return t;
        } catch (err) {
          o.onRequest(op, "error", 0);
          throw err;
        }
      },
      { retries: Math.max(0, o.attempts - 1), minTimeout: 100, maxTimeout: 2000 },
    );
  return {
    async put(Key, body, seal, lock) {
      await counted(
        "put",
        () => body.length,
        () =>
          client.send(
            new PutObjectCommand({
              Bucket,
              Key,
              Body: body,
              ContentLength: body.length,
              ChecksumSHA256: Buffer.from(seal.sha256Hex, "hex").toString("base64"),
              Metadata: sealMetadata(seal),
              // Object Lock puts need Content-MD5 (or a checksum header, on newer S3): both.
              ...(lock
                ? {
                    ObjectLockMode: "COMPLIANCE" as const,
                    ObjectLockRetainUntilDate: lock.retainUntil,
                    ContentMD5: createHash("md5").update(body).digest("base64"),
                  }
                : {}),
            }),
            bounded(),
          ),
      );
    },
    async get(Key, bytesMax) {
      return counted(
        "get",
        (r) => r.body.length,
        async () => {
          const r = await client
            .send(new GetObjectCommand({ Bucket, Key }), bounded())
            .catch((err: Error) => {
              throw err.name === "NoSuchKey"
                ? new AbortError(new NoSuchObjectError(`${Key}: no such object`))
                : err;
            });
          const body = r.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
          const tooBig = () =>
            new AbortError(`${Key} holds more than ${bytesMax} bytes (archive.objectBytesMax): not read`);
          if ((r.ContentLength ?? 0) > bytesMax) {
            body?.destroy?.();
            throw tooBig();
          }
          // Read up to the bound whatever the server said of the length.
          const chunks: Buffer[] = [];
          let bytes = 0;
          for await (const chunk of body ?? []) {
            bytes += chunk.length;
            if (bytes > bytesMax) {
              body?.destroy?.();
              throw tooBig();
            }
            chunks.push(Buffer.from(chunk));
          }
          return { body: Buffer.concat(chunks), seal: sealOfMetadata(r.Metadata) };
        },
      );
    },
    async list(Prefix, StartAfter, max) {
      return counted(
        "list",
        () => 0,
        async () => {
          const r = await client.send(
            new ListObjectsV2Command({ Bucket, Prefix, StartAfter, MaxKeys: max }),
            bounded(),
          );
          return (r.Contents ?? []).map((c) => c.Key!).filter((k) => k !== undefined);
        },
      );
    },
    async folders(Prefix) {
      // Page after page: a page holds at most 1,000 entries, folders and keys together (each
      // incarnation's folder beside its audience object), so one page stopped at ~500.
      const folders: string[] = [];
      let ContinuationToken: string | undefined;
      do {
        const r = await counted(
          "list",
          () => 0,
          () =>
            client.send(
              new ListObjectsV2Command({
                ...{ Bucket, Prefix, Delimiter: "/", ContinuationToken },
                ...(o.listPageMax ? { MaxKeys: o.listPageMax } : {}),
              }),
              bounded(),
            ),
        );
        folders.push(...(r.CommonPrefixes ?? []).flatMap((c) => (c.Prefix ? [c.Prefix] : [])));
        ContinuationToken = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (ContinuationToken);
      return folders;
    },
    close() {
      client.destroy();
    },
  };
}

/** S3 requests counted by operation since a start: what the archive costs, per hour. */
export class RequestTally {
  private readonly counts: Record<ArchiveOp, number> = { put: 0, get: 0, list: 0 };
  constructor(private readonly sinceMs: number) {}

  add(op: ArchiveOp): void {
    this.counts[op]++;
  }

  /** Requests since the start, and per hour at the rate since then (after at least a minute). */
  snapshot(nowMs: number): {
    requests: Record<ArchiveOp, number>;
    perHour: Record<ArchiveOp, number> | undefined;
  } {
    const hours = (nowMs - this.sinceMs) / 3_600_000;
    const rate = (n: number) => Math.round(n / hours);
    return {
      requests: { ...this.counts },
      perHour:
        hours * 60 < 1
          ? undefined
          : { put: rate(this.counts.put), get: rate(this.counts.get), list: rate(this.counts.list) },
    };
  }
}
