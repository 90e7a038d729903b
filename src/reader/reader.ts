/**
 * The receiving side of replication: one batch from a peer, verified and applied whole or
 * refused whole. Transport-free (the HTTP route in src/node/server.ts hands it the method,
 * path, headers and raw body), so every refusal is tested directly as well as over HTTP.
 *
 * Order of checks: signature (401), Content-Digest (400), batch and record checksums (400),
 * sender = origin, known origin (403), tenants this region may hold (403), clock skew (400),
 * then one store transaction with the watermark (200, or 409 with the watermark to rewind to).
 */
import { ClockSkewError } from "../errors.js";
import type { HybridClock, Hlc } from "../clock/index.js";
import type { ReplicationPolicy } from "../config/index.js";
import type { Logger } from "../log.js";
import {
  BATCH_FLAG_SKIP_GAP,
  BatchInvalidError,
  decodeBatch,
  verifyContentDigest,
  type DecodedBatch,
  type RequestVerifier,
} from "../protocol/index.js";
import type { ApplyResult, DedupStore } from "../store/index.js";

export interface ReaderOptions {
  self: string;
  /** Every region of the deployment (the config's `regions`). */
  regions: readonly string[];
  store: DedupStore;
  clock: HybridClock;
  policy: ReplicationPolicy;
  verifier: RequestVerifier;
  log: Logger;
  /** After a batch is applied (metrics, audit log of conflicts). */
  onApplied?: (batch: DecodedBatch, result: Extract<ApplyResult, { status: "applied" }>) => void;
  /** Every refusal, with a stable reason label. */
  onRefused?: (reason: string, origin: string | undefined) => void;
}

export interface ReplicateRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer | undefined;
}

export interface ReplicateAnswer {
  status: number;
  body: Record<string, unknown>;
}

function refuse(
  status: number,
  code: string,
  message: string,
  extra: Record<string, unknown> = {},
): ReplicateAnswer {
  return { status, body: { code, message, ...extra } };
}

export class Reader {
  constructor(private readonly o: ReaderOptions) {}

  async replicate(req: ReplicateRequest): Promise<ReplicateAnswer> {
    const answer = await this.check(req);
    if (answer.status >= 400 && answer.status !== 409) {
      const origin =
        typeof req.headers["x-crr-region"] === "string" ? req.headers["x-crr-region"] : undefined;
      this.o.onRefused?.(String(answer.body.code), origin);
      this.o.log.warn(
        { origin, status: answer.status, code: answer.body.code, reason: answer.body.message },
        "refused a batch",
      );
    }
    return answer;
  }

  private async check(req: ReplicateRequest): Promise<ReplicateAnswer> {
    const auth = this.o.verifier.verify(req.method, req.path, req.headers);
    if (!auth.ok) return refuse(401, "unauthenticated", auth.reason);
    const body = req.body;
    if (!Buffer.isBuffer(body) || body.length === 0)
      return refuse(400, "malformed", "expected an application/octet-stream batch body");
    const digest = verifyContentDigest(req.headers["content-digest"] as string | undefined, body);
    if (digest !== "ok")
      return refuse(400, "bad_digest", `Content-Digest ${digest}: the body is not what was signed`);
    let batch: DecodedBatch;
    try {
      batch = decodeBatch(body);
    } catch (err) {
      if (err instanceof BatchInvalidError) return refuse(400, "bad_batch", err.message);
      throw err;
    }
    if (batch.origin !== auth.region) {
      return refuse(403, "origin_mismatch", `batch from '${batch.origin}' signed by '${auth.region}'`);
    }
    if (batch.origin === this.o.self || !this.o.regions.includes(batch.origin)) {
      return refuse(
        403,
        "unknown_origin",
        `origin '${batch.origin}' is not a peer region of '${this.o.self}'`,
      );
    }
    for (const r of batch.records) {
      if (!this.o.policy.accepts(batch.origin, r.tenant)) {
        return refuse(
          403,
          "tenant_not_allowed",
          `tenant '${r.tenant}' (LSN ${r.lsn}) is not replicated to ${this.o.self} by policy`,
        );
      }
    }
    const newest = batch.records.reduce<Hlc | undefined>(
      (m, r) =>
        !m || r.hlc.wallMs > m.wallMs || (r.hlc.wallMs === m.wallMs && r.hlc.logical > m.logical) ? r.hlc : m,
      undefined,
    );
    if (newest) {
      try {
        this.o.clock.update(newest);
      } catch (err) {
        if (err instanceof ClockSkewError) return refuse(400, "clock_skew", err.message);
        throw err;
      }
    }
    const result = await this.o.store.applyBatch({
      origin: batch.origin,
      incarnation: batch.incarnation,
      firstLsn: batch.firstLsn,
      lastLsn: batch.lastLsn,
      records: batch.records,
      skipGap: (batch.flags & BATCH_FLAG_SKIP_GAP) !== 0,
    });
    if (result.status === "gap") {
      return refuse(
        409,
        "watermark_gap",
        `batch starts at LSN ${batch.firstLsn}; applied up to ${result.watermark}`,
        {
          watermark: result.watermark,
        },
      );
    }
    if (result.status === "already")
      return { status: 200, body: { watermark: result.watermark, applied: 0, duplicates: 0, conflicts: 0 } };
    if (result.skipped) {
      this.o.log.error(
        { origin: batch.origin, from: result.skipped.from, to: result.skipped.to },
        "origin skipped LSNs it no longer holds",
      );
    }
    this.o.onApplied?.(batch, result);
    return {
      status: 200,
      body: {
        watermark: result.watermark,
        applied: result.applied,
        duplicates: result.duplicates,
        conflicts: result.conflicts.length,
      },
    };
  }
}
