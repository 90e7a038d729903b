/**
 * A region served by two `crr serve` processes on one PostgreSQL store (regions.X.nodes:
 * several), next to a region on SQLite. Clients append the same keys through both nodes at
 * once, with different outcomes (one node's clock behind, so the later write often wins the
 * rule), while one node is SIGKILLed and restarted. Checked against
 * what the clients were told: every key has exactly one "first" answer, and every answer any
 * client got for a key (first or duplicate, from either node) names the same version: the
 * region never decided a key twice. Both stores then hold every acknowledged record (read
 * from the database and the file themselves), and all three nodes end with one digest.
 */
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { startTcpProxy } from "../../src/faults/index.js";
import { deepMerge } from "../../src/launch/index.js";
import { Cluster, api, status, type TestNode } from "../support/cluster.js";
import { Ledger, expectStoreMatchesLedger, readPostgresStore, readStore } from "../support/ledger.js";
import { freshDatabase } from "../support/postgres.js";
import { waitFor } from "../support/tmp.js";

const several = { "us-east-1": { nodes: "several" } };

async function sql(url: string, text: string, params: unknown[]): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(text, params);
  } finally {
    await c.end();
  }
}

/**
 * us-east-1 on a fresh PostgreSQL database (`nodes: several`, its first node started) beside
 * us-west-2 on SQLite; `extra` is merged into us-east-1's config. Not an overload test: a busy
 * machine's PostgreSQL commits must not shed appends (queueDelayMaxMs 0).
 */
async function eastOnPostgres(prefix: string, extra: Record<string, unknown>) {
  const url = await freshDatabase(inject("pgUrl"), prefix);
  const east = deepMerge(
    {
      store: { kind: "postgres", url: "${CRR_PG_URL}", poolSize: 4 },
      regions: several,
      append: { queueDelayMaxMs: 0 },
    },
    extra,
  );
  const cluster = await Cluster.start({
    regions: [
      { name: "us-east-1", config: east },
      { name: "us-west-2", config: { regions: several } },
    ],
    env: { CRR_PG_URL: url },
  });
  return { cluster, url };
}

describe("a region served by several nodes on one PostgreSQL store", () => {
  it("never answers two versions of one key, through concurrent appends and a SIGKILL of one node", async () => {
    const { cluster, url } = await eastOnPostgres("nodes", { append: { claimWaitMs: 3000 } });
    const a = cluster.node("us-east-1");
    // b's clock runs 300 ms behind: when b's record of a key is applied after a's, the rule
    // makes b's the winner, so without a claim a and b would both answer "first".
    const skew = { CRR_CLOCK_OFFSET_MS: "-300" };
    const b = await cluster.addNode("us-east-1", "us-east-1-b", skew);
    const west = cluster.node("us-west-2");
    const ledger = new Ledger();
    const race = async (round: string, keys: number, nodes: TestNode[]) => {
      await Promise.all(
        Array.from({ length: keys }, (_, i) =>
          Promise.all(
            nodes.map((n, j) =>
              ledger
                .append(n, { key: `${round}-${i}`, tenant: "t", outcome: `via-${j}` })
                .catch(() => undefined),
            ),
          ),
        ),
      );
    };
    await race("calm", 150, [a, b]);
    // One node killed while both take the same keys: its claims end when it is back.
    const during = race("kill", 150, [a, b]);
    await cluster.stopNode("us-east-1-b", "SIGKILL");
    await during;
    // What a kill between a claim and its WAL append leaves: claims of the dead node's
    // incarnation. They hold the keys (a's append waits, then answers 503 key_claimed) until
    // the node is back and its WAL is in the store.
    const bId = fs.readFileSync(path.join(b.dataDir, "node-id"), "utf8").trim();
    await sql(
      url,
      `INSERT INTO claims (key, incarnation, claimed_at_ms)
      SELECT 'stranded-' || i, (SELECT incarnation FROM nodes WHERE node_id = $1 ORDER BY joined_at_ms DESC LIMIT 1), 0
      FROM generate_series(0, 9) AS i`,
      [bId],
    );
    const held = await ledger.append(a, { key: "stranded-0", tenant: "t", outcome: "x" });
    expect(held.status).toBe(503);
    expect(held.body).toMatchObject({ code: "key_claimed" });
    await cluster.startNode("us-east-1-b", [], skew);
    // Every key of that round can be appended again: the claims of appends the killed node
    // never wrote ended when it came back (each answer is the key's one version, or its first).
    const again = await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        ledger.append(a, { key: `kill-${i}`, tenant: "t", outcome: "again" }),
      ),
    );
    expect(again.filter((r) => r.status !== 200).map((r) => r.body)).toEqual([]);
    const freed = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ledger.append(a, { key: `stranded-${i}`, tenant: "t", outcome: "x" }),
      ),
    );
    expect(freed.map((r) => [r.status, (r.body as { duplicate?: boolean }).duplicate])).toEqual(
      Array.from({ length: 10 }, () => [200, false]),
    );
    await Promise.all([race("after", 150, [a, b]), ledger.appendMany(west, "west", 150)]);

    const byKey = new Map<string, Set<string>>();
    for (const x of ledger.answers)
      byKey.set(x.key, (byKey.get(x.key) ?? new Set()).add(`${x.origin}/${x.lsn}/${x.hlc}/${x.outcome}`));
    const split = [...byKey].filter(([, versions]) => versions.size > 1);
    expect(split, "keys answered with two versions").toEqual([]);
    const firsts = ledger.acked.filter((x) => x.origin === "us-east-1");
    const once = new Map<string, number>();
    for (const x of firsts) once.set(x.key, (once.get(x.key) ?? 0) + 1);
    expect(
      [...once].filter(([, n]) => n > 1),
      "keys decided twice in us-east-1",
    ).toEqual([]);
    expect(byKey.size).toBeGreaterThanOrEqual(300);

    // Converged: one digest everywhere, and every node's stream acknowledged by its peer
    // (waitConverged's per-origin watermark cannot tell two live streams of one origin apart).
    await waitFor(async () => {
      const all = await Promise.all([a, b, west].map(status));
      const shipped = all.every((st) => st.peers.every((p) => p.ackedLsn >= st.wal.durableLsn));
      return shipped && new Set(all.map((st) => st.store.digest)).size === 1 ? all : undefined;
    }, "the region's nodes and its peer to converge");
    expectStoreMatchesLedger(ledger, "us-east-1", await readPostgresStore(url));
    expectStoreMatchesLedger(ledger, "us-west-2", readStore(west.dataDir));

    // b leaves for good: stopped, `crr leave` (its WAL into the store first), never again.
    await cluster.stopNode("us-east-1-b");
    const left = await cluster.runCommand("us-east-1-b", ["leave"]);
    expect(left).toMatchObject({ status: 0 });
    await expect(cluster.startNode("us-east-1-b", [], skew)).rejects.toThrow(/left region us-east-1/);
    const view = (await api(`${a.url}/v1/watermarks`)).body as { incarnations?: string[] };
    expect(view.incarnations).toHaveLength(1); // a alone is live
  });
  it("a node whose data directory is lost: crr leave --node-id from a fellow, its acknowledged records then reach the peers, and a new node replaces it", async () => {
    // Heartbeats every 200 ms: a node is taken for lost after 10 missed ones (2 s).
    const { cluster } = await eastOnPostgres("lost", { health: { probeIntervalMs: 200 } });
    try {
      const a = cluster.node("us-east-1");
      const b = await cluster.addNode("us-east-1", "us-east-1-b");
      const west = cluster.node("us-west-2");
      const bId = fs.readFileSync(path.join(b.dataDir, "node-id"), "utf8").trim();
      const ledger = new Ledger();
      // b's records reach the store (acknowledged) but never the peer: it is down.
      await cluster.stopNode("us-west-2");
      await ledger.appendMany(b, "b", 100);
      expect(ledger.acked).toHaveLength(100);

      const running = await cluster.runCommand("us-east-1", ["leave", "--node-id", bId]);
      expect(running.status).not.toBe(0);
      expect(running.stderr).toMatch(/may be running.*nothing was changed/);

      await cluster.stopNode("us-east-1-b", "SIGKILL");
      fs.rmSync(b.dataDir, { recursive: true, force: true });
      await cluster.startNode("us-west-2");
      const quiet = await waitFor(async () => {
        const me = (await status(a)) as {
          nodes?: Array<{ nodeId: string; seenAgoMs: number; left: boolean }>;
        };
        const gone = me.nodes?.find((n) => n.nodeId === bId);
        return gone && gone.seenAgoMs > 2_500 ? gone : undefined;
      }, "b's heartbeat to be 2.5 s old");
      expect(quiet.left).toBe(false);
      const left = await cluster.runCommand("us-east-1", ["leave", "--node-id", bId]);
      expect(left).toMatchObject({ status: 0 });

      // a notices at its next heartbeat, audits it, and ships b's stream from the store
      // without a restart: the peer ends up holding every record b acknowledged.
      await waitFor(async () => {
        const [sa, sw] = await Promise.all([status(a), status(west)]);
        return sa.store.digest === sw.store.digest && sw.store.records === 100 ? sw : undefined;
      }, "the peer to hold b's records");
      expectStoreMatchesLedger(ledger, "us-west-2", readStore(west.dataDir));
      const audit = fs.readFileSync(path.join(a.dataDir, "audit", "audit-000001.log"), "utf8");
      expect(audit).toMatch(new RegExp(`"kind":"node-left",.*"nodeId":"${bId}"`));
      const me = (await status(a)) as {
        wal: { durableLsn: number };
        nodes?: Array<{ nodeId: string; left: boolean; self: boolean; storedLsn: number }>;
      };
      expect(me.nodes?.filter((n) => n.nodeId === bId).every((n) => n.left)).toBe(true);
      // How far the shared store holds each node's stream: all of this node's (it answers
      // only once the store holds a record), and b's stream too.
      expect(me.nodes?.find((n) => n.self)?.storedLsn).toBe(me.wal.durableLsn);
      expect(
        Math.max(...(me.nodes ?? []).filter((n) => n.nodeId === bId).map((n) => n.storedLsn)),
      ).toBeGreaterThan(0);

      // The operator replaces b with a node on a new, empty data directory, as b's refusal
      // asks: it starts (b's stream in the store is not its WAL's to answer for) and serves.
      const c = await cluster.addNode("us-east-1", "us-east-1-c");
      await ledger.appendMany(c, "c", 10);
      expect(ledger.acked).toHaveLength(110);
      await waitFor(async () => {
        const sw = await status(west);
        return sw.store.records === 110 ? sw : undefined;
      }, "the peer to hold c's records");
      expectStoreMatchesLedger(ledger, "us-west-2", readStore(west.dataDir));
    } finally {
      await cluster.stop();
    }
  });

  it("a lost shared store: a node waits for its fellow's WAL before it answers, and never decides again a key the fellow decided", async () => {
    const { cluster, url } = await eastOnPostgres("forgot", {
      health: { probeIntervalMs: 200 },
      recovery: { bootstrapWaitMs: 120_000 },
    });
    try {
      const a = cluster.node("us-east-1");
      const b = await cluster.addNode("us-east-1", "us-east-1-b");
      const aId = fs.readFileSync(path.join(a.dataDir, "node-id"), "utf8").trim();
      // b remembers its fellow outside the store (written at its heartbeats).
      await waitFor(async () => {
        const file = path.join(b.dataDir, "fellows.json");
        return fs.existsSync(file) && fs.readFileSync(file, "utf8").includes(aId) ? true : undefined;
      }, "b to remember a in fellows.json");
      // a decides keys no peer holds (the peer is down), then the region's database is lost.
      await cluster.stopNode("us-west-2");
      const ledger = new Ledger();
      await ledger.appendMany(a, "a", 20);
      expect(ledger.acked).toHaveLength(20);
      await cluster.stopNode("us-east-1", "SIGKILL");
      await cluster.stopNode("us-east-1-b", "SIGKILL");
      const db = new URL(url).pathname.slice(1);
      await sql(inject("pgUrl"), `DROP DATABASE ${db} WITH (FORCE)`, []);
      await sql(inject("pgUrl"), `CREATE DATABASE ${db}`, []);
      await cluster.startNode("us-west-2");

      // b comes back first: its store is empty, it copies what the peer holds, and it waits
      // for a (which alone holds a's keys, in its WAL) instead of answering.
      const bBack = cluster.startNode("us-east-1-b");
      const waiting = await waitFor(async () => {
        const st = await status(b).catch(() => undefined);
        return st?.startup.detail.includes(aId) ? st : undefined;
      }, "b to wait for a's WAL");
      expect(waiting.startup.detail).toMatch(/shared store forgot what it held: waiting for node/);
      expect(waiting.ready).toBe(false);
      const early = await ledger.append(b, { key: "a-0", tenant: "tenant-a", outcome: "other" });
      expect(early).toMatchObject({ status: 503, body: { code: "starting" } });

      await cluster.startNode("us-east-1");
      await bBack;
      // Every key a decided is a's through b: the same version the clients were told.
      const again = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          ledger.append(b, { key: `a-${i}`, tenant: "tenant-a", outcome: "other" }),
        ),
      );
      expect(again.map((r) => [r.status, (r.body as { duplicate?: boolean }).duplicate])).toEqual(
        Array.from({ length: 20 }, () => [200, true]),
      );
      const told = new Map(ledger.acked.map((x) => [x.key, `${x.origin}/${x.lsn}/${x.hlc}`]));
      const other = ledger.answers.filter((x) => told.get(x.key) !== `${x.origin}/${x.lsn}/${x.hlc}`);
      expect(other, "answers naming another version than the first").toEqual([]);
      const audit = fs.readFileSync(path.join(b.dataDir, "audit", "audit-000001.log"), "utf8");
      expect(audit).toMatch(new RegExp(`"kind":"store-forgot",.*"nodeId":"${aId}"`));

      // A node whose data directory is lost as well is unknown to the new store: the operator
      // declares it gone all the same (fellows that remember it stop waiting); a malformed id
      // changes nothing.
      const ghost = "0123456789abcdef0123456789abcdef";
      const declared = await cluster.runCommand("us-east-1", ["leave", "--node-id", ghost]);
      expect(declared).toMatchObject({ status: 0 });
      expect(declared.stdout).toMatch(/not in us-east-1's store.*recorded as left/);
      const typo = await cluster.runCommand("us-east-1", ["leave", "--node-id", "nope"]);
      expect(typo.status).not.toBe(0);
      expect(typo.stderr).toMatch(/not a node id.*nothing was changed/);
      const nodes = (await status(a)) as { nodes?: Array<{ nodeId: string; left: boolean }> };
      expect(nodes.nodes?.filter((n) => n.nodeId === ghost)).toEqual([
        expect.objectContaining({ left: true }),
      ]);
      expect(nodes.nodes?.filter((n) => n.nodeId !== ghost).every((n) => !n.left)).toBe(true);

      // Under running nodes, a store restored from a backup older than a's join: a no longer
      // finds its row, b finds a forgotten; both stop taking appends, saying why.
      await sql(url, "DELETE FROM nodes WHERE node_id = $1", [aId]);
      // a says so at its next heartbeat, or, when the row went between that beat's write and
      // its read of the region's nodes, through its memory of the nodes (itself among them).
      for (const [n, why] of [
        [
          a,
          new RegExp(
            `shared store no longer knows this node \\(node-id ${aId}|shared store forgot what it held while this node ran \\(node ${aId} `,
          ),
        ],
        [b, /shared store forgot what it held while this node ran \(node .* is not in the store\)/],
      ] as const) {
        const stopped = await waitFor(async () => (await status(n)).stopped, `${n.name} to stop`);
        expect(stopped).toMatch(why);
        expect((await api(`${n.url}/readyz`)).status).toBe(503);
      }
    } finally {
      await cluster.stop();
    }
  });

  it("a node cut off from the shared store: not ready, refusing appends with 503, while its fellow serves; ready once the store answers again", async () => {
    const { cluster, url } = await eastOnPostgres("cut", { health: { probeIntervalMs: 200 } });
    const pgPort = Number(new URL(url).port);
    // b reaches PostgreSQL through a proxy the test cuts; a directly.
    const proxy = await startTcpProxy({ targetPort: pgPort });
    try {
      const viaProxy = new URL(url);
      viaProxy.port = String(proxy.port);
      const a = cluster.node("us-east-1");
      const b = await cluster.addNode("us-east-1", "us-east-1-b", { CRR_PG_URL: viaProxy.toString() });
      const west = cluster.node("us-west-2");
      const ledger = new Ledger();
      await ledger.appendMany(b, "before", 20);

      proxy.setTarget(0); // open connections reset, new ones refused
      const cut = await waitFor(async () => {
        const r = await api(`${b.url}/readyz`);
        return r.status === 503 ? r.body : undefined;
      }, "b to say it is not ready");
      expect(cut).toMatchObject({ ready: false, storeAnswering: false });
      expect(cut.reason).toMatch(/the store shared by the region's nodes does not answer/);
      expect((await api(`${a.url}/readyz`)).body).toMatchObject({ ready: true, storeAnswering: true });
      const refused = await ledger.append(b, { key: "during-b", tenant: "tenant-a", outcome: "accepted" });
      expect(refused).toMatchObject({ status: 503, body: { code: "store_unavailable" } });
      expect(JSON.stringify(refused.body)).not.toContain(new URL(url).password);
      await ledger.appendMany(a, "during", 20); // the fellow takes the region's traffic

      proxy.setTarget(pgPort);
      await waitFor(
        async () => ((await api(`${b.url}/readyz`)).status === 200 ? true : undefined),
        "b to be ready again",
      );
      await ledger.appendMany(b, "after", 20);
      expect(ledger.acked).toHaveLength(60);
      await waitFor(async () => {
        const sw = await status(west);
        return sw.store.records === 60 ? sw : undefined;
      }, "the peer to hold every acknowledged record");
      expectStoreMatchesLedger(ledger, "us-west-2", readStore(west.dataDir));
    } finally {
      await cluster.stop();
      await proxy.close();
    }
  });
});
