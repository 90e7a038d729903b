/**
 * `crr demo`: three regions (us-east-1, us-west-2, eu-west-1) as `crr serve` child processes
 * on free loopback ports, in a temp directory. Drives load in all three, shows live lag, makes
 * a split-brain conflict (the us-east-1 <-> us-west-2 links go through fault proxies this
 * process owns), SIGKILLs a region and restarts it, then checks that everything converged.
 * Exit 0 only if every region holds every acknowledged record and all digests are equal.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { startTcpProxy, type TcpProxy } from "../faults/index.js";
import type { RegionStatus } from "../node/index.js";
import { CliUsageError, parseCommand } from "./args.js";
import { LocalMesh, type MeshNode } from "../launch/index.js";
import { stopProcess } from "../util/process.js";

const help = `crr demo [--seconds N] [--rate N] [--keep]

Starts three regions on loopback, appends --rate records/s in each (default 200) for about
--seconds (default 30), shows live lag per link, makes one split-brain conflict, kills
eu-west-1 with SIGKILL and restarts it, and prints a summary. Exits 0 only if the regions
converged with every acknowledged record. --keep leaves the temp directory (logs, data).`;

const names = ["us-east-1", "us-west-2", "eu-west-1"] as const;
type Name = (typeof names)[number];

interface DemoNode {
  name: Name;
  /** Its front's URL (stable across the restart). */
  url: string;
  mesh: MeshNode;
  pool: Pool;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))]! : 0;
}

class Demo {
  readonly nodes = new Map<Name, DemoNode>();
  readonly acked = new Map<Name, number>();
  readonly lagSamples: number[] = [];
  private readonly proxies: TcpProxy[] = [];
  private readonly secret = randomBytes(24).toString("hex");
  private mesh: LocalMesh | undefined;

  constructor(readonly dir: string) {}

  say(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  async setUp(): Promise<void> {
    // us-east-1 and us-west-2 reach each other through proxies, so the demo can split them.
    const eastToWest = await startTcpProxy({ targetPort: 0 });
    const westToEast = await startTcpProxy({ targetPort: 0 });
    this.proxies.push(eastToWest, westToEast);
    this.mesh = await LocalMesh.start({
      root: this.dir,
      regions: [...names],
      secret: this.secret,
      common: {
        shipper: { requestTimeoutMs: 1500, retryDelayMsMax: 500 },
        health: { probeIntervalMs: 500 },
      },
      route: (from, to) =>
        from === "us-east-1" && to === "us-west-2"
          ? eastToWest
          : from === "us-west-2" && to === "us-east-1"
            ? westToEast
            : undefined,
      output: "file",
      crrMain: fileURLToPath(new URL("./main.js", import.meta.url)),
      readyTimeoutMs: 30_000,
    });
    for (const name of names) {
      const mesh = this.mesh.node(name);
      this.nodes.set(name, { name, url: mesh.url, mesh, pool: new Pool(mesh.url, { connections: 8 }) });
      this.acked.set(name, 0);
    }
  }

  start(name: Name): Promise<void> {
    return this.mesh!.startNode(name);
  }

  async kill(name: Name): Promise<void> {
    await this.mesh!.stopNode(name, "SIGKILL");
  }

  async append(name: Name, key: string, outcome = "accepted"): Promise<Record<string, unknown> | undefined> {
    try {
      const res = await this.nodes.get(name)!.pool.request({
        path: "/v1/records",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key, tenant: `tenant-${key.length % 3}`, outcome, body: { at: Date.now() } }),
      });
      const body = (await res.body.json()) as Record<string, unknown>;
      if (res.statusCode !== 200) return undefined;
      this.acked.set(name, this.acked.get(name)! + 1);
      return body;
    } catch {
      return undefined; // the region is down (killed on purpose): the client would retry elsewhere
    }
  }

  async status(name: Name): Promise<RegionStatus | undefined> {
    try {
      const res = await this.nodes.get(name)!.pool.request({ path: "/v1/status", method: "GET" });
      return (await res.body.json()) as RegionStatus;
    } catch {
      return undefined;
    }
  }

  /** Open-loop load in every live region for `seconds`, printing lag once a second. */
  async load(seconds: number, rate: number, tag: string, skip: Name[] = []): Promise<void> {
    const started = Date.now();
    let sent = 0;
    const inflight = new Set<Promise<unknown>>();
    let nextReport = started + 1000;
    while (Date.now() - started < seconds * 1000) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate) - sent;
      for (let i = 0; i < due; i++, sent++) {
        for (const n of names) {
          if (skip.includes(n)) continue;
          const p = this.append(n, `${tag}-${n}-${sent}`).finally(() => inflight.delete(p));
          inflight.add(p);
        }
      }
      if (Date.now() >= nextReport) {
        nextReport += 1000;
        await this.reportLag(`${tag} ${Math.round((Date.now() - started) / 1000)}s`);
      }
      await sleep(5);
    }
    await Promise.all(inflight);
  }

  async reportLag(label: string): Promise<void> {
    const parts: string[] = [];
    for (const n of names) {
      const s = await this.status(n);
      if (!s) {
        parts.push(`${n} DOWN`);
        continue;
      }
      for (const p of s.peers) {
        this.lagSamples.push(p.lagSeconds);
        parts.push(
          `${n.split("-").slice(0, 2).join("-")}→${p.peer.split("-").slice(0, 2).join("-")} ${(p.lagSeconds * 1000).toFixed(0)}ms`,
        );
      }
    }
    const total = [...this.acked.values()].reduce((a, b) => a + b, 0);
    this.say(`  [${label}] acked ${total}  lag: ${parts.join("  ")}`);
  }

  async splitBrain(): Promise<{ east: unknown; west: unknown }> {
    for (const p of this.proxies) p.setMode("blackhole");
    const key = "pcs-split-brain";
    const [east, west] = await Promise.all([
      this.append("us-east-1", key, "accepted"),
      this.append("us-west-2", key, "rejected"),
    ]);
    for (const p of this.proxies) p.setMode("forward");
    return { east, west };
  }

  /** Wait until every region applied every other region's durable records. */
  async converge(timeoutMs: number): Promise<RegionStatus[] | undefined> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const all = (await Promise.all(names.map((n) => this.status(n)))).filter(
        (s): s is RegionStatus => s !== undefined,
      );
      const caughtUp =
        all.length === names.length &&
        all.every((s) => all.every((o) => o === s || (s.watermarks[o.region] ?? 0) >= o.wal.durableLsn));
      if (caughtUp && new Set(all.map((s) => s.store.digest)).size === 1) return all;
      await sleep(100);
    }
    return undefined;
  }

  /** Ms from `since` until `name` applied every origin up to the given LSNs; undefined on timeout. */
  async caughtUp(
    name: Name,
    lsns: Record<string, number>,
    timeoutMs: number,
    since = Date.now(),
  ): Promise<number | undefined> {
    const until = since + timeoutMs;
    while (Date.now() < until) {
      const s = await this.status(name);
      if (s && Object.entries(lsns).every(([o, l]) => (s.watermarks[o] ?? 0) >= l)) return Date.now() - since;
      await sleep(20);
    }
    return undefined;
  }

  async getRecord(name: Name, key: string): Promise<Record<string, unknown> | undefined> {
    const res = await this.nodes
      .get(name)!
      .pool.request({ path: `/v1/records/${encodeURIComponent(key)}`, method: "GET" });
    const body = (await res.body.json()) as Record<string, unknown>;
    return res.statusCode === 200 ? body : undefined;
  }

  async tearDown(): Promise<void> {
    await Promise.all(
      [...this.nodes.values()].map(async (n) => {
        await stopProcess(n.mesh.proc);
        await n.pool.close().catch(() => undefined);
      }),
    );
    await this.mesh?.stop();
    await Promise.all(this.proxies.map((p) => p.close()));
  }
}

export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parseCommand("demo", argv, {
    seconds: { type: "string" },
    rate: { type: "string" },
    keep: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  const seconds = Number(values.seconds ?? 30);
  const rate = Number(values.rate ?? 200);
  if (!(seconds >= 3) || !(rate > 0))
    throw new CliUsageError("demo: --seconds must be at least 3 and --rate positive");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-demo-"));
  const demo = new Demo(dir);
  const started = Date.now();
  try {
    demo.say(`crr demo: three regions on loopback, data and logs in ${dir}`);
    await demo.setUp();
    for (const n of demo.nodes.values()) demo.say(`  ${n.name} ready at ${n.url} (pid ${n.mesh.proc?.pid})`);

    const phase = Math.max(1, Math.round(seconds / 3));
    demo.say(`\n1. load: ${rate} appends/s in each region for ${phase} s`);
    await demo.load(phase, rate, "load");

    demo.say(
      "\n2. split brain: us-east-1 and us-west-2 cut off from each other, the same key appended in both",
    );
    const { east, west } = await demo.splitBrain();
    demo.say(`  us-east-1 answered ${JSON.stringify(east)}`);
    demo.say(`  us-west-2 answered ${JSON.stringify(west)}`);
    demo.say("  link healed; the first write (smallest hybrid timestamp, then region name) wins everywhere");

    demo.say(`\n3. crash: eu-west-1 killed with SIGKILL; load goes on in the other two for ${phase} s`);
    await demo.kill("eu-west-1");
    await demo.load(phase, rate, "crash", ["eu-west-1"]);
    const backlog = Object.fromEntries(
      await Promise.all(
        (["us-east-1", "us-west-2"] as const).map(
          async (n) => [n, (await demo.status(n))?.wal.durableLsn ?? 0] as const,
        ),
      ),
    );
    const restartAt = Date.now();
    await demo.start("eu-west-1");
    demo.say(
      `  eu-west-1 restarted and ready in ${Date.now() - restartAt} ms (WAL recovered, store replayed)`,
    );
    const caughtUpMs = await demo.caughtUp("eu-west-1", backlog, 60_000, restartAt);
    demo.say(
      `  eu-west-1 applied the ${phase} s it missed ${caughtUpMs === undefined ? "NOT within 60 s" : `${caughtUpMs} ms after its restart`}`,
    );
    await demo.load(phase, rate, "recovery");

    demo.say("\n4. convergence");
    const all = await demo.converge(60_000);
    const winner = await demo.getRecord("eu-west-1", "pcs-split-brain");
    const total = [...demo.acked.values()].reduce((a, b) => a + b, 0);
    const digests = all ? new Set(all.map((s) => s.store.digest)) : new Set<string>();
    const ok = all !== undefined && digests.size === 1 && all.every((s) => s.store.records === total - 1);
    demo.say(
      `  split-brain key: winner ${JSON.stringify(winner ? { outcome: winner.outcome, origin: winner.origin } : undefined)}; ` +
        `the loser is kept in each region's conflicts table (crr_conflicts_total, ${all?.map((s) => `${s.region} ${s.store.conflicts}`).join(", ") ?? "?"})`,
    );
    demo.say(`\nsummary (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    demo.say(
      `  acknowledged appends: ${names.map((n) => `${n} ${demo.acked.get(n)}`).join(", ")} (total ${total}, one of them the conflict's loser)`,
    );
    demo.say(
      `  records per region:   ${all ? all.map((s) => `${s.region} ${s.store.records}`).join(", ") : "did not converge within 60 s"}`,
    );
    demo.say(
      `  sampled lag:          p50 ${(percentile(demo.lagSamples, 0.5) * 1000).toFixed(0)} ms, p99 ${(percentile(demo.lagSamples, 0.99) * 1000).toFixed(0)} ms (includes the crash window)`,
    );
    demo.say(
      `  eu-west-1 caught up:  ${caughtUpMs === undefined ? "no" : `${caughtUpMs} ms after its restart (RTO)`}`,
    );
    demo.say(
      `  digests equal:        ${digests.size === 1 ? `yes (${[...digests][0]!.slice(0, 16)}…)` : "NO"}`,
    );
    demo.say(
      ok ? "\ndemo: OK, the regions converged with every acknowledged record" : "\ndemo: FAILED to converge",
    );
    return ok ? 0 : 1;
  } finally {
    await demo.tearDown();
    if (values.keep) demo.say(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}
