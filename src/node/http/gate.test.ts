/**
 * The gate's peer slots over real HTTP: a request beyond `server.peerRequestsMax` waits for a
 * slot, body unread; one cut while it waits leaves the queue (it never takes a slot); what
 * operators see (`crr_peer_requests{state}`) is what the gate holds at every step.
 * The region is a stub with the few parts the gate reads; the signature check admits every
 * signed request (signing itself is tested in src/protocol).
 */
import net from "node:net";
import Fastify from "fastify";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { contentDigest, headerSignature } from "../../protocol/index.js";
import { realRuntime } from "../../runtime/index.js";
import { RegionMetrics } from "../metrics.js";
import type { Region } from "../region.js";
import { installGate } from "./gate.js";

async function gauge(metrics: RegionMetrics, state: string): Promise<number> {
  const m = await metrics.peerRequests.get();
  return m.values.find((v) => v.labels.state === state)?.value ?? 0;
}

async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const closing: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of closing.splice(0)) await c();
});

async function gated(
  server: { peerRequestsMax: number; connectionsMax: number; bodyTimeoutMs: number },
  cover: () => Promise<void> = async () => undefined,
) {
  const metrics = new RegionMetrics(() => undefined);
  const region = {
    name: "us-east-1",
    config: { server },
    metrics,
    runtime: realRuntime,
    nowMs: () => Date.now(),
    log: { warn: () => undefined },
    verifier: { verify: () => ({ ok: true, region: "eu-west-1", nonce: "n", timestampMs: Date.now() }) },
    replayFloor: { cover },
    incarnations: { note: () => undefined },
    credentials: { signer: { sign: () => "sig", keyId: "k", algorithm: "hmac-sha256" } },
  } as unknown as Region;
  const app = Fastify();
  installGate(app, region);
  const served: Array<() => void> = [];
  app.post("/v1/replicate", async () => {
    await new Promise<void>((resolve) => served.push(resolve));
    return { ok: true };
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  closing.push(() => app.close());
  const port = (app.server.address() as { port: number }).port;
  return { metrics, served, port, app };
}

function send(port: number, body: string) {
  return request(`http://127.0.0.1:${port}/v1/replicate`, {
    method: "POST",
    body,
    headers: { [headerSignature]: "x", "content-digest": contentDigest("x"), "content-type": "text/plain" },
  });
}

describe("peer slots at the gate", () => {
  it("a request beyond peerRequestsMax waits for a slot and is served when one frees; the gauge shows both", async () => {
    const { metrics, served, port } = await gated({
      peerRequestsMax: 1,
      connectionsMax: 8,
      bodyTimeoutMs: 10_000,
    });
    expect(await gauge(metrics, "active")).toBe(0);
    const first = send(port, "x");
    await until("the first request to be served", async () => served.length === 1);
    const second = send(port, "x");
    await until("the second to wait", async () => (await gauge(metrics, "waiting")) === 1);
    expect(await gauge(metrics, "active")).toBe(1);
    expect(served.length).toBe(1); // its handler has not run: no slot yet
    served[0]!();
    expect((await first).statusCode).toBe(200);
    await until("the second to be served", async () => served.length === 2);
    expect(await gauge(metrics, "waiting")).toBe(0);
    expect(await gauge(metrics, "active")).toBe(1);
    served[1]!();
    expect((await second).statusCode).toBe(200);
    await until("every slot to be free", async () => (await gauge(metrics, "active")) === 0);
  });

  it("a waiting request cut by its body deadline leaves the queue and never takes the slot", async () => {
    const { metrics, served, port } = await gated({
      peerRequestsMax: 1,
      connectionsMax: 8,
      bodyTimeoutMs: 300,
    });
    const first = send(port, "x");
    await until("the first request to be served", async () => served.length === 1);
    const cut = send(port, "x").catch((err: Error) => err); // waits, then its deadline cuts it
    await until("the second to wait", async () => (await gauge(metrics, "waiting")) === 1);
    expect(await cut).toBeInstanceOf(Error);
    await until("the cut request to leave the queue", async () => (await gauge(metrics, "waiting")) === 0);
    const third = send(port, "x");
    await until("the third to wait", async () => (await gauge(metrics, "waiting")) === 1);
    served[0]!();
    expect((await first).statusCode).toBe(200);
    await until("the third to be served", async () => served.length === 2);
    served[1]!();
    expect((await third).statusCode).toBe(200);
    await until("every slot to be free", async () => (await gauge(metrics, "active")) === 0);
    expect(await gauge(metrics, "waiting")).toBe(0);
  });

  it("beyond connectionsMax waiting, a peer request gets 503 busy at once", async () => {
    const { metrics, served, port } = await gated({
      peerRequestsMax: 1,
      connectionsMax: 1,
      bodyTimeoutMs: 10_000,
    });
    const first = send(port, "x");
    await until("the first request to be served", async () => served.length === 1);
    const second = send(port, "x");
    await until("the second to wait", async () => (await gauge(metrics, "waiting")) === 1);
    const third = await send(port, "x");
    expect(third.statusCode).toBe(503);
    expect(((await third.body.json()) as { code: string }).code).toBe("busy");
    served[0]!();
    await first;
    await until("the second to be served", async () => served.length === 2);
    served[1]!();
    expect((await second).statusCode).toBe(200);
  });

  it("a request that ends while its replay floor is written takes no slot (found by review: the slot leaked)", async () => {
    let floorWritten!: () => void;
    let slow = true;
    const cover = () =>
      slow ? ((slow = false), new Promise<void>((r) => (floorWritten = r))) : Promise.resolve();
    const { metrics, served, port, app } = await gated(
      { peerRequestsMax: 1, connectionsMax: 8, bodyTimeoutMs: 10_000 },
      cover,
    );
    const ac = new AbortController();
    const first = request(`http://127.0.0.1:${port}/v1/replicate`, {
      method: "POST",
      body: "x",
      signal: ac.signal,
      headers: { [headerSignature]: "x", "content-digest": contentDigest("x"), "content-type": "text/plain" },
    }).catch((err: Error) => err);
    await until("the floor write to start", async () => floorWritten !== undefined);
    ac.abort();
    expect(await first).toBeInstanceOf(Error);
    await until(
      "the server to see the connection gone",
      async () => new Promise<boolean>((r) => app.server.getConnections((_e, n) => r(n === 0))),
    );
    floorWritten();
    const next = send(port, "x");
    await until("the next request to be served", async () => served.length === 1);
    expect(await gauge(metrics, "active")).toBe(1);
    served[0]!();
    expect((await next).statusCode).toBe(200);
    await until("every slot to be free", async () => (await gauge(metrics, "active")) === 0);
  });
  it("pipelined requests whose connection closes before they are answered give their slots back (found by the PostgreSQL benchmark: 64 slots leaked and the peer stalled)", async () => {
    const { metrics, served, port, app } = await gated({
      peerRequestsMax: 8,
      connectionsMax: 8,
      bodyTimeoutMs: 10_000,
    });
    const socket = net.connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const one = `POST /v1/replicate HTTP/1.1\r\nhost: x\r\n${headerSignature}: x\r\ncontent-digest: ${contentDigest("x")}\r\ncontent-type: text/plain\r\ncontent-length: 1\r\n\r\nx`;
    socket.write(one.repeat(3));
    await until("the first pipelined request to be served", async () => served.length >= 1);
    socket.destroy(); // the shipper gave up on its window
    await until(
      "the server to see the connection gone",
      async () => new Promise<boolean>((r) => app.server.getConnections((_e, n) => r(n === 0))),
    );
    for (const answer of served) answer();
    await until("every slot to be free", async () => (await gauge(metrics, "active")) === 0);
    expect(await gauge(metrics, "waiting")).toBe(0);
  });
  it("a request whose connection closes while its handler runs keeps its slot until the handler answered (found by review: 10 handlers ran with a bound of 2)", async () => {
    const { metrics, served, port, app } = await gated({
      peerRequestsMax: 2,
      connectionsMax: 64,
      bodyTimeoutMs: 10_000,
    });
    const one = `POST /v1/replicate HTTP/1.1\r\nhost: x\r\n${headerSignature}: x\r\ncontent-digest: ${contentDigest("x")}\r\ncontent-type: text/plain\r\ncontent-length: 1\r\n\r\nx`;
    for (let round = 0; round < 3; round++) {
      const socket = net.connect(port, "127.0.0.1");
      await new Promise((r) => socket.once("connect", r));
      socket.write(one.repeat(2));
      if (round === 0) await until("two handlers to run", async () => served.length === 2);
      socket.destroy(); // the shipper's window timed out; its handlers still run
      await until(
        "the server to see the connection gone",
        async () => new Promise<boolean>((r) => app.server.getConnections((_e, n) => r(n === 0))),
      );
    }
    expect(served.length).toBe(2); // no handler beyond the bound started
    expect(await gauge(metrics, "active")).toBe(2);
    for (const answer of served.splice(0)) answer();
    await until("every slot to be free", async () => (await gauge(metrics, "active")) === 0);
  });
  it("a pipelined request cut mid-body by its connection's close gives its slot back at once, not at its body deadline", async () => {
    const { metrics, served, port, app } = await gated({
      peerRequestsMax: 4,
      connectionsMax: 8,
      bodyTimeoutMs: 60_000,
    });
    const head = (length: number) =>
      `POST /v1/replicate HTTP/1.1\r\nhost: x\r\n${headerSignature}: x\r\ncontent-digest: ${contentDigest("x")}\r\ncontent-type: text/plain\r\ncontent-length: ${length}\r\n\r\n`;
    const socket = net.connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    socket.write(`${head(1)}x${head(1000)}partial body`);
    await until("the first to be served", async () => served.length === 1);
    await until("the second to hold a slot", async () => (await gauge(metrics, "active")) === 2);
    socket.destroy();
    await until(
      "the server to see the connection gone",
      async () => new Promise<boolean>((r) => app.server.getConnections((_e, n) => r(n === 0))),
    );
    served[0]!();
    await until("every slot to be free", async () => (await gauge(metrics, "active")) === 0);
  });
});
