/**
 * Structured logs (pino, the logger fastify uses). Secrets never reach a log line: the
 * fields that could carry them are redacted, and config objects are never logged whole.
 */
import { pino, type Logger as PinoLogger } from "pino";

export type Logger = PinoLogger;

export const redactPaths = [
  "auth.peerSecret",
  "config.auth.peerSecret",
  "peerSecret",
  "secret",
  "req.headers.authorization",
  'req.headers["x-crr-signature"]',
];

export function createLogger(
  options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      level: options.level ?? "info",
      name: options.name,
      redact: { paths: redactPaths, censor: "[redacted]" },
    },
    options.destination as pino.DestinationStream | undefined,
  );
}

/** A logger that drops everything (library use without logs, tests). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
