/**
 * Batch appends and admission control against real `crr serve` processes (issue "Fast across
 * real distances and under overload"):
 * - POST /v1/records/batch (a JSON array or NDJSON) answers one result per record, in order,
 *   after fdatasync; a refused record refuses nothing else; what was acknowledged reaches the
 *   peer with the exact content the client sent (the ledger is the request and its answers);
 * - a batch that cannot be read, or is too large, changes nothing;
 * - beyond append.pendingMax pending records an append is refused at once with 429 and
 *   Retry-After, counted, and nothing of it is written; before its body is read.
 */
import http from "node:http";
import { describe, expect, it } from "vitest";
import { Cluster, api, append, status, waitConverged, type TestNode } from "../support/cluster.js";
import { waitFor } from "../support/tmp.js";

type Answer = Record<string, unknown>;

function batch(node: TestNode, body: string, type = "application/json", query = "") {
  return api<Answer[] & Answer>(`${node.url}/v1/records/batch${query}`, {
    method: "POST",
    headers: { "content-type": type },
    body,
  });
}

async function metric(node: TestNode, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

/**
 * POST `path` announcing a 1 MiB JSON body and sending only its first bytes: the answer, if
 * one comes without the rest (the connection is cut after it, or after 10 s without one).
 */
function headersOnly(
  base: string,
  path: string,
): Promise<{ status: number; body: string; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": String(1 << 20) },
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer to ${path} within 10 s without its body`));
    }, 10_000);
    req.on("response", (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection });
      });
    });
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.write("[");
  });
}

describe("batch appends", () => {
  it("answer each record in order, refuse only the bad ones, and replicate what they acknowledged", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    expect((await append(a, { key: "old", tenant: "t1", outcome: "rejected" })).status).toBe(200);
    const records: unknown[] = Array.from({ length: 200 }, (_, i) => ({
      key: `b-${i}`,
      tenant: i % 2 ? "t1" : "t2",
      outcome: i % 3 ? "accepted" : "escalated",
      body: { i, note: "é" },
    }));
    records[10] = { key: "b-10", tenant: "t1" }; // no outcome
    records[20] = { key: "b-20", tenant: "t1", outcome: "accepted", extra: 1 }; // unknown field
    records[30] = { key: "b-5", tenant: "t2", outcome: "rejected" }; // repeats record 5's key
    records[40] = { key: "old", tenant: "t1", outcome: "accepted" }; // already decided
    records[50] = 17; // not a record
    const res = await batch(a, JSON.stringify(records));
    expect(res.status).toBe(200);
    expect(res.body).toHaveLength(200);
    expect(res.body[10]).toMatchObject({ status: 400, code: "record_invalid", field: "outcome" });
    expect(res.body[20]).toMatchObject({ status: 400, code: "record_invalid", field: "extra" });
    expect(res.body[50]).toMatchObject({ status: 400, code: "record_invalid" });
    expect(res.body[30]).toMatchObject({ key: "b-5", duplicate: true, outcome: res.body[5]!.outcome });
    expect(res.body[40]).toMatchObject({ key: "old", duplicate: true, outcome: "rejected" });
    const fresh = res.body.filter((r) => r.duplicate === false);
    expect(fresh).toHaveLength(195);
    // Acknowledged means durable: the WAL holds every one of them.
    const lsns = fresh.map((r) => r.lsn as number);
    expect(new Set(lsns).size).toBe(195);
    expect((await status(a)).wal.durableLsn).toBeGreaterThanOrEqual(Math.max(...lsns));

    // NDJSON, and a batch that cannot be read or is too large changes nothing.
    const nd = await batch(
      a,
      '{"key":"n-1","tenant":"t1","outcome":"accepted"}\n\n{"key":"n-2","tenant":"t1","outcome":"accepted"}\n',
      "application/x-ndjson",
    );
    expect(nd.body.map((r) => [r.key, r.duplicate])).toEqual([
      ["n-1", false],
      ["n-2", false],
    ]);
    const before = (await status(a)).wal.durableLsn;
    const broken = await batch(
      a,
      '{"key":"n-3","tenant":"t1","outcome":"accepted"}\n{oops\n',
      "application/x-ndjson",
    );
    expect(broken.status).toBe(400);
    expect(broken.body.message).toMatch(/line 2 is not JSON/);
    const tooMany = Array.from({ length: 1001 }, (_, i) => ({ key: `x-${i}`, tenant: "t1", outcome: "a" }));
    expect((await batch(a, JSON.stringify(tooMany))).status).toBe(400);
    expect((await batch(a, '{"key":"x"}')).status).toBe(400);
    expect((await status(a)).wal.durableLsn).toBe(before);

    // The peer holds every acknowledged record with the content the client sent.
    await waitConverged([a, b]);
    for (const [i, r] of res.body.entries()) {
      if (r.duplicate !== false) continue;
      const sent = records[i] as Answer;
      const got = await api<Answer>(`${b.url}/v1/records/${encodeURIComponent(r.key as string)}`);
      expect(got.body).toMatchObject({
        key: sent.key,
        tenant: sent.tenant,
        outcome: sent.outcome,
        body: sent.body,
        origin: "us-east-1",
        lsn: r.lsn,
      });
    }
  });
});

describe("admission control", () => {
  it("refuses at once with 429 and Retry-After beyond append.pendingMax, counts it, and writes nothing of it", async () => {
    // The peer never answers, so appends that wait for it (?wait=1) stay pending.
    const cluster = await Cluster.start({
      regions: ["eu-west-1"],
      common: {
        regions: { "us-east-1": { url: "http://127.0.0.1:9" } },
        crr: { enabled: true, peers: ["us-east-1"] },
        recovery: { startAlone: true },
        append: { pendingMax: 8, waitTimeoutMs: 60_000 },
      },
    });
    const node = cluster.node("eu-west-1");
    const waiting = Array.from({ length: 8 }, (_, i) =>
      // (cut when the cluster stops: they only hold their places)
      append(node, { key: `w-${i}`, tenant: "t1", outcome: "accepted" }, 1).catch(() => undefined),
    );
    await waitFor(
      async () => (await metric(node, "crr_appends_pending")) === 8 || undefined,
      "8 appends pending",
    );
    const res = await fetch(`${node.url}/v1/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "late", tenant: "t1", outcome: "accepted" }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(await res.json()).toMatchObject({ code: "overloaded" });
    const many = await batch(node, JSON.stringify([{ key: "late-2", tenant: "t1", outcome: "accepted" }]));
    expect(many.status).toBe(429);
    // Refused before its body is read: a request whose body never finishes is answered.
    const early = await headersOnly(node.url, "/v1/records/batch");
    expect(early.status).toBe(429);
    expect(early.connection).toBe("close");
    expect(JSON.parse(early.body)).toMatchObject({ code: "overloaded" });
    expect(await metric(node, `crr_appends_shed_total{reason="pending"}`)).toBe(3);
    expect((await status(node)).wal.durableLsn).toBe(8);
    expect((await api(`${node.url}/v1/records/late`)).status).toBe(404);
    await cluster.stop();
    await Promise.all(waiting);
  });
});
