/**
 * What every request passes before a handler, in order:
 *
 * 1. A body deadline (`server.bodyTimeoutMs`): a body still arriving after it cuts the
 *    connection (a client trickling bytes holds nothing for long).
 * 2. A signed request is verified from its headers, before its body is read (sender key,
 *    destination, window, replay floor, nonce); a bad one is refused (401/403) at once. The
 *    peer routes (`/v1/replicate`, `/v1/divergence/*`) refuse unsigned requests the same way,
 *    so an unauthenticated client never gets the peer body limit.
 * 3. Authenticated peer requests served at once are bounded (`server.peerRequestsMax`). One
 *    beyond it waits for a slot, its body unread (Node stops reading a connection whose
 *    request is not consumed, so a waiting request holds little memory), within its body
 *    deadline; only more waiting requests than `server.connectionsMax` get 503 busy. Refusing
 *    at once broke a shipper's whole window of pipelined batches, over and over: with two
 *    peers each sending 64 batches ahead, a node answered little but "busy".
 * 4. The body of a signed request is hashed as it arrives and must match the signed
 *    Content-Digest (400 bad_digest).
 * 5. The answer to a signed request is signed back, bound to the request's nonce: an
 *    acknowledgement (or any answer) nobody else can forge or replay.
 */
import { createHash } from "node:crypto";
import { Transform } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  headerBoot,
  headerIncarnation,
  headerSignature,
  signAnswer,
  verifyContentDigest,
  verifyDigestHash,
} from "../../protocol/index.js";
import type { Timer } from "../../runtime/index.js";
import type { Region } from "../region.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The authenticated sender of a signed request. */
    crrPeer?: { region: string; nonce: string };
    /** sha-256 of the body as it arrived (signed requests only). */
    crrBodyHash?: () => Buffer;
  }
}

const peerRoute = /^\/v1\/(replicate|divergence\/)/;

/**
 * Refuse before the body was read: the connection is closed after the answer (kept open,
 * Node would read and discard whatever body the client still trickles in).
 */
function refuse(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  reply.raw.once("finish", () => {
    const socket = reply.request.raw.socket as { destroy?: () => void } | undefined;
    if (typeof socket?.destroy === "function") socket.destroy();
  });
  return reply.status(status).header("connection", "close").send({ code, message });
}

/** Install the gate on the root instance (before any route plugin). */
export function installGate(app: FastifyInstance, region: Region): void {
  const c = region.config.server;
  let peerActive = 0;
  /** What a request holds until it ends: its body deadline, its peer slot, or its place in the queue. */
  interface Held {
    deadline: Timer;
    slot: boolean;
    /** Set while it waits for a slot: hands it the slot. */
    wake?: () => void;
    /** Its handler runs: the slot is given back when it has answered, not before. */
    handling?: boolean;
  }
  const held = new WeakMap<FastifyRequest, Held>();
  /** Peer requests waiting for a slot, oldest first (one that ends while waiting leaves the queue). */
  const waiting: Held[] = [];
  const shown = () => {
    region.metrics.peerRequests.set({ state: "active" }, peerActive);
    region.metrics.peerRequests.set({ state: "waiting" }, waiting.length);
  };
  shown();
  const handOver = () => {
    const next = waiting.shift();
    if (next) next.wake!();
    else peerActive--;
    shown();
  };
  /**
   * A slot is given back once its handler has answered (onSend), or once the request ended
   * before its handler ran (its response's close, an abort, its body deadline). Given back
   * only at onResponse, pipelined requests queued behind an unanswered one never saw it once
   * the shipper gave up on its connection: under load all slots leaked and the node applied
   * no batch again (found by the PostgreSQL benchmark). Given back at the close while the
   * handler ran, more handlers ran than server.peerRequestsMax (found by review).
   */
  const release = (req: FastifyRequest) => {
    const h = held.get(req);
    if (!h) return;
    held.delete(req);
    h.deadline.cancel();
    if (h.slot) handOver();
    else if (h.wake) {
      waiting.splice(waiting.indexOf(h), 1);
      shown();
    }
  };
  /** The request ended from outside (its connection closed): release it unless its handler runs. */
  const ended = (req: FastifyRequest) => {
    if (!held.get(req)?.handling) release(req);
  };
  /** A slot for `req`: at once, or once a request ahead of it ends (false: too many wait already). */
  const slot = async (h: Held): Promise<boolean> => {
    if (peerActive < c.peerRequestsMax) {
      peerActive++;
      h.slot = true;
      shown();
      return true;
    }
    if (waiting.length >= c.connectionsMax) return false;
    await new Promise<void>((resolve) => {
      h.wake = () => {
        h.wake = undefined;
        h.slot = true;
        resolve();
      };
      waiting.push(h);
      shown();
    });
    return true;
  };
  app.addHook("onResponse", async (req) => release(req));
  app.addHook("onRequestAbort", async (req) => ended(req));
  app.addHook("preHandler", async (req) => {
    const h = held.get(req);
    if (h) h.handling = true;
  });
  // The handler has answered (or failed): its slot is free, whether or not the answer can
  // still be written.
  app.addHook("onSend", async (req, _reply, payload) => {
    release(req);
    return payload;
  });
  app.addHook("onRequest", async (req, reply) => {
    const h: Held = {
      deadline: region.runtime.after(c.bodyTimeoutMs, () => {
        region.metrics.refusals.inc({ reason: "body_timeout" });
        region.log.warn(
          { url: req.url, from: req.crrPeer?.region ?? req.ip, bodyTimeoutMs: c.bodyTimeoutMs },
          "cut a request whose body did not arrive in time",
        );
        req.raw.destroy();
        release(req);
      }),
      slot: false,
    };
    held.set(req, h);
    // A response whose connection closed before it finished (a shipper ended its window) may
    // never reach onResponse: its slot and deadline are released when the response closes.
    reply.raw.once("close", () => ended(req));
    if (req.headers[headerSignature] !== undefined) {
      const auth = region.verifier.verify(req.method, req.url, req.headers);
      if (!auth.ok) {
        region.metrics.refusals.inc({ reason: "unauthenticated" });
        return refuse(reply, auth.status, "unauthenticated", auth.reason);
      }
      try {
        await region.replayFloor.cover(auth.region, auth.timestampMs);
      } catch {
        return refuse(reply.header("retry-after", "1"), 503, "unavailable", "cannot record the replay floor");
      }
      req.crrPeer = { region: auth.region, nonce: auth.nonce };
      noteInstance(region, req, auth.timestampMs);
    } else if (peerRoute.test(req.url)) {
      region.metrics.refusals.inc({ reason: "unauthenticated" });
      return refuse(reply, 401, "unauthenticated", "missing signature");
    }
    // The request may have ended while the replay floor was written (a client that gave up,
    // its body deadline): its release found no slot to give back, so it must take none.
    if (held.get(req) !== h || req.raw.destroyed) return;
    if (req.crrPeer && peerRoute.test(req.url) && !(await slot(h)))
      return refuse(reply.header("retry-after", "1"), 503, "busy", "too many peer requests at once");
  });
  app.addHook("preParsing", async (req, _reply, payload) => {
    if (!req.crrPeer) return payload;
    const hash = createHash("sha256");
    let bytes = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        (counted as unknown as { receivedEncodedLength: number }).receivedEncodedLength = bytes;
        done(null, chunk);
      },
    });
    let digest: Buffer | undefined;
    req.crrBodyHash = () => (digest ??= hash.digest());
    return payload.pipe(counted);
  });
  app.addHook("preValidation", async (req, reply) => {
    held.get(req)?.deadline.cancel(); // the body is in
    if (!req.crrPeer) return;
    const given = req.headers["content-digest"] as string | undefined;
    const check = req.crrBodyHash
      ? verifyDigestHash(given, req.crrBodyHash())
      : verifyContentDigest(given, Buffer.alloc(0));
    if (check !== "ok")
      return refuse(reply, 400, "bad_digest", `Content-Digest ${check}: the body is not what was signed`);
  });
  app.addHook("onSend", async (req, reply, payload) => {
    if (!req.crrPeer || (payload !== null && typeof payload !== "string" && !Buffer.isBuffer(payload)))
      return payload;
    const body = payload ?? "";
    const headers = signAnswer({
      signer: region.credentials.signer,
      status: reply.statusCode,
      body,
      region: region.name,
      to: req.crrPeer.region,
      requestNonce: req.crrPeer.nonce,
    });
    for (const [k, v] of Object.entries(headers)) void reply.header(k, v);
    return payload;
  });
}

/** Note which instance of the sender is alive (its incarnation and boot, signed with the request, sent at `sentAtMs`). */
function noteInstance(region: Region, req: FastifyRequest, sentAtMs: number): void {
  const incarnation = req.headers[headerIncarnation];
  const boot = req.headers[headerBoot];
  if (typeof incarnation !== "string") return;
  const peer = req.crrPeer!.region;
  if (
    region.incarnations.note(
      peer,
      incarnation,
      typeof boot === "string" ? boot : "",
      region.nowMs(),
      sentAtMs,
    )
  )
    region.peerRestarted(peer);
}
