/**
 * Issue "Trust between regions", items 5, 6 and 7, against a real `crr serve`:
 * - unauthenticated bodies are refused from their headers, before a byte of body is read,
 *   and the connection does not stay; a signed body that trickles is cut at its deadline;
 * - the repair route validates its input, enforces the tenant policy and accepts only keys
 *   this region's detector finds different; a refused repair changes nothing;
 * - event streams are capped.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sharedSecret, signRequest } from "../../src/protocol/index.js";
import { Cluster, api, append, status, testSecret, type TestNode } from "../support/cluster.js";
import { waitFor } from "../support/tmp.js";

let cluster: Cluster;
let node: TestNode;
const shared = sharedSecret(testSecret, ["us-east-1", "eu-west-1", "us-west-2"]).signer;

beforeAll(async () => {
  cluster = await Cluster.start({
    shared: true,
    regions: ["eu-west-1"],
    common: {
      regions: { "us-east-1": { url: "http://127.0.0.1:9" }, "us-west-2": { url: "http://127.0.0.1:9" } },
      crr: {
        enabled: true,
        replicationMode: "selective",
        policies: [
          { tenantID: "tenant-a", targetRegions: ["eu-west-1", "us-east-1"] },
          { tenantID: "tenant-us", targetRegions: ["us-east-1", "us-west-2"] },
        ],
      },
      server: { bodyTimeoutMs: 1500, eventStreamsMax: 2 },
      recovery: { startAlone: true },
    },
  });
  node = cluster.node("eu-west-1");
});
afterAll(() => cluster.stop());

const port = () => node.listenPort!;

/** Raw request head; resolves with what the server wrote before closing, and how long the socket lived. */
function rawRequest(head: string, trickle: boolean): Promise<{ answer: string; aliveMs: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect(port(), "127.0.0.1");
    let answer = "";
    let timer: NodeJS.Timeout | undefined;
    s.on("connect", () => {
      s.write(head);
      if (trickle) timer = setInterval(() => s.write("x"), 100);
    });
    s.on("data", (d) => (answer += d.toString()));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearInterval(timer);
      resolve({ answer, aliveMs: Date.now() - started });
    });
  });
}

function signedHead(path: string, contentLength: number): string {
  const h = signRequest({
    signer: shared,
    method: "POST",
    path,
    body: "will not match: the body trickles",
    region: "us-east-1",
    to: "eu-west-1",
    nowMs: Date.now(),
    nonce: randomBytes(16).toString("hex"),
  });
  const lines = Object.entries(h).map(([k, v]) => `${k}: ${v}`);
  return `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${contentLength}\r\n${lines.join("\r\n")}\r\n\r\n`;
}

describe("bodies", () => {
  it("thirty unsigned 7.5 MB uploads to /v1/replicate are refused from their headers and none stays", async () => {
    const rss = async (): Promise<number> =>
      Number(
        /^crr_process_resident_memory_bytes (\d+)/m.exec(
          await (await fetch(`${node.url}/metrics`)).text(),
        )![1],
      );
    const before = await rss();
    const head = `POST /v1/replicate HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${7.5 * 1024 * 1024}\r\n\r\n`;
    const results = await Promise.all(Array.from({ length: 30 }, () => rawRequest(head, true)));
    for (const r of results) {
      expect(r.answer).toMatch(/^HTTP\/1.1 401/);
      expect(r.answer).toContain('"code":"unauthenticated"');
      expect(r.aliveMs).toBeLessThan(10_000);
    }
    expect((await rss()) - before).toBeLessThan(40 * 1024 * 1024);
  });

  it("a signed body that trickles is cut at its deadline (server.bodyTimeoutMs)", async () => {
    const r = await rawRequest(signedHead("/v1/replicate", 1024 * 1024), true);
    expect(r.aliveMs, cluster.logs("eu-west-1").slice(-3000)).toBeLessThan(8000);
    expect(r.answer).not.toMatch(/^HTTP\/1.1 200/);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toMatch(/crr_reader_refusals_total\{reason="body_timeout"\} [1-9]/);
  });
});

describe("the repair route", () => {
  const repair = (body: unknown) => {
    const text = JSON.stringify(body);
    return api(`${node.url}/v1/divergence/repair`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...signRequest({
          signer: shared,
          method: "POST",
          path: "/v1/divergence/repair",
          body: text,
          region: "us-east-1",
          to: "eu-west-1",
          nowMs: Date.now(),
          nonce: randomBytes(16).toString("hex"),
        }),
      },
      body: text,
    });
  };
  const version = (over: Record<string, unknown> = {}) => ({
    key: "k-repair",
    tenant: "tenant-a",
    outcome: "accepted",
    bodyJson: null,
    origin: "us-east-1",
    incarnation: "a".repeat(32),
    lsn: 1,
    hlc: { wallMs: Date.now(), logical: 0 },
    ...over,
  });

  it("refuses bad shapes, foreign tenants, unknown origins and keys without a difference, and writes nothing", async () => {
    await append(node, { key: "k-own", tenant: "tenant-a", outcome: "accepted" });
    const before = await status(node);
    const cases: Array<[unknown, number, string]> = [
      [[{}], 400, "bad_request"],
      [{ versions: [{}] }, 400, "bad_request"],
      [{ versions: [version({ key: "k".repeat(5000) })] }, 400, "bad_request"],
      [{ versions: [version({ hlc: { wallMs: "abc", logical: 0 } })] }, 400, "bad_request"],
      [{ versions: [version({ origin: "nobody" })] }, 403, "repair_refused"],
      [{ versions: [version({ tenant: "tenant-us" })] }, 403, "repair_refused"],
    ];
    for (const [body, code, label] of cases) {
      const r = await repair(body);
      expect(
        r,
        `${JSON.stringify(body).slice(0, 80)} ${JSON.stringify(r.body)} ${cluster.logs("eu-west-1").slice(-2000)}`,
      ).toMatchObject({ status: code, body: { code: label } });
    }
    const after = await status(node);
    expect(after.store).toEqual(before.store);
    expect(after.audit.seq).toBe(before.audit.seq);
  });
});

describe("event streams", () => {
  it("are capped (server.eventStreamsMax): one more is 503", async () => {
    const open = () =>
      fetch(`${node.url}/v1/admin/events`, { headers: { authorization: `Bearer ${cluster.adminToken}` } });
    const a = await open();
    const b = await open();
    expect([a.status, b.status]).toEqual([200, 200]);
    const c = await open();
    expect(c.status).toBe(503);
    expect(c.headers.get("retry-after")).toBe("5");
    await a.body?.cancel();
    await b.body?.cancel();
    await waitFor(
      async () =>
        (await open().then(async (r) => (await r.body?.cancel(), r.status))) === 200 ? true : undefined,
      "a stream slot to free up",
    );
  });

  it("need an admin credential: none, or a wrong token, is 401", async () => {
    expect((await fetch(`${node.url}/v1/admin/events`)).status).toBe(401);
    const wrong = await fetch(`${node.url}/v1/admin/events`, {
      headers: { authorization: "Bearer not-the-token-0123456789" },
    });
    expect(wrong.status).toBe(401);
  });
});
