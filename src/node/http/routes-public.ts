/**
 * The public API and the operational routes: appends and reads, watermarks, status,
 * liveness, readiness, metrics.
 */
import underPressure from "@fastify/under-pressure";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { formatHlc } from "../../clock/index.js";
import { RecordInvalidError } from "../../errors.js";
import type { RecordInput } from "../../wal/index.js";
import type { Region } from "../region.js";
import { errorAnswer } from "./errors.js";

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

const waitQuery = {
  type: "object",
  additionalProperties: false,
  properties: { wait: { type: "integer", minimum: 0, maximum: 64 } },
} as const;

/**
 * NDJSON: one record per line (blank lines ignored). A line that is not JSON is a 400 naming
 * the line; nothing is appended.
 */
function parseNdjson(text: string): unknown[] {
  const records: unknown[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      records.push(JSON.parse(line));
    } catch (err) {
      throw new RecordInvalidError("body", `line ${i + 1} is not JSON: ${(err as Error).message}`);
    }
  });
  return records;
}

const recordFields = new Set(Object.keys(recordBodySchema.properties));

/** Why a batch item is not a record the single route would take (its types are checked when appended). */
function shapeError(item: unknown): RecordInvalidError | undefined {
  if (item === null || typeof item !== "object" || Array.isArray(item))
    return new RecordInvalidError("record", "expected an object {key, tenant, outcome, body?}");
  const unknown = Object.keys(item).find((k) => !recordFields.has(k));
  return unknown === undefined ? undefined : new RecordInvalidError(unknown, `unknown field '${unknown}'`);
}

/** Each record's answer in order: what POST /v1/records answers, or its error body with `status`. */
async function appendBatch(region: Region, req: FastifyRequest<{ Querystring: { wait?: number } }>) {
  const items = req.body;
  if (!Array.isArray(items))
    throw new RecordInvalidError("body", "expected a JSON array of records (or NDJSON, one per line)");
  const refusals = items.map(shapeError);
  const valid = items.filter((_, i) => refusals[i] === undefined) as RecordInput[];
  const settled = await region.appendMany(valid, { waitPeers: req.query.wait ?? 0 });
  let next = 0;
  return refusals.map((refusal) => {
    const s: PromiseSettledResult<unknown> = refusal
      ? { status: "rejected", reason: refusal }
      : settled[next++]!;
    if (s.status === "fulfilled") return s.value;
    const a = errorAnswer(s.reason, req.id);
    if (a.unexpected) req.log.error({ err: s.reason, reqId: req.id }, "a record of a batch failed");
    return { status: a.status, ...a.body };
  });
}

/** How often the event loop's delay is sampled for append.eventLoopDelayMaxMs (its mean over this). */
const eventLoopSampleMs = 100;

/**
 * The two append routes, in a context of their own: admission before the body is read (the
 * node's bounds, and the event loop's lag through @fastify/under-pressure), and NDJSON batches.
 */
function appendRoutes(region: Region): FastifyPluginAsync {
  return async (app) => {
    const batchBytesMax = region.config.append.batchBodyBytesMax;
    const delayMaxMs = region.config.append.eventLoopDelayMaxMs;
    // A shed append's connection is closed: its unread body would otherwise be read and dropped.
    const close = (reply: FastifyReply) => void reply.header("connection", "close");
    if (delayMaxMs > 0)
      await app.register(underPressure, {
        maxEventLoopDelay: delayMaxMs,
        sampleInterval: eventLoopSampleMs,
        pressureHandler: async (_req, reply, _type, value) => {
          close(reply);
          region.refuseUnderPressure(value ?? delayMaxMs);
        },
      });
    // Before the body is read: a node that would shed the append refuses it without parsing it.
    const refuseEarly = async (_req: FastifyRequest, reply: FastifyReply) => {
      try {
        region.refuseEarly();
      } catch (err) {
        close(reply);
        throw err;
      }
    };
    app.addContentTypeParser(
      "application/x-ndjson",
      { parseAs: "string", bodyLimit: batchBytesMax },
      (_req, text, done) => {
        try {
          done(null, parseNdjson(text as string));
        } catch (err) {
          done(err as Error, undefined);
        }
      },
    );
    app.post<{ Querystring: { wait?: number } }>(
      "/v1/records/batch",
      {
        bodyLimit: batchBytesMax,
        onRequest: refuseEarly,
        schema: {
          tags: ["public"],
          summary:
            "append many records (a JSON array, or NDJSON); one answer per record in order, after fdatasync",
          querystring: waitQuery,
          body: { type: "array", maxItems: region.config.append.batchRecordsMax },
        },
      },
      (req) => appendBatch(region, req),
    );

    app.post<{
      Body: { key: string; tenant: string; outcome: string; body?: unknown };
      Querystring: { wait?: number };
    }>(
      "/v1/records",
      {
        onRequest: refuseEarly,
        schema: {
          tags: ["public"],
          summary: "append a record; answered after fdatasync (?wait=N: after N peers applied it)",
          body: recordBodySchema,
          querystring: waitQuery,
        },
      },
      async (req) => region.append(req.body, { waitPeers: req.query.wait ?? 0 }),
    );
  };
}

export function publicRoutes(region: Region): FastifyPluginAsync {
  return async (app) => {
    await app.register(appendRoutes(region));

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
