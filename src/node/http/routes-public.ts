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

    app.get<{ Params: { key: string } }>("/v1/records/:key", async (req, reply) => {
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
    });

    app.get("/v1/watermarks", async () => region.watermarksView());

    app.get("/v1/status", async () => region.status());

    app.get("/metrics", async (_req, reply) => {
      const body = await region.metrics.text();
      return reply.header("content-type", region.metrics.registry.contentType).send(body);
    });

    app.get("/healthz", async () => ({ status: "ok", region: region.name }));

    app.get("/readyz", async (_req, reply) => {
      const r = region.readiness();
      return reply.status(r.ready ? 200 : 503).send(r);
    });
  };
}
