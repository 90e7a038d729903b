// An open-loop load generator for `npm run bench -- http`, in its own process: appends arrive
// at a fixed mean rate (Poisson arrivals from a seeded generator), whatever the node answers, so
// an overloaded node meets the load a real client population brings rather than the load it
// lets a closed loop of connections bring (autocannon waits for each answer, and its
// `overallRate` comes in bursts at each second). Latency is measured from each request's
// scheduled arrival, not from when it was sent: a request the generator itself sent late
// counts its lateness (no coordinated omission), and the report says how late it was.
//
// Written by hand: autocannon, the kept load generator, is closed-loop (its rate mode caps
// each connection per one-second window); the arrival process is a few lines (its seeded
// generator is pure-rand's). undici carries the requests: CONNECTIONS keep-alive connections,
// one request in flight on each; an arrival that finds none free waits in the generator's
// queue, and that wait is in its latency (`byStatus`); `serverByStatus` is the time from
// sending to the answer.
//
// Usage: node bench/open-loop.mjs URL RATE_PER_S SECONDS KEY_PREFIX CONNECTIONS SEED
// Prints one JSON line: offered, answered per status with latency quantiles (429 and 503 also
// together, as "refused"), errors by code.
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { Client } from "undici";

const [url, ratePerS, seconds, prefix, connections, seed] = process.argv.slice(2);
const rate = Number(ratePerS);
const durationMs = Number(seconds) * 1000;
if (!(rate > 0) || !(durationMs > 0))
  throw new Error(`usage: open-loop URL RATE SECONDS PREFIX CONNECTIONS SEED`);

// pure-rand (the simulator's generator): the arrival times of a run are replayed from its seed.
// Its first outputs from a small seed are far from uniform (seed 1 starts at 0.99999998, a
// gap of 18 mean gaps): they are drawn and dropped.
const rng = xoroshiro128plus(Number(seed));
for (let i = 0; i < 16; i++) uniformFloat64(rng);
/** The gap to the next arrival, ms: exponential with mean 1000 / rate. */
const gapMs = () => (-Math.log(1 - uniformFloat64(rng)) * 1000) / rate;

const target = new URL(url);
// One undici Client per connection, so the wait for a free connection (the client's queue) and
// the time on the wire and in the node are measured apart.
const clients = Array.from(
  { length: Number(connections) },
  () => new Client(target.origin, { pipelining: 1, headersTimeout: 30_000, bodyTimeout: 30_000 }),
);
const idle = [...clients];
/** Arrivals waiting for a free connection, oldest first: [n, scheduledAtMs]. */
const backlog = [];
let backlogHead = 0;
const latencies = new Map(); // status -> ms from the scheduled arrival to the answer
const serverMs = new Map(); // status -> ms from sending to the answer (the node and the wire)
const errors = new Map(); // error code -> count
const lateMs = []; // how late each request left, from its scheduled arrival (the client's queue included)
let offered = 0;
let inflight = 0;
let lastOkAtMs = 0;
let drained = () => {};

const push = (map, key, v) => {
  let l = map.get(key);
  if (!l) map.set(key, (l = []));
  l.push(v);
};

function arrive(n, scheduledAtMs) {
  inflight++;
  const client = idle.pop();
  if (client) send(client, n, scheduledAtMs);
  else backlog.push([n, scheduledAtMs]);
}

function send(client, n, scheduledAtMs) {
  const body = JSON.stringify({ key: `${prefix}-${n}`, tenant: "bench", outcome: "approved" });
  const sentAtMs = performance.now() - start;
  lateMs.push(sentAtMs - scheduledAtMs);
  client
    .request({ path: target.pathname, method: "POST", headers: { "content-type": "application/json" }, body })
    .then(async (res) => {
      await res.body.dump();
      const nowMs = performance.now() - start;
      push(latencies, res.statusCode, nowMs - scheduledAtMs);
      push(serverMs, res.statusCode, nowMs - sentAtMs);
      if (res.statusCode === 429 || res.statusCode === 503) {
        // Refused, whichever way: one group as well (quantiles cannot be merged afterwards).
        push(latencies, "refused", nowMs - scheduledAtMs);
        push(serverMs, "refused", nowMs - sentAtMs);
      }
      if (res.statusCode === 200) lastOkAtMs = nowMs;
    })
    .catch((err) =>
      errors.set(err.code ?? err.name ?? "error", (errors.get(err.code ?? err.name ?? "error") ?? 0) + 1),
    )
    .finally(() => {
      inflight--;
      if (backlogHead < backlog.length) {
        const [m, at] = backlog[backlogHead++];
        if (backlogHead > 4096) {
          backlog.splice(0, backlogHead);
          backlogHead = 0;
        }
        send(client, m, at);
      } else idle.push(client);
      if (inflight === 0) drained();
    });
}

const start = performance.now();
let next = gapMs();
await new Promise((resolve) => {
  const tick = () => {
    const now = performance.now() - start;
    while (next <= now && next < durationMs) {
      arrive(offered++, next);
      next += gapMs();
    }
    if (next >= durationMs) return resolve();
    setTimeout(tick, Math.max(0, Math.min(1, next - now)));
  };
  tick();
});
if (inflight > 0) await new Promise((resolve) => (drained = resolve));
const endMs = performance.now() - start;
await Promise.all(clients.map((c) => c.close()));

const at = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
const quantiles = (l) => {
  l.sort((a, b) => a - b);
  return { count: l.length, p50Ms: at(l, 0.5), p99Ms: at(l, 0.99), maxMs: l[l.length - 1] };
};
const byStatus = Object.fromEntries([...latencies].map(([status, l]) => [status, quantiles(l)]));
const serverByStatus = Object.fromEntries([...serverMs].map(([status, l]) => [status, quantiles(l)]));
const ok = latencies.get(200)?.length ?? 0;
process.stdout.write(
  `${JSON.stringify({
    seed: Number(seed),
    ratePerS: rate,
    seconds: Number(seconds),
    offered,
    offeredPerS: offered / (durationMs / 1000),
    // Accepted per second over the time it took to answer them: a backlog answered late lowers it.
    okPerS: ok / (Math.max(durationMs, lastOkAtMs) / 1000),
    drainedMs: endMs - durationMs,
    byStatus,
    serverByStatus,
    errors: Object.fromEntries(errors),
    sendLate: quantiles(lateMs),
  })}\n`,
);
