/**
 * Operations on this node: drain, undrain, verify, skip-gap, and the event stream the
 * benchmark harness times lag with. One guard for all of them: from loopback, or signed with
 * the deployment secret like a peer request.
 */
import type { ServerResponse } from "node:http";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { Region } from "../region.js";
import { verifySigned } from "./signed.js";

function isAdmin(region: Region, req: FastifyRequest): boolean {
  const ip = req.socket.remoteAddress ?? "";
  if (ip === "127.0.0.1" || ip === "::1" || ip === "::ffff:127.0.0.1") return true;
  return verifySigned(region, req).ok;
}

export function adminRoutes(region: Region): FastifyPluginAsync {
  return async (app) => {
    app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
      if (!isAdmin(region, req))
        return reply
          .status(401)
          .send({ code: "unauthenticated", message: "admin routes need loopback or a signed request" });
    });
    app.post("/v1/admin/drain", async () => {
      region.drain();
      return region.status();
    });
    app.post("/v1/admin/undrain", async () => {
      region.undrain();
      return region.status();
    });
    app.post("/v1/admin/verify", async () => region.verify({ fullScrub: true }));
    app.post<{ Body: { peer: string; throughLsn: number } }>(
      "/v1/admin/skip-gap",
      {
        schema: {
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
          `admin request from ${req.socket.remoteAddress ?? "?"}`,
        );
        return region.status();
      },
    );
    // Event streams never end by themselves: end them before the server waits for open requests.
    const open = new Set<ServerResponse>();
    app.addHook("preClose", async () => {
      for (const r of open) r.end();
    });
    app.get("/v1/admin/events", (req, reply) => eventStream(region, open, req, reply));
  };
}

/**
 * Server-sent events: peer acknowledgements `{"peer","lsn","atMs"}` and batches applied here
 * `{"applied","incarnation","lsn","atMs"}`, timed on this node's clock.
 */
function eventStream(
  region: Region,
  open: Set<ServerResponse>,
  req: FastifyRequest,
  reply: FastifyReply,
): void {
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
  const listeners: Array<() => void> = [...region.shippers.values()].map((s) => {
    const onAck = (lsn: number) =>
      raw.write(`data: {"peer":"${s.peer}","lsn":${lsn},"atMs":${region.nowMs()}}\n\n`);
    s.on("ack", onAck);
    return () => void s.off("ack", onAck);
  });
  const onApplied = (origin: string, incarnation: string, lsn: number) =>
    raw.write(
      `data: {"applied":"${origin}","incarnation":"${incarnation}","lsn":${lsn},"atMs":${region.nowMs()}}\n\n`,
    );
  region.events.on("applied", onApplied);
  listeners.push(() => void region.events.off("applied", onApplied));
  req.raw.on("close", () => listeners.forEach((off) => off()));
}
