/**
 * Typed errors mapped to HTTP answers in one place: the status, the `{code, message}` body
 * (with the field, key or wait details that belong to it) and Retry-After for refusals that
 * pass. The error handler answers a failed request with it; the batch route answers each
 * refused record with it. An unexpected error never shows its message (it may hold anything).
 */
import type { FastifyError } from "fastify";
import {
  CrrError,
  RecordInvalidError,
  RepairRefusedError,
  StoreFullError,
  StoreUnavailableError,
} from "../../errors.js";
import { DrainingError, OverloadedError, UnavailableError, WaitTimeoutError } from "../region.js";

const unavailableCodes = new Set(["wal_busy", "wal_write_failed", "wal_closed", "node_left"]);

export function statusOf(err: unknown): number {
  if (err instanceof RecordInvalidError) return 400;
  if (err instanceof RepairRefusedError) return 403;
  if (err instanceof OverloadedError) return 429;
  if (
    err instanceof DrainingError ||
    err instanceof UnavailableError ||
    err instanceof StoreFullError ||
    err instanceof StoreUnavailableError
  )
    return 503;
  if (err instanceof WaitTimeoutError) return 504;
  if (err instanceof CrrError) return unavailableCodes.has(err.code) ? 503 : 500;
  const status = (err as FastifyError).statusCode;
  return typeof status === "number" && status >= 400 && status < 600 ? status : 500;
}

function retryAfterS(err: unknown): number {
  if (err instanceof UnavailableError || err instanceof OverloadedError) return err.retryAfterS;
  if (err instanceof DrainingError || err instanceof StoreFullError) return 5;
  return 1;
}

export interface ErrorAnswer {
  status: number;
  body: { code: string; message: string } & Record<string, unknown>;
  /** Seconds, for 429 and 503 (the client may retry then). */
  retryAfterS: number | undefined;
  /** Worth a log line: the node failed, not the request. */
  unexpected: boolean;
}

export function errorAnswer(err: unknown, requestId: string): ErrorAnswer {
  const status = statusOf(err);
  const retryAfter = status === 429 || status === 503 ? retryAfterS(err) : undefined;
  const unexpected = status >= 500 && status !== 503 && status !== 504;
  if (status === 500 && !(err instanceof CrrError)) {
    const message = `internal error (request id ${requestId}; see the node's log)`;
    return { status, body: { code: "internal", message }, retryAfterS: undefined, unexpected };
  }
  const code =
    err instanceof CrrError
      ? err.code
      : status === 413
        ? "body_too_large"
        : status < 500
          ? "bad_request"
          : "internal";
  const body: ErrorAnswer["body"] = { code, message: (err as Error).message };
  if (err instanceof RecordInvalidError) body.field = err.field;
  if (err instanceof RepairRefusedError) body.key = err.key;
  if (err instanceof WaitTimeoutError)
    Object.assign(body, { acked: err.acked, wanted: err.wanted, record: err.result });
  return { status, body, retryAfterS: retryAfter, unexpected };
}
