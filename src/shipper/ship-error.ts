/** Why a send to a peer failed, as a short stable label for metrics (crr_ship_errors_total{reason}). */
export class ShipError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    cause?: unknown,
  ) {
    super(message, { cause });
    this.name = "ShipError";
  }
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

export function classify(err: unknown): string {
  const e = err as { code?: string; name?: string; cause?: { code?: string } } | undefined;
  const code = e?.code ?? e?.cause?.code;
  if (code && byCode[code]) return byCode[code]!;
  if (e?.name === "AbortError") return "aborted";
  return "network";
}
