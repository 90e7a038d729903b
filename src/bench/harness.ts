/**
 * Runs one lag SLO scenario against real crr nodes: one `crr serve` process per region on
 * loopback, every directed link through a fault proxy this process owns, open-loop load in
 * every region, drills on schedule, and at the end an integrity check (every acknowledged
 * record in every region its policy targets, all digests equal).
 *
 * Lag of a record on a link = from the origin acknowledging the append (the moment the
 * harness gets the response with its LSN) to the peer applying the batch that holds it (the
 * `atMs` of the peer's `applied` event on GET /v1/admin/events, a durable commit there).
 * Every process runs on this machine, so both instants are on one clock, except in a
 * clock-skew drill: the skewed node's `atMs` is shifted by its offset, and so is the lag of
 * the links into it (the drill's note in the report names the offset).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as hdr from "hdr-histogram-js";
import { Pool } from "undici";
import { startTcpProxy, type TcpProxy } from "../faults/index.js";
import type { RegionStatus } from "../node/index.js";
import { faultsFor, type Scenario } from "./scenario.js";
import { LocalMesh, deepMerge, type MeshNode } from "../launch/index.js";
import { stopProcess } from "../util/process.js";
import { checkLedger, type AckedRecord, type LedgerCheck, type StoreSource } from "./ledger-check.js";
import { freshDatabase, startPostgres, type PostgresServer } from "./postgres.js";

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface LinkResult {
  from: string;
  to: string;
  lagMs: LatencySummary;
  /** Per second since the start: the largest lag of a record acknowledged in that second (ms). */
  lagMsMaxPerSecond: number[];
  /** Bytes the link's fault proxy forwarded, both ways (batches, their answers, HTTP headers). */
  wireBytes?: number;
}

export interface DrillResult {
  kind: string;
  region?: string;
  atSeconds: number;
  /** sigkill / disk-loss: from the restart to ready, and to caught up (the RTO). */
  readyMs?: number;
  caughtUpMs?: number;
  /** disk-loss: acknowledged records no other region had at the moment of loss. */
  lostRecords?: number;
  lostSeconds?: number;
  /** partition: from the heal to all regions converged. */
  convergedMs?: number;
  note?: string;
}

/** What one region's client offered and what came of it. */
export interface RegionLoad {
  region: string;
  offered: number;
  acknowledged: number;
  /** Answered 429 or 503 (load shed, draining). */
  refused: number;
  /** Errors and unreachable nodes (a drill). */
  failed: number;
  /** Due but not offered: this region's client had inflightPerRegion records unanswered. */
  notOffered: number;
}

export interface RunResult {
  system: "crr" | "nats";
  scenario: string;
  /** How the load generator appended: "per-record" or "batches of N". */
  mode?: string;
  perRegion?: RegionLoad[];
  durationSeconds: number;
  appendedPerS: number;
  acknowledged: number;
  failedAppends: number;
  /** Per second since the start, per region appended in: the records acknowledged in that second. */
  acknowledgedPerSecond?: Array<{ region: string; counts: number[] }>;
  links: LinkResult[];
  lagMs: LatencySummary;
  drills: DrillResult[];
  integrity: { ok: boolean; detail: string };
  resources: Array<{ region: string; cpuSeconds: number; rssMiB: number; fsyncs: number }>;
  notes: string[];
}

/**
 * A counter of a process that may restart, summed over its processes: a count below the last
 * one seen is a new process (its counter started again at 0). Updates `seen`; returns the sum.
 */
export function countAcrossRestarts(seen: { earlier: number; last: number }, count: number): number {
  if (count < seen.last) seen.earlier += seen.last;
  seen.last = count;
  return seen.earlier + count;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function histogram() {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
  });
}

export function summarize(h: ReturnType<typeof histogram>): LatencySummary {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
  };
}

/** One origin stream as the harness sees it: when each LSN was acknowledged, and reached each peer. */
class Stream {
  readonly ackedAt: number[] = [];
  readonly keys: string[] = [];
  readonly tenants: string[] = [];
  /** What each append was answered and sent with (the ledger the integrity check uses). */
  readonly hlcs: string[] = [];
  readonly bodies: string[] = [];
  readonly appliedAt = new Map<string, number[]>();
  maxAcked = 0;
  incarnation: string | undefined;
  constructor(
    readonly origin: string,
    readonly epoch: number,
  ) {}
}

interface Node {
  name: string;
  /** The node as the launcher runs it (its URL changes at each start: no fronts in the way). */
  mesh: MeshNode;
  pool: Pool;
  epoch: number;
  events: AbortController | undefined;
}

export interface HarnessOptions {
  progress: (line: string) => void;
  crrMain?: string;
}

export class CrrHarness {
  private readonly nodes = new Map<string, Node>();
  private mesh: LocalMesh | undefined;
  private readonly proxies = new Map<string, TcpProxy>();
  private readonly streams = new Map<string, Stream>();
  private readonly secret = randomBytes(24).toString("hex");
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-slo-"));
  private readonly crrMain: string;
  private startedAt = 0;
  private failed = 0;
  private readonly drills: DrillResult[] = [];
  private readonly notes: string[] = [];
  /** The PostgreSQL scenario's database per region, and the temporary cluster started for it. */
  private pg: { urls: Map<string, string>; server?: PostgresServer } | undefined;
  /** The bucket of an S3-transport scenario, and the local s3rver started for it. */
  private s3: { endpoint: string; local?: { close(): Promise<void> } } | undefined;
  private stopLoad = false;
  private readonly loads = new Map<string, RegionLoad>();
  /** Per region: fsyncs of its earlier processes (a restart resets the counter) and the last count seen. */
  private readonly fsyncs = new Map<string, { earlier: number; last: number }>();

  constructor(
    private readonly s: Scenario,
    private readonly o: HarnessOptions,
  ) {
    this.crrMain = o.crrMain ?? fileURLToPath(new URL("../cli/main.js", import.meta.url));
  }

  private stream(origin: string): Stream {
    const node = this.nodes.get(origin)!;
    const id = `${origin}#${node.epoch}`;
    let st = this.streams.get(id);
    if (!st) this.streams.set(id, (st = new Stream(origin, node.epoch)));
    return st;
  }

  private targets(origin: string, tenant: string): string[] {
    const others = this.s.regions.filter((r) => r !== origin);
    if (this.s.replication.mode !== "selective") return others;
    return (
      (this.s.replication.policies ?? [])
        .find((p) => p.tenantID === tenant)
        ?.targetRegions.filter((r) => r !== origin) ?? []
    );
  }

  async setUp(): Promise<void> {
    let seed = this.s.seed;
    for (const from of this.s.regions)
      for (const to of this.s.regions) {
        if (from === to) continue;
        const faults = faultsFor(this.s, from, to);
        this.proxies.set(`${from}->${to}`, await startTcpProxy({ targetPort: 0, faults, seed: seed++ }));
      }
    const selective = this.s.replication.mode === "selective";
    if (this.s.s3) this.s3 = await bucketFor(this.s.s3, this.dir);
    if (this.s.postgres) this.pg = await databasesFor(this.s.postgres, this.s.regions);
    this.mesh = await LocalMesh.start({
      root: this.dir,
      regions: this.s.regions,
      secret: this.secret,
      crr: selective
        ? () => ({ enabled: true, replicationMode: "selective", policies: this.s.replication.policies })
        : undefined,
      common: deepMerge(
        deepMerge(
          {
            shipper: { requestTimeoutMs: 3000, retryDelayMsMax: 500 },
            health: { probeIntervalMs: 1000 },
            log: { level: "warn" },
          },
          deepMerge(this.s3 ? this.s3Config() : {}, this.pg ? this.pgConfig() : {}),
        ),
        this.s.node,
      ),
      route: (from, to) => this.proxies.get(`${from}->${to}`),
      fronts: false,
      env: (name) => {
        const skew = this.s.drills.find((d) => d.kind === "clock-skew" && d.region === name) as
          { offsetMs: number } | undefined;
        return {
          ...(skew ? { CRR_CLOCK_OFFSET_MS: String(skew.offsetMs) } : {}),
          ...(this.s3?.local ? { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER" } : {}),
          ...(this.pg ? { CRR_PG_URL: this.pg.urls.get(name)! } : {}),
        };
      },
      output: "file",
      crrMain: this.crrMain,
    });
    for (const name of this.s.regions) {
      const mesh = this.mesh.node(name);
      this.nodes.set(name, {
        name,
        mesh,
        pool: new Pool(mesh.url, { connections: this.s.load.connectionsPerRegion }),
        epoch: 0,
        events: undefined,
      });
      await this.started(name);
    }
    // S3 as the transport: the HTTP links refuse during the load.
    if (this.s3) for (const p of this.proxies.values()) p.setTarget(0);
  }

  /** Every region's store in its own database (its URL, password included, only in the node's environment). */
  private pgConfig(): Record<string, unknown> {
    return { store: { kind: "postgres", url: "${CRR_PG_URL}", poolSize: this.s.postgres!.poolSize } };
  }

  /** Every region archives to the bucket and follows every other region's archive. */
  private s3Config(): Record<string, unknown> {
    const s3 = this.s.s3!;
    return {
      archive: {
        s3: {
          bucket: s3.bucket,
          endpoint: this.s3!.endpoint,
          forcePathStyle: true,
          region: "us-east-1",
          prefix: path.basename(this.dir),
        },
        intervalMs: s3.intervalMs,
        pollMs: s3.pollMs,
      },
      regions: Object.fromEntries(this.s.regions.map((r) => [r, { via: "s3" }])),
    };
  }

  /** S3 as the transport: once every record went through the bucket, the HTTP links again (shippers catch up). */
  private async throughS3ThenHttp(): Promise<void> {
    const until = Date.now() + 120_000;
    for (;;) {
      const all = await Promise.all(this.s.regions.map((r) => this.status(r)));
      if (all.every((st) => st) && new Set(all.map((st) => st!.store.digest)).size === 1) break;
      if (Date.now() > until) {
        this.notes.push("S3 transport: the regions did not converge through the bucket within 120 s");
        break;
      }
      await sleep(100);
    }
    for (const [id, proxy] of this.proxies) {
      const port = this.mesh!.node(id.split("->")[1]!).listenPort;
      if (port) proxy.setTarget(port);
    }
  }

  private async startNode(name: string): Promise<number> {
    const t0 = Date.now();
    await this.mesh!.startNode(name);
    const node = this.nodes.get(name)!;
    await node.pool.close().catch(() => undefined);
    node.pool = new Pool(node.mesh.url, { connections: this.s.load.connectionsPerRegion });
    await this.started(name);
    return Date.now() - t0;
  }

  /** A node just became ready: its stream's incarnation, and its event stream followed. */
  private async started(name: string): Promise<void> {
    const node = this.nodes.get(name)!;
    const status = (await this.get(node, "/v1/status")).body as RegionStatus;
    this.stream(name).incarnation = status.incarnation;
    this.subscribe(node);
  }

  private async get(node: Node, p: string): Promise<{ status: number; body: unknown }> {
    const res = await node.pool.request({ path: p, method: "GET", headersTimeout: 5000, bodyTimeout: 5000 });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      body: text.startsWith("{") || text.startsWith("[") ? JSON.parse(text) : text,
    };
  }

  /** Follow the node's event stream: what it applied from each origin, timed on arrival there. */
  private subscribe(node: Node): void {
    node.events?.abort();
    const ac = new AbortController();
    node.events = ac;
    void (async () => {
      try {
        const res = await node.pool.request({
          path: "/v1/admin/events",
          method: "GET",
          headers: { authorization: `Bearer ${this.mesh!.adminToken}` },
          signal: ac.signal,
          bodyTimeout: 0,
        });
        let buf = "";
        for await (const chunk of res.body) {
          // Split once per chunk (slicing the buffer once per event was quadratic: at tens of
          // thousands of events per second it took this process's CPU, and with it the fault
          // proxies the regions' traffic passes through).
          const events = (buf + chunk.toString()).split("\n\n");
          buf = events.pop()!;
          for (const line of events) {
            if (!line.startsWith("data: ")) continue;
            const e = JSON.parse(line.slice(6)) as {
              applied?: string;
              incarnation?: string;
              lsn: number;
              atMs: number;
            };
            if (e.applied === undefined) continue;
            const st = [...this.streams.values()].find(
              (x) => x.origin === e.applied && x.incarnation === e.incarnation,
            );
            if (!st) continue;
            let applied = st.appliedAt.get(node.name);
            if (!applied) st.appliedAt.set(node.name, (applied = []));
            for (let l = e.lsn; l >= 1 && applied[l] === undefined; l--) applied[l] = e.atMs;
          }
        }
      } catch {
        // The node was killed or the run is over.
      }
    })();
  }

  private loadOf(region: string): RegionLoad {
    let l = this.loads.get(region);
    if (!l)
      this.loads.set(
        region,
        (l = { region, offered: 0, acknowledged: 0, refused: 0, failed: 0, notOffered: 0 }),
      );
    return l;
  }

  private record(node: Node, seq: number) {
    const tenant = this.s.load.tenants[seq % this.s.load.tenants.length]!;
    const key = `${this.s.name}-${node.name}-${node.epoch}-${seq}`;
    const fill = Math.max(0, this.s.load.recordBytes - 60 - key.length - tenant.length);
    const body =
      this.s.load.body === "random"
        ? randomBytes(Math.ceil((fill * 3) / 4))
            .toString("base64")
            .slice(0, fill)
        : "x".repeat(fill);
    return { key, tenant, outcome: "accepted", body };
  }

  /** Note one answer: an acknowledgement goes to the ledger, anything else is counted. */
  private noteAnswer(
    node: Node,
    rec: ReturnType<CrrHarness["record"]>,
    status: number,
    body: { lsn?: number; hlc?: string; duplicate?: boolean },
  ): void {
    const load = this.loadOf(node.name);
    if (status === 429 || status === 503) {
      load.refused++;
      return;
    }
    if (status !== 200 || body.lsn === undefined || body.hlc === undefined || body.duplicate) {
      load.failed++;
      this.failed++;
      return;
    }
    load.acknowledged++;
    const st = this.stream(node.name);
    st.ackedAt[body.lsn] = Date.now();
    st.keys[body.lsn] = rec.key;
    st.tenants[body.lsn] = rec.tenant;
    st.hlcs[body.lsn] = body.hlc;
    st.bodies[body.lsn] = JSON.stringify(rec.body);
    st.maxAcked = Math.max(st.maxAcked, body.lsn);
  }

  /** Append records `seqs` of `node`: one request per record, or one batch request. */
  private async append(node: Node, seqs: number[]): Promise<void> {
    const recs = seqs.map((seq) => this.record(node, seq));
    const batch = this.s.load.batchRecords > 1;
    try {
      const res = await node.pool.request({
        path: batch ? "/v1/records/batch" : "/v1/records",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(batch ? recs : recs[0]),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const body = (await res.body.json()) as Record<string, unknown> | Array<Record<string, unknown>>;
      recs.forEach((rec, i) => {
        const answer = Array.isArray(body) ? body[i]! : body;
        const status = Array.isArray(body) ? ((answer.status as number | undefined) ?? 200) : res.statusCode;
        this.noteAnswer(node, rec, status, answer);
      });
    } catch {
      // The region is down (a drill): a client would retry elsewhere.
      this.loadOf(node.name).failed += recs.length;
      this.failed += recs.length;
    }
  }

  /**
   * Open loop: every 5 ms, append what the schedule says is due in every region, whatever is
   * pending, in requests of load.batchRecords records. Each region's client has its own bound
   * on unanswered records, so a region that answers slowly cannot take the others' share.
   */
  private async load(seconds: number): Promise<void> {
    const start = Date.now();
    const sent = new Map(this.s.regions.map((r) => [r, 0]));
    const unanswered = new Map(this.s.regions.map((r) => [r, 0]));
    const pending = new Set<Promise<void>>();
    const { batchRecords, inflightPerRegion } = this.s.load;
    let lastProgress = start;
    while (!this.stopLoad && Date.now() - start < seconds * 1000) {
      const due = Math.floor(((Date.now() - start) / 1000) * this.s.load.ratePerRegion);
      for (const node of this.nodes.values()) {
        const proc = node.mesh.proc;
        const load = this.loadOf(node.name);
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
          sent.set(node.name, due);
          continue;
        }
        for (let n = sent.get(node.name)!; n < due; n += batchRecords) {
          const seqs = Array.from({ length: Math.min(batchRecords, due - n) }, (_, i) => n + i);
          // Open loop, but bounded: past this the client is the bottleneck; count what it could not offer.
          if (unanswered.get(node.name)! + seqs.length > inflightPerRegion) {
            load.notOffered += seqs.length;
            continue;
          }
          load.offered += seqs.length;
          unanswered.set(node.name, unanswered.get(node.name)! + seqs.length);
          const p = this.append(node, seqs).finally(() => {
            pending.delete(p);
            unanswered.set(node.name, unanswered.get(node.name)! - seqs.length);
          });
          pending.add(p);
        }
        sent.set(node.name, due);
      }
      if (Date.now() - lastProgress >= 1000) {
        lastProgress = Date.now();
        await this.progress();
      }
      await sleep(5);
    }
    await Promise.all(pending);
  }

  private async progress(): Promise<void> {
    const parts: string[] = [];
    for (const node of this.nodes.values()) {
      const s = await this.get(node, "/v1/status")
        .then((r) => r.body as RegionStatus)
        .catch(() => undefined);
      if (s) this.noteFsyncs(node.name, s.wal.fsyncs);
      if (!s) parts.push(`${node.name} down`);
      else
        for (const p of s.peers) parts.push(`${node.name}→${p.peer} ${(p.lagSeconds * 1000).toFixed(0)}ms`);
    }
    const acked = [...this.streams.values()].reduce(
      (n, st) => n + st.ackedAt.filter((t) => t !== undefined).length,
      0,
    );
    const elapsed = (Date.now() - this.startedAt) / 1000;
    this.o.progress(
      `  [${elapsed.toFixed(0)}s] acked ${acked} (${Math.round(acked / elapsed)}/s)  lag: ${parts.join("  ")}`,
    );
  }

  private async status(name: string): Promise<RegionStatus | undefined> {
    return this.get(this.nodes.get(name)!, "/v1/status")
      .then((r) => r.body as RegionStatus)
      .catch(() => undefined);
  }

  /** Wait until every region applied every other's durable records and digests agree. */
  private async converged(timeoutMs: number): Promise<RegionStatus[] | undefined> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const all = (await Promise.all(this.s.regions.map((r) => this.status(r)))).filter(
        (s): s is RegionStatus => s !== undefined,
      );
      const caught =
        all.length === this.s.regions.length &&
        all.every((s) => s.peers.every((p) => p.behindRecords === 0)) &&
        (this.s.replication.mode === "selective" || new Set(all.map((s) => s.store.digest)).size === 1);
      if (caught) return all;
      await sleep(100);
    }
    return undefined;
  }

  private async runDrill(d: Scenario["drills"][number]): Promise<void> {
    if (d.kind === "clock-skew") {
      this.drills.push({
        kind: d.kind,
        region: d.region,
        atSeconds: 0,
        note: `${d.region} runs with its clock ${d.offsetMs} ms off`,
      });
      return;
    }
    await sleep(Math.max(0, this.startedAt + d.atSeconds * 1000 - Date.now()));
    if (d.kind === "partition") {
      const [a, b] = d.regions;
      const links = [this.proxies.get(`${a}->${b}`)!, this.proxies.get(`${b}->${a}`)!];
      this.o.progress(`  drill: partition ${a} <-> ${b} for ${d.forSeconds} s`);
      links.forEach((l) => l.setMode("blackhole"));
      await sleep(d.forSeconds * 1000);
      links.forEach((l) => l.setMode("forward"));
      const healed = Date.now();
      // Converged = both sides applied everything the other had durable at the heal.
      const [sa, sb] = await Promise.all([this.status(a), this.status(b)]);
      const until = healed + 120_000;
      let convergedMs: number | undefined;
      while (Date.now() < until && sa && sb) {
        const [na, nb] = await Promise.all([this.status(a), this.status(b)]);
        if (
          na &&
          nb &&
          (na.watermarks[b] ?? 0) >= sb.wal.durableLsn &&
          (nb.watermarks[a] ?? 0) >= sa.wal.durableLsn
        ) {
          convergedMs = Date.now() - healed;
          break;
        }
        await sleep(20);
      }
      this.drills.push({ kind: d.kind, region: `${a}<->${b}`, atSeconds: d.atSeconds, convergedMs });
      return;
    }
    const node = this.nodes.get(d.region)!;
    this.o.progress(`  drill: ${d.kind} of ${d.region}`);
    const killedAt = Date.now();
    node.events?.abort();
    await this.mesh!.stopNode(d.region, "SIGKILL");
    let lostRecords: number | undefined;
    let lostSeconds: number | undefined;
    if (d.kind === "disk-loss") {
      // RPO: what this region acknowledged that no other region had applied when the disk was lost.
      const st = this.stream(d.region);
      const others = await Promise.all(
        this.s.regions.filter((r) => r !== d.region).map((r) => this.status(r)),
      );
      const replicated = Math.max(0, ...others.map((s) => s?.watermarks[d.region] ?? 0));
      const lost = st.ackedAt
        .map((t, lsn) => ({ t, lsn }))
        .filter((x) => x.t !== undefined && x.lsn > replicated);
      lostRecords = lost.length;
      lostSeconds = lost.length ? (killedAt - Math.min(...lost.map((x) => x.t))) / 1000 : 0;
      fs.rmSync(node.mesh.dataDir, { recursive: true, force: true });
      node.epoch++;
    }
    await sleep((d.downSeconds ?? 2) * 1000);
    if (d.kind === "disk-loss") {
      // The operator's move on a new disk: rebuild the store from the peers, then start.
      // Asynchronously: the fault proxies live in this process and must keep forwarding.
      const rebuild = await this.mesh!.runCommand(d.region, ["rebuild"]);
      if (rebuild.status !== 0)
        this.notes.push(`rebuild of ${d.region} after its disk loss failed: ${rebuild.stderr.slice(-300)}`);
    }
    // RTO is measured from the restart (a supervisor's delay before it is not the engine's).
    const restartAt = Date.now();
    await this.startNode(d.region);
    const readyAt = Date.now();
    // Caught up: it applied what the others had durable when it came back.
    const others = await Promise.all(
      this.s.regions
        .filter((r) => r !== d.region)
        .map(async (r) => [r, (await this.status(r))?.wal.durableLsn ?? 0] as const),
    );
    let caughtUpMs: number | undefined;
    while (Date.now() - readyAt < 120_000) {
      const s = await this.status(d.region);
      if (s && others.every(([r, lsn]) => (s.watermarks[r] ?? 0) >= lsn)) {
        caughtUpMs = Date.now() - restartAt;
        break;
      }
      await sleep(20);
    }
    this.drills.push({
      kind: d.kind,
      region: d.region,
      atSeconds: d.atSeconds,
      readyMs: readyAt - restartAt,
      caughtUpMs,
      lostRecords,
      lostSeconds,
    });
  }

  private noteFsyncs(region: string, count: number): number {
    const f = this.fsyncs.get(region) ?? { earlier: 0, last: 0 };
    this.fsyncs.set(region, f);
    return countAcrossRestarts(f, count);
  }

  private async metric(node: Node, name: string): Promise<number> {
    const text = (await this.get(node, "/metrics").catch(() => ({ body: "" }))).body as string;
    const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : NaN;
  }

  private resetTimers: NodeJS.Timeout[] = [];

  async run(): Promise<RunResult> {
    const total = this.s.load.warmupSeconds + this.s.load.durationSeconds;
    this.o.progress(
      `crr: ${this.s.regions.length} regions, ${this.s.load.ratePerRegion}/s each, ${total} s (data in ${this.dir})`,
    );
    this.startedAt = Date.now();
    for (const [id, proxy] of this.proxies) {
      const [from, to] = id.split("->") as [string, string];
      const every = faultsFor(this.s, from, to)?.resetEverySeconds;
      if (every) this.resetTimers.push(setInterval(() => proxy.resetConnections(), every * 1000));
    }
    const drills = Promise.all(this.s.drills.map((d) => this.runDrill(d)));
    await this.load(total);
    await drills;
    this.resetTimers.forEach(clearInterval);
    for (const p of this.proxies.values()) p.setFaults({});
    if (this.s3) await this.throughS3ThenHttp();
    this.o.progress("  load done; waiting for every region to converge");
    const final = await this.converged(120_000);
    await sleep(300); // let the last acknowledgement events arrive
    return this.collect(final);
  }

  private async collect(final: RegionStatus[] | undefined): Promise<RunResult> {
    const links = new Map<string, { h: ReturnType<typeof histogram>; perSecond: number[] }>();
    const all = histogram();
    const warm = this.startedAt + this.s.load.warmupSeconds * 1000;
    let acknowledged = 0;
    let missing = 0;
    const ackedPerSecond = new Map<string, number[]>();
    const lost = new Set(this.drills.filter((d) => d.kind === "disk-loss").map((d) => d.region));
    for (const st of this.streams.values()) {
      let counts = ackedPerSecond.get(st.origin);
      if (!counts) ackedPerSecond.set(st.origin, (counts = []));
      for (let lsn = 1; lsn <= st.maxAcked; lsn++) {
        const t = st.ackedAt[lsn];
        if (t === undefined) continue;
        acknowledged++;
        const ackSec = Math.floor((t - this.startedAt) / 1000);
        counts[ackSec] = (counts[ackSec] ?? 0) + 1;
        for (const peer of this.targets(st.origin, st.tenants[lsn]!)) {
          const id = `${st.origin}->${peer}`;
          let link = links.get(id);
          if (!link) links.set(id, (link = { h: histogram(), perSecond: [] }));
          const applied = st.appliedAt.get(peer)?.[lsn];
          if (applied === undefined) {
            // A stream of a region whose disk was lost may have records no peer got (that is the RPO).
            const superseded = lost.has(st.origin) && this.nodes.get(st.origin)!.epoch !== st.epoch;
            if (!superseded) missing++;
            continue;
          }
          if (t < warm) continue;
          const lagUs = Math.max(1, (applied - t) * 1000);
          link.h.recordValue(lagUs);
          all.recordValue(lagUs);
          const sec = Math.floor((t - this.startedAt) / 1000);
          link.perSecond[sec] = Math.max(link.perSecond[sec] ?? 0, applied - t);
        }
      }
    }
    const digests = final ? new Set(final.map((s) => s.store.digest)) : new Set<string>();
    const ledger = final ? await this.checkStores(lost) : undefined;
    const integrityOk =
      final !== undefined &&
      missing === 0 &&
      ledger?.wrong === 0 &&
      (this.s.replication.mode === "selective" || digests.size === 1);
    const detail = !final
      ? "regions did not converge within 120 s after the load"
      : missing > 0
        ? `${missing} acknowledged record copies never reached a region their policy targets`
        : ledger!.wrong > 0
          ? `${ledger!.wrong} of ${ledger!.checked} acknowledged record copies are missing or changed in the stores (${ledger!.examples.join("; ")})`
          : `all ${ledger!.checked} acknowledged record copies are in the stores of every targeted region exactly as acknowledged${this.s.replication.mode === "selective" ? "" : "; all digests equal"}`;
    const resources = await Promise.all(
      [...this.nodes.values()].map(async (n) => ({
        region: n.name,
        cpuSeconds: await this.metric(n, "crr_process_cpu_seconds_total"),
        rssMiB: (await this.metric(n, "crr_process_resident_memory_bytes")) / 1024 / 1024,
        fsyncs: this.noteFsyncs(n.name, (await this.status(n.name))?.wal.fsyncs ?? 0),
      })),
    );
    const seconds = this.s.load.warmupSeconds + this.s.load.durationSeconds;
    if (this.s3) await this.noteS3Requests(acknowledged);
    for (const l of this.loads.values())
      if (l.notOffered > 0)
        this.notes.push(
          `${l.region}'s client could not offer ${l.notOffered} appends (${this.s.load.inflightPerRegion} already unanswered): the offered rate exceeded what the region acknowledged`,
        );
    return {
      system: "crr",
      scenario: this.s.name,
      mode: this.s.load.batchRecords > 1 ? `batches of ${this.s.load.batchRecords}` : "per-record",
      perRegion: this.s.regions.map((r) => this.loadOf(r)),
      durationSeconds: seconds,
      appendedPerS: acknowledged / seconds,
      acknowledged,
      failedAppends: this.failed,
      acknowledgedPerSecond: this.s.regions.map((region) => ({
        region,
        counts: Array.from({ length: Math.ceil(seconds) }, (_, i) => ackedPerSecond.get(region)?.[i] ?? 0),
      })),
      links: [...links].map(([id, l]) => {
        const [from, to] = id.split("->") as [string, string];
        return {
          from,
          to,
          lagMs: summarize(l.h),
          lagMsMaxPerSecond: Array.from({ length: Math.ceil(seconds) }, (_, i) => l.perSecond[i] ?? 0),
          wireBytes: this.proxies.get(id)?.stats().bytes,
        };
      }),
      lagMs: summarize(all),
      drills: this.drills,
      integrity: { ok: integrityOk, detail },
      resources,
      notes: this.notes,
    };
  }

  /** S3 requests of every region (archive and followers) per acknowledged record. */
  private async noteS3Requests(acknowledged: number): Promise<void> {
    const sum = { put: 0, get: 0, list: 0 };
    for (const r of this.s.regions) {
      const st = (await this.status(r)) as unknown as
        { archive?: { s3: { requests: typeof sum } } } | undefined;
      for (const op of ["put", "get", "list"] as const) sum[op] += st?.archive?.s3.requests[op] ?? 0;
    }
    const total = sum.put + sum.get + sum.list;
    this.notes.push(
      `S3 transport (HTTP links refused during the load): ${sum.put} PUT, ${sum.get} GET, ${sum.list} LIST in all regions, ${(total / Math.max(1, acknowledged)).toFixed(3)} requests per acknowledged record`,
    );
  }

  /** Every acknowledged answer against every targeted region's store file (a lost disk's unreplicated tail excepted: that is its RPO). */
  private async checkStores(lostRegions: ReadonlySet<string | undefined>): Promise<LedgerCheck> {
    const acked: AckedRecord[] = [];
    for (const st of this.streams.values()) {
      if (lostRegions.has(st.origin) && this.nodes.get(st.origin)!.epoch !== st.epoch) continue;
      for (let lsn = 1; lsn <= st.maxAcked; lsn++) {
        if (st.ackedAt[lsn] === undefined) continue;
        acked.push({
          key: st.keys[lsn]!,
          tenant: st.tenants[lsn]!,
          outcome: "accepted",
          bodyJson: st.bodies[lsn]!,
          origin: st.origin,
          lsn,
          hlc: st.hlcs[lsn]!,
          targets: [st.origin, ...this.targets(st.origin, st.tenants[lsn]!)],
        });
      }
    }
    const sources = [...this.nodes.values()].map((n): [string, StoreSource] => {
      const url = this.pg?.urls.get(n.name);
      return [n.name, url ? { postgresUrl: url } : { dataDir: n.mesh.dataDir }];
    });
    return checkLedger(new Map(sources), acked);
  }

  async tearDown(keep = false): Promise<void> {
    this.stopLoad = true;
    this.resetTimers.forEach(clearInterval);
    await Promise.all(
      [...this.nodes.values()].map(async (n) => {
        n.events?.abort();
        await stopProcess(n.mesh.proc);
        await n.pool.close().catch(() => undefined);
      }),
    );
    await this.mesh?.stop();
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
    await this.s3?.local?.close();
    await this.pg?.server?.stop();
    if (!keep) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The bucket of an S3-transport scenario: its endpoint, or an s3rver started on loopback
 * (a devDependency, loaded only here: a scenario can name an endpoint where it is missing).
 */
async function bucketFor(
  s3: NonNullable<Scenario["s3"]>,
  dir: string,
): Promise<{ endpoint: string; local?: { close(): Promise<void> } }> {
  if (s3.endpoint) return { endpoint: s3.endpoint };
  const name = "s3rver";
  let S3rver: new (o: Record<string, unknown>) => {
    run(): Promise<{ port: number }>;
    close(): Promise<void>;
  };
  try {
    S3rver = ((await import(name)) as { default: typeof S3rver }).default;
  } catch {
    throw new Error("the scenario's s3 names no endpoint and s3rver is not installed: give s3.endpoint");
  }
  const server = new S3rver({
    port: 0,
    address: "127.0.0.1",
    silent: true,
    directory: path.join(dir, "s3"),
    configureBuckets: [{ name: s3.bucket }],
  });
  const { port } = await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, local: server };
}

/** One new database per region, on the scenario's server or on a temporary cluster started here. */
async function databasesFor(
  o: NonNullable<Scenario["postgres"]>,
  regions: readonly string[],
): Promise<{ urls: Map<string, string>; server?: PostgresServer }> {
  const server = o.url ? undefined : await startPostgres();
  const base = o.url ?? server!.url;
  const urls = new Map<string, string>();
  for (const r of regions)
    urls.set(r, await freshDatabase(base, `crr_bench_${r.replace(/[^A-Za-z0-9]/g, "_")}`));
  return { urls, server };
}
