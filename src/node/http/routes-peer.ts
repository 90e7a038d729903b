/**
 * The peer API: replication batches, and the divergence, reconcile, recovery and rebuild
 * routes. Every request was authenticated by the gate (gate.ts) before its body was read,
 * and its body checked against the signed Content-Digest.
 */
import type { FastifyPluginAsync } from "fastify";
import { codingsRead, decodeBody, fromWire, type ExportQuery, type WireVersion } from "../../link/index.js";
import { bodyBytesMax, keyBytesMax, outcomeBytesMax, regionBytesMax, tenantBytesMax } from "../../limits.js";
import { bucketCount, nodeDigest, treeFanout, treeLevels } from "../../store/index.js";
import type { Region } from "../region.js";
import { forAsker } from "./withhold.js";

const regionNameSchema = {
  type: "string",
  minLength: 1,
  maxLength: regionBytesMax,
  pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
};

/** A repair: versions exactly as the store holds them (checked again, by bytes and policy, in repair.ts). */
export const repairBodySchema = {
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

const ints = (minimum: number, maxItems: number) =>
  ({ type: "array", maxItems, items: { type: "integer", minimum } }) as const;
const hex32 = { type: "string", pattern: "^[0-9a-f]{32}$" } as const;
const object = (required: string[], properties: Record<string, unknown>) =>
  ({ type: "object", additionalProperties: false, required, properties }) as const;

/** The divergence routes' bodies (what is not a shape, e.g. an index beyond its level, is filtered by the handler). */
const schemas = {
  tree: object(["level", "indexes"], {
    level: { type: "integer", minimum: 0, maximum: treeLevels - 1 },
    indexes: ints(0, 4096),
  }),
  buckets: object(["buckets"], { buckets: ints(0, 1024) }),
  wal: object(["lsns"], { lsns: ints(1, 1000) }),
  export: object([], {
    origin: regionNameSchema,
    after: object(["bucket", "key"], {
      bucket: { type: "integer", minimum: 0 },
      key: { type: "string", maxLength: keyBytesMax },
    }),
    limit: { type: "integer", minimum: 1 },
    covered: {
      type: "array",
      maxItems: 4096,
      items: object(["origin", "incarnation", "lsn"], {
        origin: regionNameSchema,
        incarnation: hex32,
        lsn: { type: "integer", minimum: 0 },
      }),
    },
  }),
  stream: object(["origin", "incarnation", "fromLsn", "toLsn", "limit"], {
    origin: regionNameSchema,
    incarnation: hex32,
    fromLsn: { type: "integer", minimum: 1 },
    toLsn: { type: "integer", minimum: 1 },
    limit: { type: "integer", minimum: 1 },
  }),
};

const peerTag = { tags: ["peer"], security: [{ signed: [] as string[] }] };

export function peerRoutes(region: Region): FastifyPluginAsync {
  const c = region.config;
  return async (app) => {
    app.addContentTypeParser(
      "application/octet-stream",
      { parseAs: "buffer", bodyLimit: c.reader.bodyBytesMax },
      (_req, body, done) => done(null, body),
    );
    app.post(
      "/v1/replicate",
      {
        schema: {
          ...peerTag,
          summary:
            "one replication batch (binary, docs/FORMAT.md; Content-Encoding gzip if the answers' Accept-Encoding names it); answered after a synced commit",
          consumes: ["application/octet-stream"],
        },
      },
      async (req, reply) => {
        // Which codings a batch may come in (RFC 7694): shippers set to compress wait for it.
        void reply.header("accept-encoding", codingsRead);
        if (!Buffer.isBuffer(req.body))
          return reply
            .status(415)
            .send({ code: "unsupported_media_type", message: "expected an application/octet-stream batch" });
        // The signed digest was checked on the bytes as sent (gate.ts); decoded only now.
        const coding = req.headers["content-encoding"];
        const decoded = decodeBody(req.body, coding, c.reader.bodyBytesMax);
        if (!decoded.ok) {
          region.metrics.refusals.inc({ reason: decoded.code });
          return reply.status(decoded.status).send({ code: decoded.code, message: decoded.message });
        }
        const answer = await region.reader.replicate({
          sender: req.crrPeer!.region,
          headers: req.headers,
          body: decoded.body,
        });
        return reply.status(answer.status).send(answer.body);
      },
    );
    void app.register(divergenceRoutes(region));
  };
}

function divergenceRoutes(region: Region): FastifyPluginAsync {
  const c = region.config;
  const takes = (asker: string, tenant: string) => region.policy.regionTakes(asker, tenant);
  return async (peer) => {
    // The gate checked the bytes against the signed digest as they arrived; bodies are
    // parsed here, then validated by each route's schema.
    peer.addContentTypeParser(
      "application/json",
      { parseAs: "string", bodyLimit: c.reader.bodyBytesMax },
      (_req, body, done) => {
        try {
          done(null, JSON.parse(body as string) as unknown);
        } catch {
          done(Object.assign(new Error("expected a JSON body"), { statusCode: 400 }), undefined);
        }
      },
    );
    peer.post<{ Body: { level: number; indexes: number[] } }>(
      "/v1/divergence/tree",
      { schema: { ...peerTag, body: schemas.tree } },
      async (req) => {
        region.refuseWhileCatchingUp();
        const { level } = req.body;
        const tree = await region.store.digestTree();
        const indexes = req.body.indexes.filter((i) => i < treeFanout ** level);
        return {
          region: region.name,
          level,
          digests: indexes.map((i) => nodeDigest(tree, level, i).toString("hex")),
        };
      },
    );
    peer.post<{ Body: { buckets: number[] } }>(
      "/v1/divergence/buckets",
      { schema: { ...peerTag, body: schemas.buckets } },
      async (req) => {
        region.refuseWhileCatchingUp();
        const all = await region.store.bucketVersions(req.body.buckets.filter((b) => b < bucketCount));
        // Winners by key: those of a tenant kept from the asker are left out, their tenants named
        // (the asker's detector then does not take them for missing here).
        const { sent, withheldTenants: tenants } = forAsker(all, req.crrPeer!.region, takes);
        return {
          region: region.name,
          boot: region.boot,
          storeId: await region.storeId(),
          versions: sent,
          ...(tenants.length > 0 ? { withheldTenants: tenants } : {}),
        };
      },
    );
    peer.post<{ Body: { lsns: number[] } }>(
      "/v1/divergence/wal",
      { schema: { ...peerTag, body: schemas.wal } },
      async (req) => {
        const all = await region.walRecords(req.body.lsns);
        const { sent, withheld } = forAsker(all, req.crrPeer!.region, takes);
        return {
          region: region.name,
          incarnation: region.wal.incarnation,
          records: sent,
          ...(withheld.length > 0 ? { withheld } : {}),
        };
      },
    );
    peer.post<{ Body: Omit<ExportQuery, "limit"> & { limit?: number } }>(
      "/v1/divergence/export",
      { schema: { ...peerTag, body: schemas.export } },
      async (req) => {
        region.refuseWhileCatchingUp();
        const page = await region.store.exportPage({
          origin: req.body.origin,
          after: req.body.after,
          limit: Math.min(5000, req.body.limit ?? 1000),
          covered: req.body.covered,
        });
        // Winners by key, not a stream: the ones kept from the asker are left out (the page may
        // then be short with `next` set, as with `covered`), their tenants named.
        const { sent, withheldTenants: tenants } = forAsker(page.versions, req.crrPeer!.region, takes);
        return { ...page, versions: sent, ...(tenants.length > 0 ? { withheldTenants: tenants } : {}) };
      },
    );
    // One origin stream by LSN, winners and conflict losers, each with whether it is intact
    // (a copy changed outside the engine is not evidence): what recovery, bootstrap and
    // rebuild copy back. `next` continues a full page.
    peer.post<{
      Body: { origin: string; incarnation: string; fromLsn: number; toLsn: number; limit: number };
    }>("/v1/divergence/stream", { schema: { ...peerTag, body: schemas.stream } }, async (req) => {
      const q = { ...req.body, limit: Math.min(5000, req.body.limit) };
      const versions = await region.store.streamVersions(
        q.origin,
        q.incarnation,
        q.fromLsn,
        q.toLsn,
        q.limit,
      );
      const last = versions.at(-1)?.lsn;
      const { sent, withheld } = forAsker(versions, req.crrPeer!.region, takes);
      return {
        region: region.name,
        versions: sent,
        ...(withheld.length > 0 ? { withheld } : {}),
        next: versions.length === q.limit && last !== undefined && last < q.toLsn ? last + 1 : undefined,
      };
    });

    peer.post<{ Body: { versions: WireVersion[] } }>(
      "/v1/divergence/repair",
      { schema: { ...peerTag, body: repairBodySchema } },
      async (req) => ({
        region: region.name,
        changed: await region.repairFromPeer(req.body.versions.map(fromWire), req.crrPeer!.region),
      }),
    );
  };
}
