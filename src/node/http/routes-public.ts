/**
 * The public API and the operational routes: appends and reads, watermarks, status,
 * liveness, readiness, metrics.
 */
import type { FastifyPluginAsync } from "fastify";
import { formatHlc } from "../../clock/index.js";
import type { Region } from "../region.js";

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

export function publicRoutes(region: Region): FastifyPluginAsync {
  return async (app) => {
    app.post<{
      Body: { key: string; tenant: string; outcome: string; body?: unknown };
      Querystring: { wait?: number };
    }>(
      "/v1/records",
      {
        schema: {
          tags: ["public"],
          summary: "append a record; answered after fdatasync (?wait=N: after N peers applied it)",
          body: recordBodySchema,
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: { wait: { type: "integer", minimum: 0, maximum: 64 } },
          },
        },
      },
      async (req) => region.append(req.body, { waitPeers: req.query.wait ?? 0 }),
    );

    const tag = (summary: string) => ({ schema: { tags: ["public"], summary } });
    app.get<{ Params: { key: string } }>(
      "/v1/records/:key",
      {
        schema: {
          tags: ["public"],
          summary: "the winning record of a key (404 if none)",
          params: {
            type: "object",
            required: ["key"],
            properties: { key: { type: "string", minLength: 1, maxLength: 256 } },
          },
        },
      },
      async (req, reply) => {
        const r = await region.get(req.params.key);
        if (!r)
          return reply
            .status(404)
            .send({ code: "not_found", message: `no record for key '${req.params.key}'` });
        return {
          key: r.key,
          tenant: r.tenant,
          outcome: r.outcome,
          body: r.bodyJson === undefined ? undefined : (JSON.parse(r.bodyJson) as unknown),
          origin: r.origin,
          lsn: r.lsn,
          hlc: formatHlc(r.hlc),
        };
      },
    );

    app.get("/v1/watermarks", tag("applied LSN per origin and per incarnation"), async () =>
      region.watermarksView(),
    );

    app.get("/v1/status", tag("what crr status shows"), async () => region.status());

    app.get("/metrics", tag("Prometheus text format"), async (_req, reply) => {
      const body = await region.metrics.text();
      return reply.header("content-type", region.metrics.registry.contentType).send(body);
    });

    app.get("/healthz", tag("liveness"), async () => ({ status: "ok", region: region.name }));

    app.get("/readyz", tag("readiness: WAL writable, store open, not draining"), async (_req, reply) => {
      const r = region.readiness();
      return reply.status(r.ready ? 200 : 503).send(r);
    });
  };
}
