/**
 * Compression of replication batches (`shipper.compression`): an HTTP content coding of the
 * request body (RFC 9110 §8.4), negotiated as RFC 7694 describes. A node names the codings it
 * reads in the `Accept-Encoding` header of its answers to `/v1/replicate`; a shipper set to
 * compress codes a batch only once its peer named the coding, so a peer of an older version
 * (which names none) is sent plain batches. The signature's Content-Digest covers the coded
 * bytes, so a node checks it before it decompresses anything, and decompresses at most
 * `reader.bodyBytesMax` bytes (a small coded body cannot become a large one).
 *
 * Synchronous zlib on both sides: a batch is at most `shipper.batchBytesMax` (1 MiB) and batches
 * must reach the reader in the order sent, which the thread pool's callbacks do not keep.
 */
import { gunzipSync, gzipSync } from "node:zlib";

export type BatchCoding = "gzip";

/** The codings this node reads, as its answers name them. */
export const codingsRead = "gzip";

/** Whether an Accept-Encoding value names `coding` with a weight above 0 (RFC 9110 §12.5.3). */
export function namesCoding(header: string | string[] | undefined, coding: BatchCoding): boolean {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  return value.split(",").some((item) => {
    const [name, ...params] = item.split(";").map((p) => p.trim().toLowerCase());
    if (name !== coding) return false;
    const q = params.find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** A batch coded for the wire (zlib level 1: the fastest, most of the gain on repetitive records). */
export function codeBatch(body: Buffer): Buffer {
  return gzipSync(body, { level: 1 });
}

export type DecodeResult =
  { ok: true; body: Buffer } | { ok: false; status: 400 | 413 | 415; code: string; message: string };

/** A request body as sent under `coding` (undefined or "identity": as is), decoded to at most `bytesMax`. */
export function decodeBody(body: Buffer, coding: string | undefined, bytesMax: number): DecodeResult {
  const name = (coding ?? "identity").trim().toLowerCase();
  if (name === "identity") return { ok: true, body };
  if (name !== "gzip")
    return {
      ok: false,
      status: 415,
      code: "unsupported_encoding",
      message: `Content-Encoding '${name.slice(0, 40)}' is not one this node reads (${codingsRead})`,
    };
  try {
    return {
      ok: true,
      // Z_FINISH (the default): a stream cut short is an error, not a prefix (gzip's own CRC
      // and length are checked too).
      body: gunzipSync(body, { maxOutputLength: bytesMax }),
    };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ERR_BUFFER_TOO_LARGE" || e instanceof RangeError)
      return {
        ok: false,
        status: 413,
        code: "body_too_large",
        message: `the gzip body decodes to more than reader.bodyBytesMax (${bytesMax} bytes)`,
      };
    return {
      ok: false,
      status: 400,
      code: "bad_encoding",
      message: `the gzip body does not decode: ${e.message}`,
    };
  }
}
