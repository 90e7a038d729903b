/**
 * Why a request to a peer failed, as a short stable label (`reason`) for metrics
 * (`crr_ship_errors_total{reason}`) and status, with the detail in the message.
 */
export class LinkError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    options: { cause?: unknown; status?: number; answer?: Record<string, unknown> } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "LinkError";
    this.status = options.status;
    this.answer = options.answer;
  }
  /** The HTTP status of a refusal (undefined for a transport failure). */
  readonly status: number | undefined;
  /** The peer's JSON answer to a refusal, when it gave one. */
  readonly answer: Record<string, unknown> | undefined;
}

const byCode: Record<string, string> = {
  UND_ERR_CONNECT_TIMEOUT: "connect_timeout",
  UND_ERR_HEADERS_TIMEOUT: "timeout",
  UND_ERR_BODY_TIMEOUT: "timeout",
  UND_ERR_SOCKET: "connection_reset",
  UND_ERR_CLOSED: "connection_reset",
  ECONNRESET: "connection_reset",
  EPIPE: "connection_reset",
  ECONNREFUSED: "connection_refused",
  EHOSTUNREACH: "unreachable",
  ENETUNREACH: "unreachable",
  ETIMEDOUT: "timeout",
};

/** A stable label for a transport error (undici or node:net). */
export function classify(err: unknown): string {
  const e = err as { code?: string; name?: string; cause?: { code?: string } } | undefined;
  const code = e?.code ?? e?.cause?.code;
  if (code && byCode[code]) return byCode[code]!;
  if (e?.name === "AbortError") return "aborted";
  return "network";
}
