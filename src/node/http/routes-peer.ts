/**
 * The peer API: replication batches, and the divergence, reconcile, recovery and rebuild
 * routes. Every request is signed; JSON bodies are kept raw so the Content-Digest is checked
 * on the bytes that arrived.
 */
import type { FastifyPluginAsync } from "fastify";
import { fromWire, type WireVersion } from "../../link/index.js";
import { verifyContentDigest } from "../../protocol/index.js";
import { bucketCount, nodeDigest, treeFanout, treeLevels } from "../../store/index.js";
import type { Region } from "../region.js";
import { verifySigned } from "./signed.js";

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
        method: req.method,
        path: req.url,
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
    peer.addContentTypeParser(
      "application/json",
      { parseAs: "buffer", bodyLimit: c.reader.bodyBytesMax },
      (_req, body, done) => done(null, body),
    );
    peer.addHook("preHandler", async (req, reply) => {
      const auth = verifySigned(region, req);
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

    peer.post<{ Body: { versions: WireVersion[] } }>("/v1/divergence/repair", async (req) => ({
      region: region.name,
      changed: await region.repair(
        (req.body.versions ?? []).map(fromWire),
        req.headers["x-crr-region"] as string,
      ),
    }));
  };
}
