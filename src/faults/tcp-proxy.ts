/**
 * A TCP proxy on loopback that the tests and the benchmark harness own, to put faults between
 * regions: a black hole (stop forwarding without closing anything, as a real partition does),
 * added latency, and a tap of every byte that crossed. Only ever listens on 127.0.0.1.
 */
import net from "node:net";

export type ProxyMode = "forward" | "blackhole";

export interface TcpProxy {
  port: number;
  url: string;
  mode: ProxyMode;
  /** Stop forwarding (connections stay open, bytes wait) or resume. */
  setMode(mode: ProxyMode): void;
  /** Hold every forwarded chunk this long, both ways (0: none). Order is kept. */
  setDelayMs(ms: number): void;
  /** Every byte sent client -> server while `tap` was on. */
  tapped(): Buffer;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  targetHost?: string;
  targetPort: number;
  /** Record client -> server bytes (for "what crossed the wire" checks). */
  tap?: boolean;
}

export async function startTcpProxy(o: TcpProxyOptions): Promise<TcpProxy> {
  const host = o.targetHost ?? "127.0.0.1";
  const sockets = new Set<net.Socket>();
  const tapped: Buffer[] = [];
  const waiting: Array<() => void> = [];
  let mode: ProxyMode = "forward";
  let delayMs = 0;

  const pipe = (from: net.Socket, to: net.Socket, tap: boolean) => {
    // With a delay, chunks wait in order; each is written when its time comes.
    let last = Promise.resolve();
    from.on("data", (chunk: Buffer) => {
      if (tap) tapped.push(Buffer.from(chunk));
      if (delayMs === 0) {
        if (!to.write(chunk)) from.pause();
        return;
      }
      const due = Date.now() + delayMs;
      last = last.then(
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
    from.on("end", () => to.end());
    from.on("error", () => to.destroy());
  };

  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.pause();
    const connect = () => {
      const upstream = net.connect({ host, port: o.targetPort });
      sockets.add(upstream);
      upstream.on("close", () => {
        sockets.delete(upstream);
        client.destroy();
      });
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      pipe(client, upstream, o.tap ?? false);
      pipe(upstream, client, false);
      if (mode === "forward") client.resume();
      else upstream.pause();
    };
    // During a black hole a new connection is accepted but goes nowhere until the heal.
    if (mode === "forward") connect();
    else waiting.push(connect);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;

  const proxy: TcpProxy = {
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
    setDelayMs(ms) {
      delayMs = ms;
    },
    tapped: () => Buffer.concat(tapped),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
