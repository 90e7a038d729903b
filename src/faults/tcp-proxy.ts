/**
 * A TCP proxy on loopback that the tests, the demo and the benchmark harness own, to put WAN
 * faults between regions: a black hole (stop forwarding without closing anything, as a real
 * partition does), latency with jitter, a bandwidth limit, loss (a dropped connection: the
 * request is lost and must be retried), connection resets, bit flips in forwarded bytes,
 * and a tap of every byte that crossed. Only ever listens on 127.0.0.1. Random choices come
 * from a seeded generator, so a run can be replayed.
 */
import net from "node:net";

export type ProxyMode = "forward" | "blackhole";

export interface LinkFaults {
  /** Added one-way delay per chunk. */
  latencyMs?: number;
  /** Uniform ± jitter around the latency (order is kept: a chunk never overtakes the one before). */
  jitterMs?: number;
  /** Forwarding rate limit, both directions each. */
  bandwidthBytesPerSecond?: number;
  /** Probability per chunk that the connection is dropped (the request in it is lost). */
  lossRate?: number;
  /** Probability per client-to-server chunk that one random bit is flipped. */
  bitFlipRate?: number;
}

export interface ProxyStats {
  connections: number;
  chunks: number;
  bytes: number;
  bitsFlipped: number;
  dropped: number;
  resets: number;
}

export interface TcpProxy {
  port: number;
  url: string;
  mode: ProxyMode;
  /** Stop forwarding (connections stay open, bytes wait) or resume. */
  setMode(mode: ProxyMode): void;
  setFaults(faults: LinkFaults): void;
  /** Hold every forwarded chunk this long, both ways (0: none). Order is kept. */
  setDelayMs(ms: number): void;
  /** Reset every open connection now (RST), as a middlebox or a restart would. */
  resetConnections(): void;
  /**
   * Forward new connections to this port from now on (a node restarted on another port);
   * 0: refuse them (the node is down). Open connections are reset.
   */
  setTarget(port: number): void;
  stats(): ProxyStats;
  /** Every byte sent client -> server while `tap` was on. */
  tapped(): Buffer;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  targetHost?: string;
  /** 0: no target yet; connections are refused until setTarget. */
  targetPort: number;
  /** Record client -> server bytes (for "what crossed the wire" checks). */
  tap?: boolean;
  faults?: LinkFaults;
  seed?: number;
}

/** mulberry32: small, seeded, good enough for fault injection. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function startTcpProxy(o: TcpProxyOptions): Promise<TcpProxy> {
  const host = o.targetHost ?? "127.0.0.1";
  const sockets = new Set<net.Socket>();
  const tapped: Buffer[] = [];
  const waiting: Array<() => void> = [];
  const random = seededRandom(o.seed ?? 1);
  const stats: ProxyStats = { connections: 0, chunks: 0, bytes: 0, bitsFlipped: 0, dropped: 0, resets: 0 };
  let mode: ProxyMode = "forward";
  let faults: LinkFaults = { ...o.faults };
  let targetPort = o.targetPort;

  /** Forward `from` to `to` with the faults; resolves (via the returned function) once every chunk taken was written. */
  const pipe = (from: net.Socket, to: net.Socket, upstream: boolean): (() => Promise<void>) => {
    // Chunks wait in order; each is written when its time comes.
    let lastDueMs = 0;
    let bandwidthFreeAtMs = 0;
    let queue = Promise.resolve();
    from.on("data", (input: Buffer) => {
      stats.chunks++;
      stats.bytes += input.length;
      if (upstream && o.tap) tapped.push(Buffer.from(input));
      if (faults.lossRate && random() < faults.lossRate) {
        stats.dropped++;
        from.destroy();
        to.destroy();
        return;
      }
      let chunk = input;
      if (upstream && faults.bitFlipRate && random() < faults.bitFlipRate) {
        chunk = Buffer.from(input);
        const bit = Math.floor(random() * chunk.length * 8);
        chunk[bit >> 3]! ^= 1 << (bit & 7);
        stats.bitsFlipped++;
      }
      const now = Date.now();
      const latency = faults.latencyMs ?? 0;
      const jitter = faults.jitterMs ?? 0;
      let due = now + Math.max(0, latency + (jitter ? (random() * 2 - 1) * jitter : 0));
      if (faults.bandwidthBytesPerSecond) {
        bandwidthFreeAtMs =
          Math.max(bandwidthFreeAtMs, now) + (chunk.length / faults.bandwidthBytesPerSecond) * 1000;
        due = Math.max(due, bandwidthFreeAtMs);
      }
      due = Math.max(due, lastDueMs);
      lastDueMs = due;
      if (due <= now) {
        if (!to.write(chunk)) from.pause();
        return;
      }
      queue = queue.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(
              () => {
                if (!to.destroyed) to.write(chunk);
                resolve();
              },
              Math.max(0, due - Date.now()),
            ),
          ),
      );
    });
    to.on("drain", () => {
      if (mode === "forward") from.resume();
    });
    from.on("end", () => void queue.then(() => to.end()));
    // Client side gone: drop the upstream. Upstream gone: the client still gets what arrived.
    from.on("error", () => (upstream ? to.destroy() : void queue.then(() => to.end())));
    return () => queue;
  };

  // No Nagle on either side: the latency is the one configured, not the kernel's coalescing
  // of small writes behind an unacknowledged one (up to a delayed ACK, ~40 ms, per exchange).
  const server = net.createServer({ noDelay: true }, (client) => {
    stats.connections++;
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => undefined);
    client.pause();
    const connect = () => {
      if (targetPort === 0) return client.resetAndDestroy();
      const upstream = net.connect({ host, port: targetPort, noDelay: true });
      sockets.add(upstream);
      client.on("close", () => upstream.destroy());
      pipe(client, upstream, true);
      const down = pipe(upstream, client, false);
      // A closing server (a 413, a crash) may close right after its answer: deliver the answer
      // first, then close the client's side, as the server's own socket would have.
      upstream.on("close", () => {
        sockets.delete(upstream);
        void down().then(() => client.end());
      });
      if (mode === "forward") client.resume();
      else upstream.pause();
    };
    // During a black hole a new connection is accepted but goes nowhere until the heal.
    if (mode === "forward") connect();
    else waiting.push(connect);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    setMode(next) {
      mode = next;
      for (const s of sockets) {
        if (next === "blackhole") s.pause();
        else s.resume();
      }
      if (next === "forward") for (const connect of waiting.splice(0)) connect();
    },
    setFaults(next) {
      faults = { ...next };
    },
    setDelayMs(ms) {
      faults = { ...faults, latencyMs: ms, jitterMs: 0 };
    },
    resetConnections() {
      stats.resets++;
      for (const s of sockets) reset(s);
    },
    setTarget(port) {
      targetPort = port;
      for (const s of sockets) reset(s);
    },
    stats: () => ({ ...stats }),
    tapped: () => Buffer.concat(tapped),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Reset a connection (RST). A socket whose graceful shutdown already started (end() was
 * called) is destroyed instead: a reset racing a pending shutdown request leaves the native
 * handle referenced, and the process then spins forever in its exit cleanup (seen with
 * Node 20: `crr demo` at 100% CPU after it finished; see libp2p/js-libp2p#3597).
 */
function reset(s: net.Socket): void {
  if (s.writableEnded) s.destroy();
  else s.resetAndDestroy();
}
