/**
 * One simulated run from its seed: a mesh of 3–5 regions, clients appending (shared keys
 * for conflicts, several tenants, sometimes selective policies), faults at random
 * (partitions, lost/duplicated/corrupted messages, crashes that drop unsynced writes and
 * tear the last one, clock skew), then heal, settle and check. Same seed, same run.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { checkCluster } from "./check.js";
import { SimCluster, type ClusterOptions } from "./cluster.js";
import { handEdit, reconcileHandEdits } from "./hand-edit.js";
import {
  acceptWalLoss,
  declareFrozenLost,
  leaveLostNodes,
  loseStore,
  replaceLeftNodes,
  skipGap,
  wipe,
} from "./operator.js";
import { Scheduler } from "./scheduler.js";
import { PostgresSimStores, SqliteSimStores, type SimStores } from "./store.js";

export interface SimOptions {
  seed: number;
  /** Virtual milliseconds of traffic and faults before the heal (default 30 s). */
  activeMs?: number;
  /** Inject faults (default true). */
  faults?: boolean;
  /** Keep the data directories (default: removed when the run passes). */
  keep?: boolean;
  /** Keep the trace's lines in the result (default: only its hash). */
  trace?: boolean;
  /** Where the run's data directories go (default: simBaseDir()). */
  baseDir?: string;
  /**
   * Run the regions' stores on PostgreSQL: one database per region (`crr_sim_<region>`,
   * created if missing, emptied first) on the server `url` names. Default: SQLite.
   */
  postgres?: { url: string };
  /**
   * On PostgreSQL, serve some regions by several nodes on their one store, as many as the
   * seed picks (default true; SQLite serves every region by one node).
   */
  severalNodes?: boolean;
  /**
   * Wall-clock milliseconds the run may take before it fails, naming where it was, and lets
   * go of its stores (a test's timeout would leave it running, holding its server's lock).
   * Default: none.
   */
  wallMsMax?: number;
}

/**
 * /dev/shm where there is one: the simulated disk keeps its own durable image, so the real
 * fsyncs and renames under it buy nothing, and on a real disk they took a third of a run's
 * wall time here. Else the system's temporary directory.
 */
export function simBaseDir(): string {
  try {
    fs.accessSync("/dev/shm", fs.constants.W_OK);
    return "/dev/shm";
  } catch {
    return os.tmpdir();
  }
}

export interface SimResult {
  seed: number;
  /** The stores the regions ran on (a PostgreSQL run is not replayed byte for byte). */
  store: SimStores["kind"];
  ok: boolean;
  problems: string[];
  regions: number;
  /** Nodes serving them (more than regions when some are served by several). */
  nodes: number;
  acknowledged: number;
  /** Acknowledgements given up: their only copy was on a lost disk or in a WAL whose loss the operator accepted. */
  givenUp: number;
  crashes: number;
  /** Whether shippers coded their batches in this run, and how many they sent coded. */
  compression: boolean;
  codedBatches: number;
  simMs: number;
  wallMs: number;
  events: number;
  traceHash: string;
  /** Faults, boots, crashes and acknowledgements in order (with `trace`). */
  lines: string[];
  dir: string;
}

const tenantIds = ["t0", "t1", "t2"];

function policies(s: Scheduler, regions: string[]) {
  if (!s.chance(0.3)) return undefined;
  return tenantIds.map((tenantID) => {
    const targets = regions.filter(() => s.chance(0.7));
    while (targets.length < 2) {
      const r = s.pick(regions);
      if (!targets.includes(r)) targets.push(r);
    }
    return { tenantID, targetRegions: regions.filter((r) => targets.includes(r)) };
  });
}

type Policies = NonNullable<ClusterOptions["tenants"]>;

/**
 * A wider policy: one more region for one tenant, or now and then every tenant everywhere
 * (undefined: a multi-way mesh, what the shipper calls "*").
 */
function widened(
  policies: Policies,
  regions: string[],
  dice: ReturnType<Scheduler["side"]>,
): Policies | undefined {
  const short = policies.filter((p) => p.targetRegions.length < regions.length);
  if (short.length === 0 || dice.chance(0.3)) return undefined;
  const p = dice.pick(short);
  const more = dice.pick(regions.filter((r) => !p.targetRegions.includes(r)));
  return policies.map((x) =>
    x === p ? { ...x, targetRegions: regions.filter((r) => r === more || x.targetRegions.includes(r)) } : x,
  );
}

/** How many nodes serve each region (PostgreSQL runs): one, two or three, by the seed. */
function nodeCounts(s: Scheduler, regions: string[]): Record<string, number> {
  return Object.fromEntries(regions.map((r) => [r, s.pick([1, 1, 2, 2, 3])]));
}

function workload(c: SimCluster, untilMs: number): void {
  const s = c.sched;
  const tick = () => {
    if (s.nowMs >= untilMs) return;
    const tenant = s.pick(tenantIds);
    // A tenant is written where its policy keeps it (README: selective meshes are symmetric).
    const policy = c.o.tenants?.find((p) => p.tenantID === tenant);
    const up = c.up().filter((n) => !policy || policy.targetRegions.includes(n.regionName));
    if (up.length > 0) {
      const n = s.pick(up);
      const key = `${tenant}/k${s.int(0, 40)}`;
      void c.append(n.name, {
        key,
        tenant,
        outcome: s.pick(["approve", "deny"]),
        body: { n: s.int(0, 1e6) },
      });
      // Now and then a client retries through another node of the region at once: two nodes
      // given one key at the same moment (what the claim in the shared store decides).
      const fellows = up.filter((x) => x.regionName === n.regionName && x !== n);
      if (fellows.length > 0 && s.chance(0.2))
        void c.append(s.pick(fellows).name, {
          key,
          tenant,
          outcome: s.pick(["approve", "deny"]),
          body: { n: s.int(0, 1e6) },
        });
    }
    s.after(s.int(5, 60), tick);
  };
  s.after(0, tick);
}

function faults(c: SimCluster, untilMs: number): void {
  const s = c.sched;
  const names = [...c.nodes.keys()];
  const tick = () => {
    if (s.nowMs >= untilMs) return;
    const kind = s.int(0, 9);
    // A node `a`, its region `ra`, and another region `b`.
    const a = s.pick(names);
    const ra = c.regionOf(a);
    const b = s.pick(c.o.regions.filter((x) => x !== ra));
    if (kind === 0) {
      c.net.partition(ra, b, true);
      s.note(`partition ${ra} ${b}`);
      s.after(s.int(500, 8000), () => c.net.partition(ra, b, false));
    } else if (kind === 1 && c.several(ra) && s.chance(0.6)) {
      // A node of a region with several stalls; now and then the operator takes it for dead
      // and declares it gone before it thaws (the fence in the shared store is what holds).
      const ms = s.int(2000, 20_000);
      c.freeze(a, ms);
      if (s.chance(0.5)) s.after(s.int(500, ms - 500), () => declareFrozenLost(c, a));
      s.after(ms + 2500, () => replaceLeftNodes(c));
    } else if (kind === 1) {
      const torn = s.chance(0.5);
      c.crash(a, { torn });
      s.after(s.int(200, 5000), () => void c.boot(a));
    } else if (kind === 2) {
      c.net.faults = { ...c.net.faults, loss: 0.2, duplicate: 0.2, corrupt: 0.1 };
      s.note("lossy network");
      s.after(
        s.int(500, 4000),
        () => (c.net.faults = { ...c.net.faults, loss: 0, duplicate: 0, corrupt: 0 }),
      );
    } else if (kind === 3) {
      // Skew within what peers accept, or now and then a jump far beyond it.
      c.nodes.get(a)!.proc.skewMs = s.chance(0.8)
        ? s.int(-1500, 1500)
        : s.pick([-1, 1]) * s.int(10_000, 120_000);
      s.note(`skew ${a} ${c.nodes.get(a)!.proc.skewMs}`);
    } else if (kind === 6 || kind === 7 || kind === 8) {
      // Damage while down: a lost disk (only when every other region is up to hold its
      // records), a lost store, or a bit flipped in the WAL's tail; then it starts again.
      if (kind === 6 && c.up().length < c.nodes.size) return void s.after(s.int(300, 3000), tick);
      // A lost store is every node's of the region: each is down when it goes.
      const down = kind === 7 ? c.nodesOf(ra).map((n) => n.name) : [a];
      for (const x of down) c.crash(x, { torn: s.chance(0.5) });
      if (kind === 6) s.task(`wipe ${a}`, wipe(c, a));
      else if (kind === 7) s.task(`lose-store ${ra}`, loseStore(c, ra));
      else c.flipWalBit(a, 2048);
      s.after(s.int(200, 3000), () => down.forEach((x) => void c.boot(x)));
    } else if (kind === 9 && c.o.stores.kind === "postgres" && s.chance(0.5)) {
      // A node loses its connections to the shared store (a network fault between the two)
      // while its peers and clients still reach it.
      c.cutFromStore(a, s.int(500, 8000));
    } else if (kind === 9) {
      const dir = c.nodes.get(a)!.config.dataDir;
      c.disk.full.add(dir);
      s.note(`disk full ${a}`);
      s.after(s.int(500, 4000), () => c.disk.full.delete(dir));
    } else if (kind === 5) {
      // The operator takes a peer out of a region's configuration and later puts it back
      // (long enough for retention to drop segments the peer never received).
      void c.setPeer(ra, b, false);
      s.after(s.int(2000, 15_000), () => void c.setPeer(ra, b, true));
    } else if (kind === 4) {
      c.net.faults = { ...c.net.faults, delayMsMin: 50, delayMsMax: 400 };
      s.after(s.int(1000, 5000), () => (c.net.faults = { ...c.net.faults, delayMsMin: 5, delayMsMax: 60 }));
    }
    s.after(s.int(300, 3000), tick);
  };
  s.after(s.int(500, 2000), tick);
}

/**
 * Whether every region is up and every shipper has its peer's acknowledgement of everything
 * durable. A node marked left and not yet replaced by the operator is not settled: the run
 * must not end (and its checks run) while the replacement is still to come, nor while a node
 * is stalled (seed 46 on PostgreSQL, probably: the check found a node booting, which only a
 * replacement after the final verification explains).
 */
function settled(c: SimCluster): boolean {
  const up = c.up();
  if (up.length !== c.nodes.size) return false;
  if (up.some((n) => n.region!.stopped?.includes("was marked left"))) return false;
  // A stalled node may still learn it was marked left when it thaws.
  if (up.some((n) => (n.proc.frozenUntilMs ?? 0) > c.sched.nowMs)) return false;
  // Caught up, not only acknowledged: a session ships older incarnations and backfills before
  // it catches up, and a shipper failing since a restart may still owe them with nothing new to
  // acknowledge (seed 656: a peer's replay floor, set under a clock since put back, refused a
  // wiped region's requests for 30 s; its older stream had not reached that peer yet).
  return up.every((n) =>
    [...n.region!.shippers.values()].every(
      (sh) => sh.state === "caught-up" && sh.acked >= n.region!.wal.durableLsn,
    ),
  );
}

/** Wait for `p` while the scheduler runs (what it waits for happens in simulated time). */
async function drive<T>(s: Scheduler, p: Promise<T>): Promise<T> {
  // Its outcome is taken at once: a rejection while the scheduler runs is this call's
  // failure, not an unhandled one that ends the process (seed 5 on PostgreSQL did).
  const box: { end?: { value: T } | { err: unknown } } = {};
  void p.then(
    (value) => (box.end = { value }),
    (err: unknown) => (box.end = { err }),
  );
  const deadline = s.nowMs + 600_000;
  while (!box.end) {
    if (s.nowMs > deadline) throw new Error("simulation: a call did not end within 600 simulated seconds");
    await s.runUntil(s.nowMs + 100);
  }
  if ("err" in box.end) throw box.end.err;
  return box.end.value;
}

export async function runSeed(o: SimOptions): Promise<SimResult> {
  const started = performance.now();
  const s = new Scheduler(o.seed);
  s.keepLines = o.trace ?? false;
  if (o.wallMsMax !== undefined) s.wallDeadlineMs = performance.now() + o.wallMsMax;
  const count = s.int(3, 5);
  const regions = Array.from({ length: count }, (_, i) => `r${i}`);
  const dir = fs.mkdtempSync(path.join(o.baseDir ?? simBaseDir(), `crr-sim-${o.seed}-`));
  const stores = o.postgres
    ? await PostgresSimStores.open(s, o.postgres.url, regions)
    : new SqliteSimStores();
  try {
    return await simulate(o, { s, stores, regions, dir, started });
  } finally {
    await stores.close();
  }
}

async function simulate(
  o: SimOptions,
  run: { s: Scheduler; stores: SimStores; regions: string[]; dir: string; started: number },
): Promise<SimResult> {
  const { s, stores, regions, dir } = run;
  const tenants = policies(s, regions);
  const counts = o.postgres && (o.severalNodes ?? true) ? nodeCounts(s, regions) : undefined;
  // Half the runs code their batches (a generator of its own: the others keep their schedule),
  // so a coded batch meets loss, duplicates, bit flips and nodes restarting too.
  const compression = s.side("compression").chance(0.5);
  const c = new SimCluster(s, { regions, tenants, baseDir: dir, stores, nodeCounts: counts, compression });
  if (counts) s.note(`nodes ${JSON.stringify(counts)}`);
  if (compression) s.note("compression gzip");
  let result: SimResult | undefined;
  try {
    return (result = await play(o, { ...run, c }));
  } finally {
    // The run is over (or failed): every process dies (timers with it) and what it held is
    // let go, so a long search keeps its memory flat and a failed run holds no connection.
    await c.end();
    if (result?.ok && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function play(
  o: SimOptions,
  run: { s: Scheduler; stores: SimStores; regions: string[]; dir: string; started: number; c: SimCluster },
): Promise<SimResult> {
  const { s, stores, regions, dir, started, c } = run;
  const count = regions.length;
  const t0 = s.nowMs;
  const activeMs = o.activeMs ?? 30_000;
  for (const n of c.nodes.keys()) s.after(0, () => void c.boot(n, { startAlone: true }));
  workload(c, t0 + activeMs);
  if (o.faults ?? true) faults(c, t0 + activeMs);
  const sample = () => {
    s.task("watermark sample", c.watch.sample());
    s.after(250, sample);
  };
  s.after(0, sample);
  await s.runUntil(t0 + activeMs);
  // Heal: the network is whole again and every region that is down starts.
  c.net.cut.clear();
  c.disk.full.clear();
  c.o.stores.uncutAll?.();
  c.net.faults = { loss: 0, duplicate: 0, corrupt: 0, delayMsMin: 5, delayMsMax: 60 };
  for (const n of c.nodes.values()) n.proc.skewMs = 0;
  for (const n of c.nodes.values()) for (const p of [...n.removed]) void c.setPeer(n.regionName, p, true);
  // Now and then an operator widens a selective policy (its own generator: runs that do not
  // widen keep their schedule).
  const widen = s.side("widen a policy");
  if (c.o.tenants && widen.chance(0.4)) void c.setPolicies(widened(c.o.tenants, c.o.regions, widen));
  // Now and then an operator edits a store by hand once traffic has stopped (hand-edit.ts).
  if (s.chance(0.3) && c.up().length > 0) await handEdit(c, s.pick(c.up()).name);
  const problems: string[] = [];
  // A clock that jumped far ahead keeps its HLC there: peers refuse its records until their
  // own clocks are within the allowed skew of it (at most a minute after the heal here).
  const deadline = s.nowMs + 180_000;
  // Settled: every region up, every shipper acknowledged, and no divergence left (older
  // incarnations backfill after that, and records stamped ahead by a clock that jumped are
  // taken only once the peers' clocks are within the allowed skew of them).
  let verifiedAtMs = -Infinity;
  while (s.nowMs < deadline) {
    if (settled(c) && s.nowMs - verifiedAtMs >= 5000) {
      verifiedAtMs = s.nowMs;
      let findings = 0;
      for (const n of c.up()) {
        // The operator's `crr verify` scrubs every bucket first (what finds a hand edit).
        const report = await drive(s, n.region!.verify({ fullScrub: c.handEdited.size > 0 }));
        findings += report.findings.length;
        if (n.region) await drive(s, reconcileHandEdits(c, n.name, report.findings));
      }
      // Settled again after the verification's simulated seconds: a shipper may have learnt
      // meanwhile that a peer it counted as caught up (from its saved acknowledgement) is
      // behind, e.g. a wiped peer (seed 11 stopped waiting there, before the operator's skip).
      if (findings === 0 && settled(c)) break;
    }
    for (const n of c.nodes.values()) if (n.state === "down") void c.boot(n.name);
    leaveLostNodes(c);
    replaceLeftNodes(c);
    // The operator reads a refusal over a damaged WAL and accepts the loss (audited).
    for (const n of c.nodes.values()) if (n.state === "refused") void acceptWalLoss(c, n.name);
    // And to a shipper stuck on LSNs nobody holds: the skip its error names (audited).
    for (const n of c.up())
      for (const [peer, sh] of n.region!.shippers) {
        const m = /crr skip-gap .* --through (\d+)/.exec(sh.lastError ?? "");
        if (m && sh.state === "failing") void skipGap(c, n.name, peer, Number(m[1]));
      }
    await s.runUntil(s.nowMs + 1000);
  }
  if (!settled(c)) {
    problems.push("the mesh did not settle within 180 simulated seconds after the heal");
    for (const n of c.nodes.values()) {
      if (!n.region) {
        problems.push(`  ${n.name}: ${n.state} ${n.refusal ?? ""}`);
        continue;
      }
      const st = await n.region.status();
      problems.push(
        `  ${n.name}: ${n.state} durable=${n.region.wal.durableLsn} stopped=${n.region.stopped ?? "-"} ${JSON.stringify(st.peers)}`,
      );
    }
  }
  for (const n of c.up())
    if (n.region!.stopped !== undefined)
      problems.push(`${n.name}: still stopped taking appends after settling: ${n.region!.stopped}`);
  for (const n of c.up()) {
    const report = await drive(s, n.region!.verify());
    for (const f of report.findings)
      problems.push(`${n.name}: divergence after settling: ${f.kind} ${f.key} with ${f.remote}`);
  }
  problems.push(
    ...s.failures.map((f) => `simulator: ${f}`),
    ...c.disk.misuse.slice(0, 5).map((m) => `file descriptor misused: ${m}`),
    ...c.problems.slice(0, 20),
    ...c.watch.problems,
    ...(await checkCluster(c)),
  );
  const result: SimResult = {
    seed: o.seed,
    store: stores.kind,
    ok: problems.length === 0,
    problems,
    regions: count,
    nodes: c.nodes.size,
    acknowledged: c.ledger.length,
    givenUp: c.ledger.filter((e) => e.lost).length,
    crashes: [...c.nodes.values()].reduce((n, x) => n + x.crashes, 0),
    compression: c.o.compression === true,
    codedBatches: c.codedBatches,
    simMs: s.nowMs - t0,
    wallMs: performance.now() - started,
    events: s.events,
    traceHash: s.traceHash(),
    lines: s.lines,
    dir,
  };
  return result;
}
