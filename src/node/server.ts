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
import { fromWire } from "../divergence/index.js";
import { verifyContentDigest } from "../protocol/index.js";
import { bucketCount, nodeDigest, treeFanout, treeLevels } from "../store/index.js";
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
    return region.verifier.verify(req.method, req.url, req.headers).ok;
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

  // Peer routes of the divergence detector, reconcile and rebuild: signed like /v1/replicate.
  // Their JSON bodies are kept raw so the Content-Digest is checked on the bytes that arrived.
  void app.register(async (peer) => {
    peer.addContentTypeParser(
      "application/json",
      { parseAs: "buffer", bodyLimit: c.reader.bodyBytesMax },
      (_req, body, done) => done(null, body),
    );
    peer.addHook("preHandler", async (req, reply) => {
      const auth = region.verifier.verify(req.method, req.url, req.headers);
      if (!auth.ok) return reply.status(401).send({ code: "unauthenticated", message: auth.reason });
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const digest = verifyContentDigest(req.headers["content-digest"] as string | undefined, raw);
      if (digest !== "ok")
        return reply.status(400).send({ code: "bad_digest", message: `Content-Digest ${digest}` });
      try {
        req.body = raw.length > 0 ? (JSON.parse(raw.toString("utf8")) as unknown) : {};
      } catch {
        return reply.status(400).send({ code: "malformed", message: "expected a JSON body" });
      }
    });
    const list = (v: unknown, max: number, what: string): number[] => {
      if (!Array.isArray(v) || v.length > max || !v.every((x) => Number.isInteger(x) && x >= 0)) {
        throw Object.assign(new Error(`${what}: expected up to ${max} non-negative integers`), {
          statusCode: 400,
        });
      }
      return v as number[];
    };
    peer.post<{ Body: { level: number; indexes: number[] } }>("/v1/divergence/tree", async (req) => {
      const level = req.body.level;
      if (!Number.isInteger(level) || level < 0 || level >= treeLevels) {
        throw Object.assign(new Error(`level: expected 0..${treeLevels - 1}`), { statusCode: 400 });
      }
      const tree = region.store.digestTree();
      const indexes = list(req.body.indexes, 4096, "indexes").filter((i) => i < treeFanout ** level);
      return {
        region: region.name,
        level,
        digests: indexes.map((i) => nodeDigest(tree, level, i).toString("hex")),
      };
    });
    peer.post<{ Body: { buckets: number[] } }>("/v1/divergence/buckets", async (req) => ({
      region: region.name,
      versions: region.store.bucketVersions(
        list(req.body.buckets, 1024, "buckets").filter((b) => b < bucketCount),
      ),
    }));
    peer.post<{ Body: { lsns: number[] } }>("/v1/divergence/wal", async (req) => ({
      region: region.name,
      incarnation: region.wal.incarnation,
      records: await region.walRecords(list(req.body.lsns, 1000, "lsns")),
    }));
    peer.post<{ Body: { origin?: string; after?: { bucket: number; key: string }; limit?: number } }>(
      "/v1/divergence/export",
      async (req) =>
        region.store.exportPage({
          origin: req.body.origin,
          after: req.body.after,
          limit: Math.min(5000, Math.max(1, req.body.limit ?? 1000)),
        }),
    );
    peer.post<{ Body: { versions: Array<Record<string, unknown>> } }>(
      "/v1/divergence/repair",
      async (req) => ({
        region: region.name,
        changed: await region.repair(
          (req.body.versions ?? []).map((v) => fromWire(v as never)),
          req.headers["x-crr-region"] as string,
        ),
      }),
    );
  });

  // Event streams never end by themselves: end them before the server waits for open requests.
  const streams = new Set<import("node:http").ServerResponse>();
  app.addHook("preClose", async () => {
    for (const r of streams) r.end();
  });

  // A stream of peer acknowledgements (server-sent events), for the benchmark harness to
  // time each record's replication on one clock: {"peer","lsn","atMs"} per acknowledged batch.
  app.get("/v1/admin/events", (req, reply) => {
    if (!admin(req)) {
      void reply
        .status(401)
        .send({ code: "unauthenticated", message: "admin routes need loopback or a signed request" });
      return;
    }
    void reply.hijack();
    streams.add(reply.raw);
    reply.raw.on("close", () => streams.delete(reply.raw));
    reply.raw.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    reply.raw.write(`: ${region.name}\n\n`);
    const listeners: Array<() => void> = [...region.shippers.values()].map((s) => {
      const onAck = (lsn: number) =>
        reply.raw.write(`data: {"peer":"${s.peer}","lsn":${lsn},"atMs":${Date.now()}}\n\n`);
      s.on("ack", onAck);
      return () => void s.off("ack", onAck);
    });
    // And what this region applied from each origin, timed here (the peer side of the lag).
    const onApplied = (origin: string, incarnation: string, lsn: number) =>
      reply.raw.write(
        `data: {"applied":"${origin}","incarnation":"${incarnation}","lsn":${lsn},"atMs":${Date.now()}}\n\n`,
      );
    region.events.on("applied", onApplied);
    listeners.push(() => void region.events.off("applied", onApplied));
    req.raw.on("close", () => listeners.forEach((off) => off()));
  });

  app.post("/v1/admin/verify", async (req, reply) => {
    if (!admin(req))
      return reply
        .status(401)
        .send({ code: "unauthenticated", message: "admin routes need loopback or a signed request" });
    return region.verify({ fullScrub: true });
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
