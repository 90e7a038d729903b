/**
 * append.eventLoopDelayMaxMs: while the node's event loop lags beyond the bound (as measured by
 * @fastify/under-pressure), HTTP appends are refused at once with 429, Retry-After and the
 * closed connection, counted as shed for `event_loop`, and nothing of them is written; reads
 * are still answered; once the loop keeps up, appends are taken again. A real node in this
 * process (its event loop is the one this test blocks) over real HTTP.
 */
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../../../test/support/tmp.js";
import { openRegion, type RunningNode } from "../run.js";

let node: RunningNode | undefined;
afterEach(async () => {
  await node?.close({ readinessGraceMs: 0 });
  node = undefined;
});

/** Keep this process's event loop busy for `ms` (what a CPU-bound overload does to it). */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

async function post(url: string, key: string) {
  const res = await fetch(`${url}/v1/records`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key, tenant: "t1", outcome: "accepted" }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

async function shedCount(url: string, reason: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`crr_appends_shed_total{reason="${reason}"} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

/** Each attempt's answer until `done` says so, within `deadlineMs` (then throws with the last). */
async function until<T>(
  attempt: () => Promise<T>,
  done: (t: T) => boolean,
  deadlineMs: number,
  what: string,
) {
  const end = performance.now() + deadlineMs;
  for (;;) {
    const t = await attempt();
    if (done(t)) return t;
    if (performance.now() > end)
      throw new Error(`${what}: not within ${deadlineMs} ms; last ${JSON.stringify(t)}`);
  }
}

/** A region of one node without peers, in this process, listening on a port of its own. */
function openSolo(config: Record<string, unknown>): Promise<RunningNode> {
  return openRegion({
    region: "solo-1",
    dataDir: tempDir("crr-elu-"),
    listen: { host: "127.0.0.1", port: 0 },
    regions: { "solo-1": { url: "http://127.0.0.1:1" } },
    crr: { enabled: false },
    ...config,
  });
}

describe("append.eventLoopDelayMaxMs", () => {
  it("refuses HTTP appends with 429 while the event loop lags beyond it, writes nothing of them, and takes appends again once it keeps up", async () => {
    node = await openSolo({ append: { eventLoopDelayMaxMs: 20 } });
    const url = node.url;
    let n = 0;
    // Opening the region lags the loop too: the first appends may be refused for its sample.
    await until(
      () => post(url, `before-${n++}`),
      (r) => r.status === 200,
      30_000,
      "a first append taken",
    );
    // Each attempt lags the loop 300 ms first: the sampler (every 100 ms) then sees it.
    const refused = await until(
      async () => {
        busy(300);
        return post(url, `lagged-${n++}`);
      },
      (r) => r.status === 429,
      30_000,
      "an append refused while the loop lags",
    );
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(refused.headers.get("connection")).toBe("close");
    expect(refused.body).toMatchObject({ code: "overloaded" });
    expect(String(refused.body.message)).toMatch(
      /event loop lags (\d+ ms|for the whole last sample), beyond append\.eventLoopDelayMaxMs \(20\)/,
    );
    expect(await shedCount(url, "event_loop")).toBeGreaterThanOrEqual(1);
    const lastKey = `lagged-${n - 1}`;
    expect((await fetch(`${url}/v1/records/${lastKey}`)).status).toBe(404);
    // A node that takes no appends at all says so, lag or not (not "retry in a second").
    await node.drain({ timeoutMs: 1000 });
    busy(300);
    const draining = await post(url, `drained-${n++}`);
    expect(draining.status).toBe(503);
    expect(draining.body).toMatchObject({ code: "draining" });
    node.undrain();
    // Without the lag, appends are taken again.
    const taken = await until(
      () => post(url, `after-${n++}`),
      (r) => r.status === 200,
      30_000,
      "an append taken again",
    );
    expect(taken.body).toMatchObject({ outcome: "accepted", duplicate: false });
  });

  it("is off by default: a lagging loop refuses nothing", async () => {
    node = await openSolo({});
    for (let i = 0; i < 5; i++) {
      busy(300);
      expect((await post(node.url, `k-${i}`)).status).toBe(200);
    }
    expect(await shedCount(node.url, "event_loop")).toBe(0);
  });
});
