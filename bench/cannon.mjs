// autocannon in its own process for `npm run bench -- http`: POSTs a JSON record with a key
// of its own per request (autocannon's idReplacement sends a stale Content-Length), prints
// autocannon's JSON result with latency per status code (`byStatus`: autocannon's own
// latency mixes accepted and refused requests). Usage: node bench/cannon.mjs URL CONNECTIONS SECONDS KEY_PREFIX
import autocannon from "autocannon";

const [url, connections, seconds, prefix] = process.argv.slice(2);
let n = 0;
/** Latencies in ms by status code; one request in flight per connection (no pipelining). */
const latencies = new Map();
const result = await autocannon({
  url,
  connections: Number(connections),
  duration: Number(seconds),
  timeout: 30,
  requests: [
    {
      method: "POST",
      headers: { "content-type": "application/json" },
      setupRequest: (req, context) => {
        context.sentAt = performance.now();
        return {
          ...req,
          body: JSON.stringify({ key: `${prefix}-${n++}`, tenant: "bench", outcome: "approved" }),
        };
      },
      onResponse: (status, _body, context) => {
        let l = latencies.get(status);
        if (!l) latencies.set(status, (l = []));
        l.push(performance.now() - context.sentAt);
      },
    },
  ],
});
const at = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
const byStatus = Object.fromEntries(
  [...latencies].map(([status, l]) => {
    l.sort((a, b) => a - b);
    return [status, { count: l.length, p50Ms: at(l, 0.5), p99Ms: at(l, 0.99), maxMs: l[l.length - 1] }];
  }),
);
process.stdout.write(`${JSON.stringify({ ...result, byStatus })}\n`);
