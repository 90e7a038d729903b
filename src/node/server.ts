/**
 * The node's HTTP server (fastify): the public API, the peer API and the operational routes
 * of the outside contract. Handlers are thin: they translate HTTP to Region calls and typed
 * errors back to status codes. No secret ever reaches a response or a log line.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
} from "fastify";
import { RequestVerifier } from "../protocol/index.js";
import { formatHlc } from "../clock/index.js";
import { CrrError, RecordInvalidError } from "../errors.js";
import { DrainingError, WaitTimeoutError, type Region } from "./region.js";

export interface ServerOptions {
  host: string;
  port: number;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

const recordBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["key", "tenant", "outcome"],
  properties: {
    key: { type: "string" },
    tenant: { type: "string" },
    outcome: { type: "string" },
    body: {},
  },
} as const;

function statusOf(err: unknown): number {
  if (err instanceof RecordInvalidError) return 400;
  if (err instanceof DrainingError) return 503;
  if (err instanceof WaitTimeoutError) return 504;
  if (err instanceof CrrError) {
    if (err.code === "wal_busy" || err.code === "wal_write_failed" || err.code === "wal_closed") return 503;
    return 500;
  }
  const status = (err as FastifyError).statusCode;
  return typeof status === "number" && status >= 400 && status < 600 ? status : 500;
}

export function buildServer(region: Region): FastifyInstance {
  const c = region.config;
  const adminVerifier = new RequestVerifier({ secret: c.auth.peerSecret, windowMs: c.auth.windowMs });
  const app = Fastify({
    loggerInstance: region.log as unknown as FastifyBaseLogger,
    // Appends arrive at thousands per second: no per-request log lines; errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: "x-request-id",
    bodyLimit: c.server.publicBodyBytesMax,
    requestTimeout: c.server.requestTimeoutMs,
    keepAliveTimeout: c.server.keepAliveTimeoutMs,
    return503OnClosing: true,
    // Unknown fields are errors, not silently dropped (fastify's default strips them).
    ajv: { customOptions: { removeAdditional: false } },
  });

  app.addContentTypeParser(
    "application/octet-stream",
    { parseAs: "buffer", bodyLimit: c.reader.bodyBytesMax },
    (_req, body, done) => done(null, body),
  );

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = statusOf(err);
    const code =
      err instanceof CrrError
        ? err.code
        : status === 413
          ? "body_too_large"
          : status < 500
            ? "bad_request"
            : "internal";
    if (status >= 500 && !(err instanceof CrrError)) {
      req.log.error({ err, reqId: req.id }, "request failed");
      return reply
        .status(500)
        .send({ code, message: `internal error (request id ${req.id}; see the node's log)` });
    }
    if (status === 503) void reply.header("retry-after", err instanceof DrainingError ? "5" : "1");
    if (status === 400 || status === 413)
      req.log.debug({ reqId: req.id, code, err: err.message }, "bad request");
    const extra: Record<string, unknown> = {};
    if (err instanceof RecordInvalidError) extra.field = err.field;
    if (err instanceof WaitTimeoutError)
      Object.assign(extra, { acked: err.acked, wanted: err.wanted, record: err.result });
    return reply.status(status).send({ code, message: err.message, ...extra });
  });

  app.post<{
    Body: { key: string; tenant: string; outcome: string; body?: unknown };
    Querystring: { wait?: number };
  }>(
    "/v1/records",
    {
      schema: {
        body: recordBodySchema,
        querystring: { type: "object", properties: { wait: { type: "integer", minimum: 0, maximum: 64 } } },
      },
    },
    async (req) => region.append(req.body, { waitPeers: req.query.wait ?? 0 }),
  );

  app.get<{ Params: { key: string } }>("/v1/records/:key", async (req, reply) => {
    const r = await region.get(req.params.key);
    if (!r)
      return reply.status(404).send({ code: "not_found", message: `no record for key '${req.params.key}'` });
    return {
      key: r.key,
      tenant: r.tenant,
      outcome: r.outcome,
      body: r.bodyJson === undefined ? undefined : (JSON.parse(r.bodyJson) as unknown),
      origin: r.origin,
      lsn: r.lsn,
      hlc: formatHlc(r.hlc),
    };
  });

  app.get("/v1/watermarks", async () => region.watermarksView());

  app.post("/v1/replicate", async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) {
      return reply
        .status(415)
        .send({ code: "unsupported_media_type", message: "expected an application/octet-stream batch" });
    }
    const answer = await region.reader.replicate({
      method: req.method,
      path: req.url,
      headers: req.headers,
      body: Buffer.isBuffer(req.body) ? req.body : undefined,
    });
    return reply.status(answer.status).send(answer.body);
  });

  app.get("/v1/status", async () => region.status());

  app.get("/metrics", async (_req, reply) => {
    const body = await region.metrics.registry.metrics();
    return reply.header("content-type", region.metrics.registry.contentType).send(body);
  });

  // Operations on this node: from loopback (where the sidecar's operator runs `crr drain`),
  // or signed with the deployment secret like a peer request.
  const admin = (req: FastifyRequest): boolean => {
    const ip = req.socket.remoteAddress ?? "";
    if (ip === "127.0.0.1" || ip === "::1" || ip === "::ffff:127.0.0.1") return true;
    return adminVerifier.verify(req.method, req.url, req.headers).ok;
  };
  app.post("/v1/admin/drain", async (req, reply) => {
    if (!admin(req))
      return reply
        .status(401)
        .send({ code: "unauthenticated", message: "admin routes need loopback or a signed request" });
    region.drain();
    return region.status();
  });
  app.post("/v1/admin/undrain", async (req, reply) => {
    if (!admin(req))
      return reply
        .status(401)
        .send({ code: "unauthenticated", message: "admin routes need loopback or a signed request" });
    region.undrain();
    return region.status();
  });

  app.get("/healthz", async () => ({ status: "ok", region: region.name }));

  app.get("/readyz", async (_req, reply) => {
    const r = region.readiness();
    return reply.status(r.ready ? 200 : 503).send(r);
  });

  return app;
}

export async function startServer(region: Region, o: ServerOptions): Promise<RunningServer> {
  const app = buildServer(region);
  await app.listen({ host: o.host, port: o.port });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : o.port;
  const url = `http://${o.host}:${port}`;
  return { url, app, close: () => app.close() };
}
