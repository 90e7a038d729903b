/**
 * The node's HTTP server (fastify): the route plugins of the outside contract (public, peer,
 * admin), typed errors mapped to status codes in one place, request bodies validated without
 * type coercion (`{"key":123}` is a 400, not the key "123"). Handlers are thin: they
 * translate HTTP to Region calls. No secret ever reaches a response or a log line.
 */
import http from "node:http";
import https from "node:https";
import swagger from "@fastify/swagger";
import { Ajv } from "ajv";
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
} from "fastify";
import type { Region } from "../region.js";
import { errorAnswer } from "./errors.js";
import { installGate } from "./gate.js";
import { adminRoutes } from "./routes-admin.js";
import { peerRoutes } from "./routes-peer.js";
import { publicRoutes } from "./routes-public.js";

export interface ServerOptions {
  host: string;
  port: number;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * Bodies: no coercion, unknown fields are errors. Query strings and params: strings coerced
 * to their types. One compiler per process, each schema compiled once: a validator is a
 * pure function of its schema, and compiling Ajv's meta-schema and every route's schema
 * again for each server took a fifth of a simulated run (a server per region boot).
 */
const validators = (() => {
  const common = {
    allErrors: false,
    useDefaults: true,
    removeAdditional: false,
    allowUnionTypes: true,
  } as const;
  const modes = {
    strict: {
      ajv: undefined as Ajv | undefined,
      coerceTypes: false as const,
      compiled: new Map<string, unknown>(),
    },
    coercing: {
      ajv: undefined as Ajv | undefined,
      coerceTypes: "array" as const,
      compiled: new Map<string, unknown>(),
    },
  };
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) => {
    const m = httpPart === "body" ? modes.strict : modes.coercing;
    const key = JSON.stringify(schema);
    let fn = m.compiled.get(key) as ReturnType<Ajv["compile"]> | undefined;
    if (!fn) {
      m.ajv ??= new Ajv({ ...common, coerceTypes: m.coerceTypes });
      fn = m.ajv.compile(schema);
      m.compiled.set(key, fn);
    }
    return fn;
  };
})();

/**
 * The listener: HTTPS when `listen.tls` is set (client certificates required when
 * `requireClientCert`), with every timeout checked each second (Node checks them only every
 * 30 s by default, so a slow body outlived its timeout) and a bound on open connections.
 */
function serverFactory(region: Region) {
  const c = region.config.server;
  return (handler: http.RequestListener): http.Server => {
    const options = {
      requestTimeout: c.requestTimeoutMs,
      headersTimeout: c.headersTimeoutMs,
      keepAliveTimeout: c.keepAliveTimeoutMs,
      connectionsCheckingInterval: 1000,
    };
    const server = region.tls
      ? https.createServer({ ...options, ...region.tls.serverOptions() }, handler)
      : http.createServer(options, handler);
    server.maxConnections = c.connectionsMax;
    return server;
  };
}

export function buildServer(region: Region): FastifyInstance {
  const c = region.config;
  const app = Fastify({
    loggerInstance: region.log as unknown as FastifyBaseLogger,
    // Appends arrive at thousands per second: no per-request log lines; errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: "x-request-id",
    bodyLimit: c.server.publicBodyBytesMax,
    serverFactory: serverFactory(region),
    return503OnClosing: true,
  });
  installGate(app, region);
  app.setValidatorCompiler(validators);
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const a = errorAnswer(err, req.id);
    if (a.unexpected) req.log.error({ err, reqId: req.id }, "request failed");
    if (a.retryAfterS !== undefined) void reply.header("retry-after", String(a.retryAfterS));
    return reply.status(a.status).send(a.body);
  });
  // The OpenAPI document of the routes' schemas (GET /openapi.json; docs/openapi.json is the
  // checked-in copy, compared with it by a test).
  void app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "crr node",
        version: "1",
        description:
          "One region's node. Public routes are unauthenticated; peer routes need a signed request (docs/FORMAT.md); admin routes need Authorization: Bearer <auth.adminToken> or this region's own signature.",
      },
      components: {
        securitySchemes: {
          signed: {
            type: "apiKey",
            in: "header",
            name: "x-crr-signature",
            description: "a peer request signed by its region (headers and signed string: docs/FORMAT.md)",
          },
          admin: { type: "http", scheme: "bearer", description: "auth.adminToken" },
        },
      },
    },
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  void app.register(publicRoutes(region));
  void app.register(peerRoutes(region));
  void app.register(adminRoutes(region));
  return app;
}

/** How often the TLS files are checked for a rotation. */
export const tlsCheckIntervalMs = 2000;

export async function startServer(region: Region, o: ServerOptions): Promise<RunningServer> {
  const app = buildServer(region);
  await app.listen({ host: o.host, port: o.port });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : o.port;
  const tls = region.tls;
  if (tls) {
    tls.onReload((ctx) => (app.server as https.Server).setSecureContext(ctx));
    tls.watch(region.runtime, tlsCheckIntervalMs);
  }
  const url = `${tls ? "https" : "http"}://${o.host}:${port}`;
  return {
    url,
    app,
    close: async () => {
      tls?.stop();
      await app.close();
    },
  };
}
