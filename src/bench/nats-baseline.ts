/**
 * The baseline a team would otherwise pick: a NATS JetStream mirror between two local
 * nats-server processes (stream on A, mirror on B over a leafnode link with JetStream
 * domains, file storage), the same open-loop load with acknowledged publishes, and the
 * scenario's faults on the leafnode link through the same fault proxy. Lag of a message =
 * publish acknowledged on A -> delivered from B's mirror to an ordered consumer.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { StorageType, connect, type NatsConnection } from "nats";
import { startTcpProxy, type TcpProxy } from "../faults/index.js";
import { histogram, summarize, type DrillResult, type RunResult } from "./harness.js";
import { faultsFor, type Scenario } from "./scenario.js";
import { freePort } from "../util/process.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where nats-server is, or why it is not there. */
export function findNatsServer(): { path: string; version: string } | { missing: string } {
  for (const candidate of [
    process.env.NATS_SERVER,
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "nats-server",
  ]) {
    if (!candidate) continue;
    const r = spawnSync(candidate, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return { path: candidate, version: r.stdout.trim() };
  }
  return { missing: "nats-server not found (Debian package nats-server; .ci/run installs it)" };
}

interface Server {
  name: string;
  port: number;
  conf: string;
  proc: ChildProcess | undefined;
}

export async function runNatsBaseline(
  s: Scenario,
  binary: string,
  progress: (line: string) => void,
): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-bench-nats-"));
  const [pa, pb, leaf] = [await freePort(), await freePort(), await freePort()];
  const [regionA, regionB] = [s.regions[0]!, s.regions[1]!];
  const proxy: TcpProxy = await startTcpProxy({
    targetPort: leaf,
    faults: faultsFor(s, regionA, regionB),
    seed: s.seed,
  });
  const a: Server = { name: "a", port: pa, conf: path.join(dir, "a.conf"), proc: undefined };
  const b: Server = { name: "b", port: pb, conf: path.join(dir, "b.conf"), proc: undefined };
  fs.writeFileSync(
    a.conf,
    `listen: 127.0.0.1:${pa}\njetstream { store_dir: "${path.join(dir, "a")}", domain: hub }\nleafnodes { listen: 127.0.0.1:${leaf} }\n`,
  );
  fs.writeFileSync(
    b.conf,
    `listen: 127.0.0.1:${pb}\njetstream { store_dir: "${path.join(dir, "b")}", domain: leaf }\nleafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:${proxy.port}" } ] }\n`,
  );
  const start = async (srv: Server) => {
    srv.proc = spawn(binary, ["-c", srv.conf], { stdio: "ignore" });
    for (let i = 0; i < 500; i++) {
      if (
        await connect({ servers: `127.0.0.1:${srv.port}`, reconnect: false })
          .then((c) => c.close().then(() => true))
          .catch(() => false)
      )
        return;
      await sleep(20);
    }
    throw new Error(`nats-server ${srv.name} did not start`);
  };
  const notes = [
    "nats-server 2.9's file store does not fsync each message by default (sync every 2 min); crr acknowledges only after fdatasync.",
    `one stream on A, mirrored to B; the load of all ${s.regions.length} crr regions is published to A; the faults of link ${regionA}->${regionB} are applied to the leafnode link.`,
  ];
  const drills: DrillResult[] = [];
  let nc: NatsConnection | undefined;
  let nb: NatsConnection | undefined;
  try {
    await start(a);
    await start(b);
    nc = await connect({ servers: `127.0.0.1:${pa}` });
    nb = await connect({ servers: `127.0.0.1:${pb}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const jsmA = await nc.jetstreamManager();
    await jsmA.streams.add({ name: "RECORDS", subjects: ["records.>"], storage: StorageType.File });
    const jsmB = await nb.jetstreamManager();
    await jsmB.streams.add({
      name: "MIRROR",
      storage: StorageType.File,
      mirror: { name: "RECORDS", external: { api: "$JS.hub.API", deliver: "" } },
    });
    const js = nc.jetstream();
    const rate = s.load.ratePerRegion * s.regions.length;
    const total = s.load.warmupSeconds + s.load.durationSeconds;
    progress(`nats: JetStream mirror, ${rate}/s acknowledged publishes for ${total} s`);
    const ackedAt: number[] = [];
    const deliveredAt: number[] = [];
    // An ordered consumer on the mirror (deliver policy left unset: 2.9 refuses 'all').
    const consumer = await nb.jetstream().consumers.get("MIRROR");
    const messages = await consumer.consume();
    const reading = (async () => {
      for await (const m of messages) deliveredAt[m.seq] ??= Date.now();
    })();
    for (const d of s.drills) {
      if (d.kind === "disk-loss" || d.kind === "clock-skew")
        drills.push({
          kind: d.kind,
          atSeconds: "atSeconds" in d ? d.atSeconds : 0,
          note: "cannot be applied to the baseline (one stream, no region to lose or skew)",
        });
    }
    const started = Date.now();
    const runDrills = Promise.all(
      s.drills.map(async (d) => {
        if (d.kind === "partition") {
          await sleep(d.atSeconds * 1000);
          proxy.setMode("blackhole");
          await sleep(d.forSeconds * 1000);
          proxy.setMode("forward");
          const healed = Date.now();
          const target = ackedAt.length - 1;
          while (Date.now() - healed < 120_000 && !(deliveredAt[target] !== undefined)) await sleep(20);
          drills.push({
            kind: d.kind,
            atSeconds: d.atSeconds,
            convergedMs: Date.now() - healed,
            note: "the leafnode link",
          });
        } else if (d.kind === "sigkill") {
          await sleep(d.atSeconds * 1000);
          b.proc?.kill("SIGKILL");
          await sleep((d.downSeconds ?? 2) * 1000);
          const restartAt = Date.now();
          await start(b);
          const readyMs = Date.now() - restartAt;
          const target = ackedAt.length - 1;
          while (Date.now() - restartAt < 120_000 && deliveredAt[target] === undefined) await sleep(20);
          drills.push({
            kind: d.kind,
            region: "mirror (B)",
            atSeconds: d.atSeconds,
            readyMs,
            caughtUpMs: Date.now() - restartAt,
          });
        }
      }),
    );
    let sent = 0;
    let failed = 0;
    let skipped = 0;
    const maxInFlight = 20_000;
    const pending = new Set<Promise<void>>();
    const payload = new Uint8Array(s.load.recordBytes).fill(120);
    while (Date.now() - started < total * 1000) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate);
      // Open loop, but bounded: past maxInFlight the client itself is the bottleneck, and the
      // sends it could not make are counted, not queued without end.
      for (; sent < due; sent++) {
        if (pending.size >= maxInFlight) {
          skipped++;
          continue;
        }
        const p = js
          .publish(`records.${sent % 16}`, payload)
          .then((ack) => {
            ackedAt[ack.seq] = Date.now();
          })
          .catch(() => {
            failed++;
          })
          .finally(() => pending.delete(p));
        pending.add(p);
      }
      await sleep(5);
    }
    await Promise.all(pending);
    await runDrills;
    proxy.setFaults({});
    const lastSeq = ackedAt.length - 1;
    const until = Date.now() + 120_000;
    while (Date.now() < until && deliveredAt[lastSeq] === undefined) await sleep(20);
    messages.stop();
    await reading.catch(() => undefined);
    const h = histogram();
    const perSecond: number[] = [];
    const ackedPerSecond: number[] = [];
    const warm = started + s.load.warmupSeconds * 1000;
    let missing = 0;
    let acknowledged = 0;
    for (let seq = 1; seq <= lastSeq; seq++) {
      const t = ackedAt[seq];
      if (t === undefined) continue;
      acknowledged++;
      const ackSec = Math.floor((t - started) / 1000);
      ackedPerSecond[ackSec] = (ackedPerSecond[ackSec] ?? 0) + 1;
      const d = deliveredAt[seq];
      if (d === undefined) {
        missing++;
        continue;
      }
      if (t < warm) continue;
      h.recordValue(Math.max(1, (d - t) * 1000));
      const sec = Math.floor((t - started) / 1000);
      perSecond[sec] = Math.max(perSecond[sec] ?? 0, d - t);
    }
    const summary = summarize(h);
    if (skipped > 0)
      notes.push(
        `the load generator could not offer ${skipped} publishes (${maxInFlight} already in flight): the offered rate exceeded what the mirror's origin acknowledged`,
      );
    return {
      system: "nats",
      scenario: s.name,
      durationSeconds: total,
      appendedPerS: acknowledged / total,
      acknowledged,
      failedAppends: failed,
      acknowledgedPerSecond: [
        {
          region: "A (stream)",
          counts: Array.from({ length: Math.ceil(total) }, (_, i) => ackedPerSecond[i] ?? 0),
        },
      ],
      links: [
        {
          from: "A (stream)",
          to: "B (mirror)",
          lagMs: summary,
          lagMsMaxPerSecond: Array.from({ length: Math.ceil(total) }, (_, i) => perSecond[i] ?? 0),
        },
      ],
      lagMs: summary,
      drills,
      integrity: {
        ok: missing === 0,
        detail:
          missing === 0
            ? "every acknowledged message reached the mirror"
            : `${missing} acknowledged messages never reached the mirror`,
      },
      resources: [],
      notes,
    };
  } finally {
    await nc?.close().catch(() => undefined);
    await nb?.close().catch(() => undefined);
    for (const srv of [a, b]) srv.proc?.kill("SIGKILL");
    await proxy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
