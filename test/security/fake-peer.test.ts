/**
 * Issue "Trust between regions", item 1, against a real `crr serve`: a fake peer that holds
 * no key answers every request with `{"watermark": 999999999}`. Its acknowledgements are
 * not authentic, so nothing moves: the peer is not caught up, `?wait=1` times out, drain
 * does not report success, and retention deletes no WAL segment. The failure shows in
 * status and metrics (`crr_ship_errors_total{reason="unauthenticated_answer"}`).
 */
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Cluster, api, append, status } from "../support/cluster.js";
import { runCrr } from "../support/cli.js";
import { waitFor } from "../support/tmp.js";

let fake: http.Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (fake ? fake.close(() => resolve()) : resolve()));
  fake = undefined;
});

/** Answers everything 200 with an acknowledgement of everything, and a watermarks view claiming as much. */
async function startFakePeer(): Promise<string> {
  fake = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          watermark: 999_999_999,
          applied: 1,
          region: "us-west-2",
          incarnation: "f".repeat(32),
          watermarks: {},
          streams: [],
          rule: "first-write-wins",
          formatVersion: 1,
          clock: { wallMs: 0, logical: 0 },
          seen: [],
          status: "ok",
        }),
      );
    });
  });
  await new Promise<void>((resolve) => fake!.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
}

const walFiles = (dataDir: string) =>
  fs
    .readdirSync(path.join(dataDir, "wal"))
    .filter((f) => f.endsWith(".wal"))
    .sort();

describe("a fake peer's acknowledgements", () => {
  it("move nothing: not caught up, ?wait=1 times out, drain fails, no WAL segment deleted, and it shows", async () => {
    const fakeUrl = await startFakePeer();
    const cluster = await Cluster.start({
      regions: ["us-east-1"],
      common: {
        regions: { "us-west-2": { url: fakeUrl } },
        crr: { enabled: true, replicationMode: "multi-way", peers: ["us-west-2"] },
        wal: { segmentBytesMax: 4096, retentionIntervalMs: 200 },
        append: { waitTimeoutMs: 1500 },
        recovery: { startAlone: true },
      },
    });
    const a = cluster.node("us-east-1");
    const pad = "x".repeat(300);
    for (let i = 0; i < 100; i++)
      await append(a, { key: `k${i}`, tenant: "t", outcome: "accepted", body: { pad } });
    const segments = walFiles(a.dataDir);
    expect(segments.length).toBeGreaterThan(3);
    const waited = await api(`${a.url}/v1/records?wait=1`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "semi", tenant: "t", outcome: "accepted" }),
    });
    expect(waited.status).toBe(504);
    const peer = await waitFor(async () => {
      const p = (await status(a)).peers.find((x) => x.peer === "us-west-2");
      return p?.lastError?.includes("not authentic") ? p : undefined;
    }, "the shipper to report the unauthenticated answer");
    expect(peer.ackedLsn).toBe(0);
    expect(peer.behindRecords).toBeGreaterThan(100);
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toMatch(
      /crr_ship_errors_total\{peer="us-west-2",reason="unauthenticated_answer"\} [1-9]/,
    );
    const drain = await runCrr(["drain", "--url", a.url, "--timeout-ms", "1500"], { env: cluster.secrets() });
    expect(drain.code).toBe(1);
    // Several retention passes later, every segment is still there.
    const runs = async () =>
      Number(
        /^crr_retention_runs_total (\d+)/m.exec(await (await fetch(`${a.url}/metrics`)).text())?.[1] ?? 0,
      );
    const before = await runs();
    await waitFor(async () => ((await runs()) >= before + 3 ? true : undefined), "three retention passes");
    expect(walFiles(a.dataDir).slice(0, segments.length)).toEqual(segments);
  });
});
