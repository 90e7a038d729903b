/**
 * The archive's bucket, through @aws-sdk/client-s3: put with the SHA-256 as the S3 checksum
 * (`x-amz-checksum-sha256`) and in metadata, get, and `start-after` listings. Each request
 * is retried with backoff (p-retry) and counted. Credentials come from the AWS SDK's
 * standard chain (environment, shared files), never from crr's config.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import pRetry from "p-retry";
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
  put(key: string, body: Buffer, sha256Hex: string): Promise<void>;
  /** The object's bytes and the SHA-256 it was stored with (metadata), if any. */
  get(key: string): Promise<{ body: Buffer; sha256Hex: string | undefined }>;
  /** Keys under `prefix` after `startAfter`, in order, at most `max`. */
  list(prefix: string, startAfter: string | undefined, max: number): Promise<string[]>;
  /** The "folders" right under `prefix` (common prefixes up to the next "/"). */
  folders(prefix: string): Promise<string[]>;
  close(): void;
}

export interface S3StoreOptions {
  s3: S3Settings;
  /** Attempts per request before the archiver's pass fails (it tries again next pass). */
  attempts: number;
  /** A request not answered within this fails (a bucket that accepts and never answers must not stall the archive). */
  requestTimeoutMs: number;
  runtime: Runtime;
  onRequest(op: ArchiveOp, outcome: "ok" | "error", bytes: number): void;
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
    async put(Key, body, sha256Hex) {
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
              ChecksumSHA256: Buffer.from(sha256Hex, "hex").toString("base64"),
              Metadata: { sha256: sha256Hex },
            }),
            bounded(),
          ),
      );
    },
    async get(Key) {
      return counted(
        "get",
        (r) => r.body.length,
        async () => {
          const r = await client.send(new GetObjectCommand({ Bucket, Key }), bounded());
          const bytes = await r.Body!.transformToByteArray();
          return { body: Buffer.from(bytes), sha256Hex: r.Metadata?.sha256 };
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
      return counted(
        "list",
        () => 0,
        async () => {
          const r = await client.send(
            new ListObjectsV2Command({ Bucket, Prefix, Delimiter: "/" }),
            bounded(),
          );
          return (r.CommonPrefixes ?? []).map((c) => c.Prefix!).filter((p) => p !== undefined);
        },
      );
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
