/**
 * The fault proxy's faults are really applied: latency and bandwidth are seen (as lower
 * bounds, never as timings to meet), loss and resets cut connections, a flipped bit arrives
 * flipped, and crr refuses a flipped batch and retries until everything arrives.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startTcpProxy, type TcpProxy } from "../../src/faults/index.js";
import { Cluster, appendMany, status, waitConverged } from "../support/cluster.js";
import { waitFor } from "../support/tmp.js";

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** A server that records what it receives and echoes it back. */
async function echoServer(): Promise<{ port: number; received: () => Buffer }> {
  const got: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on("data", (d) => {
      got.push(Buffer.from(d));
      s.write(d);
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(() => new Promise((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, received: () => Buffer.concat(got) };
}

async function proxyTo(
  port: number,
  o: Parameters<typeof startTcpProxy>[0] extends infer T ? Partial<T> : never,
): Promise<TcpProxy> {
  const p = await startTcpProxy({ targetPort: port, ...o });
  closers.push(() => p.close());
  return p;
}

function exchange(port: number, payload: Buffer): Promise<{ ms: number; echoed: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    const s = net.connect({ host: "127.0.0.1", port }, () => s.write(payload));
    s.on("data", (d) => {
      chunks.push(d);
      if (Buffer.concat(chunks).length >= payload.length) {
        s.end();
        resolve({ ms: performance.now() - started, echoed: Buffer.concat(chunks) });
      }
    });
    s.on("error", (err: NodeJS.ErrnoException) =>
      resolve({
        ms: performance.now() - started,
        echoed: Buffer.concat(chunks),
        error: err.code ?? err.message,
      }),
    );
    s.on("close", () =>
      resolve({ ms: performance.now() - started, echoed: Buffer.concat(chunks), error: "closed" }),
    );
  });
}

describe("fault proxy", () => {
  it("adds latency (each way) and limits bandwidth", async () => {
    const echo = await echoServer();
    const slow = await proxyTo(echo.port, { faults: { latencyMs: 150, jitterMs: 20 } });
    const r = await exchange(slow.port, Buffer.from("ping"));
    expect(r.echoed.toString()).toBe("ping");
    expect(r.ms).toBeGreaterThanOrEqual(2 * 130);
    const narrow = await proxyTo(echo.port, { faults: { bandwidthBytesPerSecond: 100_000 } });
    const big = Buffer.alloc(150_000, 7);
    const b = await exchange(narrow.port, big);
    expect(b.echoed.equals(big)).toBe(true);
    expect(b.ms).toBeGreaterThanOrEqual(1400); // 150 KB at 100 KB/s, at least once each way
  });

  it("drops connections (loss), resets them, and flips bits", async () => {
    const echo = await echoServer();
    const lossy = await proxyTo(echo.port, { faults: { lossRate: 1 } });
    expect((await exchange(lossy.port, Buffer.from("lost"))).error).toBeDefined();
    expect(lossy.stats().dropped).toBeGreaterThan(0);

    const flipping = await proxyTo(echo.port, { faults: { bitFlipRate: 1 }, seed: 7 });
    const sent = Buffer.from("0123456789abcdef");
    const r = await exchange(flipping.port, sent);
    const seen = echo.received();
    let bits = 0;
    for (let i = 0; i < sent.length; i++) for (let x = sent[i]! ^ seen[i]!; x; x >>= 1) bits += x & 1;
    expect(bits).toBe(1);
    expect(r.echoed.equals(sent)).toBe(false);

    const plain = await proxyTo(echo.port, {});
    const pending = new Promise<string>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port: plain.port }, () => {
        s.write("x");
        s.once("data", () => plain.resetConnections());
      });
      s.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
      s.on("close", () => resolve("closed"));
    });
    expect(["ECONNRESET", "closed"]).toContain(await pending);
    expect(plain.stats().resets).toBe(1);
  });

  it("crr refuses batches with flipped bits and retries until every record arrives", async () => {
    const proxy = await proxyTo(0, { faults: { bitFlipRate: 0.3 }, seed: 11 });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      route: (from, to) => (from === "us-east-1" && to === "eu-west-1" ? proxy : undefined),
      common: { shipper: { batchRecordsMax: 20, retryDelayMsMax: 100 } },
    });
    closers.push(() => cluster.stop());
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await appendMany(a, "flip", 400);
    const [, sb] = await waitConverged([a, b], 60_000);
    expect(sb!.store.records).toBe(400);
    expect(proxy.stats().bitsFlipped).toBeGreaterThan(0);
    // The receiver refused what arrived damaged (digest, batch or signature), or the request never parsed.
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    const refused = metrics
      .split("\n")
      .filter((l) => l.startsWith("crr_reader_refusals_total{"))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
    const errors = (await (await fetch(`${a.url}/metrics`)).text())
      .split("\n")
      .filter((l) => l.startsWith("crr_ship_errors_total{"))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
    expect(refused + errors).toBeGreaterThan(0);
    await waitFor(async () => (await status(a)).peers[0]!.behindRecords === 0 || undefined, "caught up");
  });
});
