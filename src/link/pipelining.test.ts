/**
 * The batch lane pipelines: a window of batches is on the wire before the first answer
 * comes back, so a long round trip is paid once per window, not once per batch. undici
 * sends the next request only after the previous answer's headers unless a request says
 * its answer comes quickly (`blocking: false`); without it a window of 4 cost 4 round trips
 * (measured: lag p50 695 ms instead of 178 ms on an 80 ms link). A raw TCP server holds its
 * answers back and counts the requests that arrived before the first one left.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { sharedSecret } from "../protocol/index.js";
import { HttpPeerLink } from "./http-link.js";

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** Answers nothing until `window` requests arrived (or 2 s passed), then 200 to each; reports how many it had by then. */
async function holdingServer(window: number) {
  let seenBeforeFirstAnswer = 0;
  const server = net.createServer((socket) => {
    let text = "";
    let answered = false;
    const answerAll = () => {
      if (answered) return;
      answered = true;
      seenBeforeFirstAnswer = text.split("POST /v1/replicate").length - 1;
      const reply =
        'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"watermark":1}';
      for (let i = 0; i < seenBeforeFirstAnswer; i++) socket.write(reply);
      socket.end();
    };
    const timer = setTimeout(answerAll, 2000);
    socket.on("data", (d) => {
      text += d.toString("latin1");
      if (text.split("POST /v1/replicate").length - 1 >= window) {
        clearTimeout(timer);
        answerAll();
      }
    });
    socket.on("error", () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, seen: () => seenBeforeFirstAnswer };
}

describe("the batch lane", () => {
  it("has the whole window on the wire before the first answer", async () => {
    const server = await holdingServer(4);
    const link = new HttpPeerLink({
      region: "us-east-1",
      signer: sharedSecret("pipelining-test-secret-0123456789", ["us-east-1", "eu-west-1"]).signer,
      keys: sharedSecret("pipelining-test-secret-0123456789", ["us-east-1", "eu-west-1"]).ring,
      peer: "eu-west-1",
      url: `http://127.0.0.1:${server.port}`,
      connectTimeoutMs: 2000,
      requestTimeoutMs: 10_000,
      inflightBatchesMax: 4,
    });
    // (the answers are not signed by a real peer: each call fails, only what arrived counts)
    await Promise.allSettled([1, 2, 3, 4].map(() => link.replicate(Buffer.alloc(100))));
    await link.close();
    expect(server.seen()).toBe(4);
  });
});
