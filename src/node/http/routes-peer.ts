/**
 * The peer API: replication batches, and the divergence, reconcile, recovery and rebuild
 * routes. Every request was authenticated by the gate (gate.ts) before its body was read,
 * and its body checked against the signed Content-Digest.
 */
import type { FastifyPluginAsync } from "fastify";
import { fromWire, type WireVersion } from "../../link/index.js";
import { bodyBytesMax, keyBytesMax, outcomeBytesMax, regionBytesMax, tenantBytesMax } from "../../limits.js";
import { bucketCount, nodeDigest, treeFanout, treeLevels } from "../../store/index.js";
import type { Region } from "../region.js";

const regionNameSchema = {
  type: "string",
  minLength: 1,
  maxLength: regionBytesMax,
  pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
};

/** A repair: versions exactly as the store holds them (checked again, by bytes and policy, in repair.ts). */
const repairBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["versions"],
  properties: {
    versions: {
      type: "array",
      minItems: 1,
      maxItems: 1000,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["key", "tenant", "outcome", "origin", "incarnation", "lsn", "hlc"],
        properties: {
          key: { type: "string", minLength: 1, maxLength: keyBytesMax },
          tenant: { type: "string", minLength: 1, maxLength: tenantBytesMax },
          outcome: { type: "string", minLength: 1, maxLength: outcomeBytesMax },
          bodyJson: { type: ["string", "null"], maxLength: bodyBytesMax },
          origin: regionNameSchema,
          incarnation: { type: "string", pattern: "^[0-9a-f]{32}$" },
          lsn: { type: "integer", minimum: 1 },
          hlc: {
            type: "object",
            additionalProperties: false,
            required: ["wallMs", "logical"],
            properties: {
              wallMs: { type: "integer", minimum: 0 },
              logical: { type: "integer", minimum: 0 },
            },
          },
          intact: { type: "boolean" },
        },
      },
    },
  },
} as const;

function badRequest(message: string): Error {
  return Object.assign(new Error(message), { statusCode: 400 });
}

function integers(v: unknown, max: number, what: string): number[] {
  if (!Array.isArray(v) || v.length > max || !v.every((x) => Number.isInteger(x) && x >= 0))
    throw badRequest(`${what}: expected up to ${max} non-negative integers`);
  return v as number[];
}

function streamQuery(b: Record<string, unknown>) {
  const { origin, incarnation, fromLsn, toLsn, limit } = b;
  if (typeof origin !== "string" || typeof incarnation !== "string")
    throw badRequest("origin, incarnation: expected strings");
  if (![fromLsn, toLsn, limit].every((x) => Number.isInteger(x) && (x as number) >= 1))
    throw badRequest("fromLsn, toLsn, limit: expected positive integers");
  return {
    origin,
    incarnation,
    fromLsn: fromLsn as number,
    toLsn: toLsn as number,
    limit: Math.min(5000, limit as number),
  };
}

export function peerRoutes(region: Region): FastifyPluginAsync {
  const c = region.config;
  return async (app) => {
    app.addContentTypeParser(
      "application/octet-stream",
      { parseAs: "buffer", bodyLimit: c.reader.bodyBytesMax },
      (_req, body, done) => done(null, body),
    );
    app.post("/v1/replicate", async (req, reply) => {
      if (!Buffer.isBuffer(req.body))
        return reply
          .status(415)
          .send({ code: "unsupported_media_type", message: "expected an application/octet-stream batch" });
      const answer = await region.reader.replicate({
        sender: req.crrPeer!.region,
        headers: req.headers,
        body: req.body,
      });
      return reply.status(answer.status).send(answer.body);
    });
    void app.register(divergenceRoutes(region));
  };
}

function divergenceRoutes(region: Region): FastifyPluginAsync {
  const c = region.config;
  return async (peer) => {
    // The gate checked the bytes against the signed digest as they arrived; bodies are
    // parsed here, then validated by each route's schema.
    peer.addContentTypeParser(
      "application/json",
      { parseAs: "string", bodyLimit: c.reader.bodyBytesMax },
      (_req, body, done) => {
        try {
          done(null, body.length > 0 ? (JSON.parse(body as string) as unknown) : {});
        } catch {
          done(Object.assign(new Error("expected a JSON body"), { statusCode: 400 }), undefined);
        }
      },
    );
    peer.post<{ Body: { level: number; indexes: number[] } }>("/v1/divergence/tree", async (req) => {
      const level = req.body.level;
      if (!Number.isInteger(level) || level < 0 || level >= treeLevels)
        throw badRequest(`level: expected 0..${treeLevels - 1}`);
      const tree = region.store.digestTree();
      const indexes = integers(req.body.indexes, 4096, "indexes").filter((i) => i < treeFanout ** level);
      return {
        region: region.name,
        level,
        digests: indexes.map((i) => nodeDigest(tree, level, i).toString("hex")),
      };
    });
    peer.post<{ Body: { buckets: number[] } }>("/v1/divergence/buckets", async (req) => ({
      region: region.name,
      versions: region.store.bucketVersions(
        integers(req.body.buckets, 1024, "buckets").filter((b) => b < bucketCount),
      ),
    }));
    peer.post<{ Body: { lsns: number[] } }>("/v1/divergence/wal", async (req) => ({
      region: region.name,
      incarnation: region.wal.incarnation,
      records: await region.walRecords(integers(req.body.lsns, 1000, "lsns")),
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
    // One origin stream by LSN, winners and conflict losers, each with whether it is intact
    // (a copy changed outside the engine is not evidence): what recovery, bootstrap and
    // rebuild copy back. `next` continues a full page.
    peer.post<{ Body: Record<string, unknown> }>("/v1/divergence/stream", async (req) => {
      const q = streamQuery(req.body);
      const versions = region.store.streamVersions(q.origin, q.incarnation, q.fromLsn, q.toLsn, q.limit);
      const last = versions.at(-1)?.lsn;
      return {
        region: region.name,
        versions,
        next: versions.length === q.limit && last !== undefined && last < q.toLsn ? last + 1 : undefined,
      };
    });

    peer.post<{ Body: { versions: WireVersion[] } }>(
      "/v1/divergence/repair",
      { schema: { body: repairBodySchema } },
      async (req) => ({
        region: region.name,
        changed: await region.repairFromPeer(req.body.versions.map(fromWire), req.crrPeer!.region),
      }),
    );
  };
}
