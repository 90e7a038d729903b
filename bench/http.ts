/**
 * Per-record HTTP appends against what HTTP itself costs here: `autocannon` (a real HTTP load
 * generator, in its own process) with the same connections and body against
 *   - a trivial fastify JSON route (bench/trivial-server.mjs: the same body schema, no WAL);
 *   - POST /v1/records of a `crr serve` node that replicates to a second `crr serve` node
 *     (every answer after fdatasync; the peer must hold every acknowledged record at the end);
 *   - the same node overloaded: many more connections than its pending bound, to see goodput
 *     and the latency of what it accepts while it refuses the rest (429);
 *   - shedding: the same overload against a node with tight admission bounds
 *     (`append.pendingMax` 256, `append.queueDelayMaxMs` 20), which refuses before reading a
 *     body: what goodput and latency the early 429 buys;
 *   - open loops (bench/open-loop.mjs: Poisson arrivals at 3× the round's crr rate, whatever the
 *     node answers; latency from each request's scheduled arrival) against the default bounds,
 *     the tight bounds, and a fourth node bounding its event loop's lag (@fastify/under-pressure).
 * Each round runs the closed loops in a rotated order, then the open loops (their rate is the
 * round's crr rate); ratios against the trivial route of the same
 * round (the machine is shared and noisy), summarised as median (min–max). The CPU each
 * answered request cost the trivial server, and the crr node and its peer, is read from
 * /proc (where the time goes: per request, not per second, so less noisy than throughput).
 *
 *   npm run build && npm run bench -- http [--rounds 5] [--seconds 5] [--connections 64] [--seed S]
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { LocalMesh, waitUntil } from "../src/launch/index.js";
import { spread, writeResults, type Spread } from "./report.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const secret = "bench-http-peer-secret-0123456789";

interface StatusLatency {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

interface CannonRun {
  requestsPerS: number;
  ok: number;
  refused: number;
  errors: number;
  /** Of every request (autocannon's own figures). */
  latencyMs: { p50: number; p99: number; max: number };
  /** Of accepted (200) and refused (429) requests apart. */
  accepted: StatusLatency | undefined;
  refusedLatency: StatusLatency | undefined;
  /** CPU (user + system) per answered 200 of the server, and of the peer it replicates to, µs. */
  cpuUsPerOk?: { server: number; peer?: number };
}

type Mode = "trivial" | "crr" | "overload" | "shedding" | "open-overload" | "open-shedding" | "open-pressure";
/** Closed loops (autocannon), rotated in each round. */
const closedModes: Mode[] = ["trivial", "crr", "overload", "shedding"];
/** Open loops at `overloadFactor` × the round's crr rate: after the closed loops of the round. */
const openModes: Mode[] = ["open-overload", "open-shedding", "open-pressure"];
const modes: Mode[] = [...closedModes, ...openModes];
/** The overload the target names: 3× the sustainable rate (the round's crr rate). */
const overloadFactor = 3;
/** The shedding node's admission bounds. */
const tight = { pendingMax: 256, queueDelayMaxMs: 20 };
/** The pressure node's admission bound: the event loop's lag (@fastify/under-pressure). */
const pressure = { eventLoopDelayMaxMs: 50 };
/** Which node each mode loads (the trivial route aside). */
const nodeOf = (m: Mode) =>
  m.endsWith("shedding") ? "eu-west-1" : m === "open-pressure" ? "ap-south-1" : "us-east-1";
/** Connections the open-loop generator opens: below the node's server.connectionsMax (1024), beside its peer. */
const openConnections = 1000;

/** One autocannon run in its own process (its CPU is not this process's). */
async function cannon(url: string, connections: number, seconds: number, prefix: string): Promise<CannonRun> {
  const args = [path.join(here, "cannon.mjs"), url, String(connections), String(seconds), prefix];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`autocannon exited with ${code}`);
  const r = JSON.parse(out) as {
    requests: { average: number };
    latency: { p50: number; p99: number; max: number };
    "2xx": number;
    "4xx": number;
    errors: number;
    timeouts: number;
    non2xx: number;
    byStatus: Record<string, StatusLatency>;
  };
  return {
    requestsPerS: r["2xx"] / seconds,
    ok: r["2xx"],
    refused: r["4xx"],
    errors: r.errors + r.timeouts + (r.non2xx - r["4xx"]),
    latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
    accepted: r.byStatus["200"],
    refusedLatency: r.byStatus["429"],
  };
}

/** What the open-loop generator adds to a run's figures. */
interface OpenRun extends CannonRun {
  offeredPerS: number;
  /** How late the generator sent its requests (waiting for a free connection included; in every latency above). */
  sendLateP99Ms: number;
  /** From sending to the answer (the node and the wire, without the wait for a connection). */
  nodeAccepted: StatusLatency | undefined;
  nodeRefused: StatusLatency | undefined;
  seed: number;
  /** Requests that got no answer, by error code (connection refused or reset, timeouts). */
  errorCodes: Record<string, number>;
}

/**
 * One open-loop run (bench/open-loop.mjs, in its own process): Poisson arrivals at `rate`,
 * latency from each request's scheduled arrival.
 */
async function openLoop(
  url: string,
  rate: number,
  seconds: number,
  prefix: string,
  seed: number,
): Promise<OpenRun> {
  const args = [path.join(here, "open-loop.mjs"), url, String(Math.round(rate)), String(seconds), prefix];
  const child = spawn(process.execPath, [...args, String(openConnections), String(seed)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`the open-loop generator exited with ${code} (seed ${seed})`);
  const r = JSON.parse(out) as {
    offered: number;
    offeredPerS: number;
    okPerS: number;
    byStatus: Record<string, StatusLatency>;
    serverByStatus: Record<string, StatusLatency>;
    errors: Record<string, number>;
    sendLate: StatusLatency;
  };
  const accepted = r.byStatus["200"];
  const refusedLatency = r.byStatus.refused;
  const others = Object.entries(r.byStatus).filter(([s]) => !["200", "429", "503", "refused"].includes(s));
  const all = Object.entries(r.byStatus)
    .filter(([s]) => s !== "refused")
    .map(([, l]) => l);
  const worst = (f: (l: StatusLatency) => number) => Math.max(0, ...all.map(f));
  return {
    requestsPerS: r.okPerS,
    ok: accepted?.count ?? 0,
    refused: refusedLatency?.count ?? 0,
    errors: Object.values(r.errors).reduce((a, b) => a + b, 0) + others.reduce((a, [, l]) => a + l.count, 0),
    latencyMs: { p50: worst((l) => l.p50Ms), p99: worst((l) => l.p99Ms), max: worst((l) => l.maxMs) },
    accepted,
    refusedLatency,
    offeredPerS: r.offeredPerS,
    sendLateP99Ms: r.sendLate.p99Ms,
    nodeAccepted: r.serverByStatus["200"],
    nodeRefused: r.serverByStatus.refused,
    seed,
    errorCodes: r.errors,
  };
}

/**
 * CPU time (user + system) a process used so far, ms: Linux's /proc/PID/stat in clock ticks
 * of 10 ms (USER_HZ); undefined where there is no /proc.
 */
function cpuMs(pid: number): number | undefined {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** The PID of a mesh node's `crr serve` process (its node.json). */
function nodePid(mesh: LocalMesh, name: string): number {
  const info = JSON.parse(fs.readFileSync(path.join(mesh.node(name).dataDir, "node.json"), "utf8")) as {
    pid: number;
  };
  return info.pid;
}

async function startTrivial(): Promise<{ url: string; stop: () => void; pid: number }> {
  const child = spawn(process.execPath, [path.join(here, "trivial-server.mjs")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (c) => reject(new Error(`trivial server exited with ${c}`)));
  });
  const { port } = JSON.parse(line) as { port: number };
  return { url: `http://127.0.0.1:${port}/v1/records`, stop: () => child.kill("SIGTERM"), pid: child.pid! };
}

/** Wait until the peer acknowledged everything the origin holds (the replication half of the run). */
async function caughtUp(mesh: LocalMesh, origin: string): Promise<void> {
  const url = `http://127.0.0.1:${mesh.node(origin).listenPort}/v1/status`;
  await waitUntil(
    async () => {
      const r = await request(url);
      const s = (await r.body.json()) as { caughtUp: boolean };
      return s.caughtUp || undefined;
    },
    "the peer to catch up",
    120_000,
  );
}

export async function benchHttp(args: {
  rounds: number;
  seconds: number;
  connections: number;
  seed?: number;
}) {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-http-"));
  const overloadConnections = args.connections * 8;
  // us-east-1 (default bounds), eu-west-1 (tight bounds) and ap-south-1 (the event loop's lag
  // bounded) each replicate to us-west-2 only.
  const mesh = await LocalMesh.start({
    root,
    regions: [
      "us-east-1",
      "us-west-2",
      { name: "eu-west-1", config: { append: tight } },
      { name: "ap-south-1", config: { append: pressure } },
    ],
    crr: (self) => ({
      enabled: true,
      replicationMode: "multi-way",
      peers: self === "us-west-2" ? ["us-east-1", "eu-west-1", "ap-south-1"] : ["us-west-2"],
    }),
    secret,
    output: "file",
    // CRR_BENCH_MAIN: another entry point for the nodes (e.g. one that starts a CPU profile)
    crrMain: process.env.CRR_BENCH_MAIN ?? path.join(here, "..", "dist", "cli", "main.js"),
    common: { log: { level: "warn" } },
  });
  const trivial = await startTrivial();
  const runs: Record<Mode, CannonRun[]> = Object.fromEntries(modes.map((m) => [m, []])) as unknown as Record<
    Mode,
    CannonRun[]
  >;
  const seedBase = args.seed ?? Date.now() % 1_000_000;
  log(`open-loop seeds: ${seedBase}+ (--seed ${seedBase} replays the arrivals)`);
  try {
    const urlOf = (m: Mode) => `http://127.0.0.1:${mesh.node(nodeOf(m)).listenPort}/v1/records`;
    for (const m of ["crr", "shedding", "open-pressure"] as Mode[])
      await cannon(urlOf(m), args.connections, 1, "warmup");
    await cannon(trivial.url, args.connections, 1, "warmup");
    for (let round = 0; round < args.rounds; round++) {
      const order = [
        ...closedModes.map((_, k) => closedModes[(round + k) % closedModes.length]!),
        ...openModes.map((_, k) => openModes[(round + k) % openModes.length]!),
      ];
      for (const mode of order) {
        const url = mode === "trivial" ? trivial.url : urlOf(mode);
        const c = mode === "overload" || mode === "shedding" ? overloadConnections : args.connections;
        // CPU of the server and (crr) its peer, through the peer's catching up.
        const pids =
          mode === "trivial"
            ? [trivial.pid]
            : mode === "crr"
              ? [nodePid(mesh, "us-east-1"), nodePid(mesh, "us-west-2")]
              : [];
        const before = pids.map(cpuMs);
        const open = openModes.includes(mode);
        const rate = open ? overloadFactor * runs.crr[round]!.requestsPerS : 0;
        const r = open
          ? await openLoop(url, rate, args.seconds, `r${round}-${mode}`, seedBase + round)
          : await cannon(url, c, args.seconds, `r${round}-${mode}`);
        if (mode !== "trivial") await caughtUp(mesh, nodeOf(mode));
        const used = pids.map((p, i) => (cpuMs(p) ?? NaN) - (before[i] ?? NaN));
        if (pids.length > 0 && r.ok > 0 && used.every(Number.isFinite))
          r.cpuUsPerOk = { server: (used[0]! * 1000) / r.ok, peer: used[1] && (used[1] * 1000) / r.ok };
        runs[mode].push(r);
        const how = open ? `open loop, ${Math.round(rate)}/s offered` : `${c} connections`;
        log(`round ${round + 1} ${mode} (${how}): ${describe(r)}`);
      }
    }
  } finally {
    trivial.stop();
    // Graceful first, so an entry point that profiles the nodes writes its profile.
    for (const n of mesh.nodes.keys()) await mesh.stopNode(n, "SIGTERM");
    await mesh.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const ratio = (m: Mode) => spread(runs[m].map((r, i) => r.requestsPerS / runs.trivial[i]!.requestsPerS));
  const overloadToPeak = spread(runs.overload.map((r, i) => r.requestsPerS / runs.crr[i]!.requestsPerS));
  const sheddingToPeak = spread(runs.shedding.map((r, i) => r.requestsPerS / runs.crr[i]!.requestsPerS));
  const toPeak = (m: Mode) => spread(runs[m].map((r, i) => r.requestsPerS / runs.crr[i]!.requestsPerS));
  const opened = (m: Mode) => runs[m] as OpenRun[];
  const of = (m: Mode, f: (r: CannonRun) => number) => spread(runs[m].map(f));
  const summary = Object.fromEntries(
    modes.map((m) => [
      m,
      {
        okPerS: of(m, (r) => r.requestsPerS),
        ratioToTrivial: ratio(m),
        acceptedP50Ms: of(m, (r) => r.accepted?.p50Ms ?? NaN),
        acceptedP99Ms: of(m, (r) => r.accepted?.p99Ms ?? NaN),
        refused: of(m, (r) => r.refused),
        refusedP99Ms: of(m, (r) => r.refusedLatency?.p99Ms ?? 0),
        errors: of(m, (r) => r.errors),
      },
    ]),
  ) as unknown as Record<Mode, Record<string, Spread>>;
  const n = (v: number) => Math.round(v).toLocaleString("en-US");
  const f = (s: Spread, d = 0) =>
    d
      ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`
      : `${n(s.median)} (${n(s.min)}–${n(s.max)})`;
  const md = [
    `autocannon (in its own process, one request in flight per connection) POSTs a JSON record with a new key each time; ${args.rounds} rounds of ${args.seconds} s, the modes rotated in each round; median (min–max); ratios against the trivial route of the same round. crr: one \`crr serve\` node replicating to a second one (the peer caught up after every run); overload: ${overloadConnections} connections against the default admission bounds (\`append.queueDelayMaxMs\` 500, \`append.pendingMax\` 4096); shedding: ${overloadConnections} connections against a third node with \`append.pendingMax\` ${tight.pendingMax} and \`append.queueDelayMaxMs\` ${tight.queueDelayMaxMs}, which refuses with 429 before reading the body.`,
    "",
    "| target | connections | answered 200/s | / trivial route | accepted p50 ms | accepted p99 ms | refused 429 | refused p99 ms | errors |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...closedModes.map((m) => {
      const s = summary[m];
      const c = m === "overload" || m === "shedding" ? overloadConnections : args.connections;
      return `| ${m} | ${c} | ${f(s.okPerS!)} | ${f(s.ratioToTrivial!, 2)} | ${f(s.acceptedP50Ms!, 1)} | ${f(s.acceptedP99Ms!, 1)} | ${f(s.refused!)} | ${f(s.refusedP99Ms!, 1)} | ${f(s.errors!)} |`;
    }),
    "",
    `Overload goodput / crr at ${args.connections} connections, same round: ${f(overloadToPeak, 2)}; shedding: ${f(sheddingToPeak, 2)}.`,
    "",
    `**Open loop** (bench/open-loop.mjs in its own process: Poisson arrivals at ${overloadFactor}× the round's crr rate at ${args.connections} connections, up to ${openConnections} connections; latency from each request's scheduled arrival, so the generator's own lateness counts): open-overload against the default bounds, open-shedding against the tight ones, open-pressure against a fourth node whose only added bound is \`append.eventLoopDelayMaxMs\` ${pressure.eventLoopDelayMaxMs} (the event loop's mean lag over 100 ms, by @fastify/under-pressure). "node": from sending to the answer, without the wait for a free connection.`,
    "",
    "| target | offered/s | accepted/s | / crr (peak) | accepted p50 ms | accepted p99 ms | accepted p99 ms, node | refused | refused p99 ms | refused p50 ms, node | refused p99 ms, node | errors | sent late p99 ms |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...openModes.map((m) => {
      const s = summary[m];
      const late = spread(opened(m).map((r) => r.sendLateP99Ms));
      const offered = spread(opened(m).map((r) => r.offeredPerS));
      const node = (g: (r: OpenRun) => number | undefined) => f(spread(opened(m).map((r) => g(r) ?? 0)), 1);
      return `| ${m} | ${f(offered)} | ${f(s.okPerS!)} | ${f(toPeak(m), 2)} | ${f(s.acceptedP50Ms!, 1)} | ${f(s.acceptedP99Ms!, 1)} | ${node((r) => r.nodeAccepted?.p99Ms)} | ${f(s.refused!)} | ${f(s.refusedP99Ms!, 1)} | ${node((r) => r.nodeRefused?.p50Ms)} | ${node((r) => r.nodeRefused?.p99Ms)} | ${f(s.errors!)} | ${f(late, 1)} |`;
    }),
    "",
    `Seeds of the open-loop arrivals: ${seedBase}..${seedBase + args.rounds - 1} (\`--seed ${seedBase}\` replays them).`,
    "",
    `CPU (user + system, /proc) per answered request, µs: the trivial route's server ${f(of("trivial", (r) => r.cpuUsPerOk?.server ?? NaN))}; crr, the node ${f(of("crr", (r) => r.cpuUsPerOk?.server ?? NaN))} and its peer ${f(of("crr", (r) => r.cpuUsPerOk?.peer ?? NaN))} (the peer's through its catching up). The two cores are shared with autocannon.`,
  ].join("\n");
  writeResults("http", { ...args, overloadConnections, summary, overloadToPeak, sheddingToPeak, runs }, md);
  log(md);
}

function describe(r: CannonRun): string {
  const ms = (l: StatusLatency | undefined) =>
    l ? `p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms` : "none";
  const o = "errorCodes" in r ? (r as OpenRun) : undefined;
  const codes = o
    ? `; at the node: accepted ${ms(o.nodeAccepted)}, refused ${ms(o.nodeRefused)}; sent late p99 ${o.sendLateP99Ms.toFixed(1)} ms; errors ${JSON.stringify(o.errorCodes)}`
    : "";
  return `${Math.round(r.requestsPerS)}/s accepted (${ms(r.accepted)}), ${r.refused} refused (${ms(r.refusedLatency)}), ${r.errors} errors${codes}`;
}
