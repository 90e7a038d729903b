/**
 * Operations on this node: drain, undrain, verify, skip-gap, and the event stream the
 * benchmark harness times lag with. One guard for all of them; an admin is:
 * - a request with `Authorization: Bearer <auth.adminToken>`, or
 * - a request signed as this region itself (an operator holding its key, or in shared-secret
 *   mode the secret), verified by the gate like a peer request (other regions are not admins), or
 * - from loopback, only when `auth.loopbackAdmin` is true (off by default: a TCP forwarder on
 *   the host makes every caller loopback).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { Region } from "../region.js";

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function bearerMatches(token: string, header: string | undefined): boolean {
  if (!token || !header?.startsWith("Bearer ")) return false;
  return timingSafeEqual(sha256(header.slice("Bearer ".length).trim()), sha256(token));
}

function isLoopback(ip: string): boolean {
  return ip === "127.0.0.1" || ip === "::1" || ip === "::ffff:127.0.0.1";
}

export function isAdmin(region: Region, req: FastifyRequest): boolean {
  const a = region.config.auth;
  if (req.crrPeer) return req.crrPeer.region === region.name;
  if (bearerMatches(a.adminToken, req.headers.authorization)) return true;
  return a.loopbackAdmin && isLoopback(req.socket?.remoteAddress ?? "");
}

const adminRefusal =
  "admin routes need Authorization: Bearer <auth.adminToken>, or a request signed as this region";

export function adminRoutes(region: Region): FastifyPluginAsync {
  return async (app) => {
    app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
      if (!isAdmin(region, req))
        return reply.status(401).send({ code: "unauthenticated", message: adminRefusal });
    });
    const security: Array<Record<string, string[]>> = [{ admin: [] }, { signed: [] }];
    const adminTag = { tags: ["admin"], security };
    app.post(
      "/v1/admin/drain",
      { schema: { ...adminTag, summary: "refuse appends until undrained" } },
      async () => {
        region.drain();
        return region.status();
      },
    );
    app.post("/v1/admin/undrain", { schema: { ...adminTag, summary: "accept appends again" } }, async () => {
      region.undrain();
      return region.status();
    });
    app.post(
      "/v1/admin/verify",
      { schema: { ...adminTag, summary: "run the divergence check now" } },
      async () => region.verify({ fullScrub: true }),
    );
    app.post<{ Body: { peer: string; throughLsn: number } }>(
      "/v1/admin/skip-gap",
      {
        schema: {
          ...adminTag,
          summary: "let a peer skip LSNs of this region nobody holds (audited)",
          body: {
            type: "object",
            additionalProperties: false,
            required: ["peer", "throughLsn"],
            properties: {
              peer: { type: "string", minLength: 1 },
              throughLsn: { type: "integer", minimum: 1 },
            },
          },
        },
      },
      async (req) => {
        await region.skipGap(
          req.body.peer,
          req.body.throughLsn,
          req.crrPeer ? `${req.crrPeer.region}'s key` : `admin from ${req.socket.remoteAddress ?? "?"}`,
        );
        return region.status();
      },
    );
    const streams = eventStreams(region);
    app.addHook("preClose", async () => streams.close());
    app.get(
      "/v1/admin/events",
      { schema: { ...adminTag, summary: "server-sent events: acknowledgements and applied batches" } },
      (req, reply) => streams.open(req, reply),
    );
  };
}

/** Beyond this many bytes waiting to be sent, a stream's consumer is too slow and is dropped. */
const streamBacklogBytesMax = 1024 * 1024;

/**
 * Server-sent events: peer acknowledgements `{"peer","lsn","atMs"}` and batches applied here
 * `{"applied","incarnation","lsn","atMs"}`, timed on this node's clock. One listener per
 * source fans out to every open stream; at most `server.eventStreamsMax` streams (503
 * beyond), and a consumer that lets more than 1 MiB pile up is dropped.
 */
function eventStreams(region: Region) {
  const open = new Set<ServerResponse>();
  const broadcast = (line: string) => {
    for (const raw of open) {
      if (raw.writableLength > streamBacklogBytesMax) {
        region.log.warn({ backlogBytes: raw.writableLength }, "dropped a slow event-stream consumer");
        open.delete(raw);
        raw.destroy();
        continue;
      }
      raw.write(line);
    }
  };
  const offs = [...region.shippers.values()].map((s) => {
    const onAck = (lsn: number) =>
      broadcast(`data: {"peer":"${s.peer}","lsn":${lsn},"atMs":${region.nowMs()}}\n\n`);
    s.on("ack", onAck);
    return () => void s.off("ack", onAck);
  });
  const onApplied = (origin: string, incarnation: string, lsn: number) =>
    broadcast(
      `data: {"applied":"${origin}","incarnation":"${incarnation}","lsn":${lsn},"atMs":${region.nowMs()}}\n\n`,
    );
  region.events.on("applied", onApplied);
  offs.push(() => void region.events.off("applied", onApplied));
  return {
    open(_req: FastifyRequest, reply: FastifyReply): void {
      if (open.size >= region.config.server.eventStreamsMax) {
        void reply
          .status(503)
          .header("retry-after", "5")
          .send({
            code: "busy",
            message: `${open.size} event streams open already (server.eventStreamsMax)`,
          });
        return;
      }
      void reply.hijack();
      const raw = reply.raw;
      open.add(raw);
      raw.on("close", () => open.delete(raw));
      raw.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      raw.write(`: ${region.name}\n\n`);
    },
    /** Event streams never end by themselves: end them before the server waits for open requests. */
    close(): void {
      offs.forEach((off) => off());
      for (const r of open) r.end();
    },
  };
}
