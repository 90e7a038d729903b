/**
 * A region on PostgreSQL, as users run it: `crr serve` processes over real HTTP, one region's
 * store in a database of the suite's PostgreSQL cluster (store.url from ${CRR_PG_URL}), the
 * other on SQLite. Checked against the ledger of what clients were told, read straight from
 * each store (not through crr): records replicate both ways, a SIGKILL under load loses
 * nothing acknowledged, both engines end with the same digest, and the database's password
 * shows nowhere (status, logs).
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { Cluster, status, waitConverged } from "../support/cluster.js";
import { Ledger, expectStoreMatchesLedger, readPostgresStore, readStore } from "../support/ledger.js";
import { freshDatabase } from "../support/postgres.js";

describe("a region whose store is PostgreSQL", () => {
  it("replicates both ways, keeps every acknowledged record across a SIGKILL, and never shows the password", async () => {
    const url = await freshDatabase(inject("pgUrl"), "region");
    const password = new URL(url).password;
    const cluster = await Cluster.start({
      regions: [
        {
          name: "us-east-1",
          config: {
            store: { kind: "postgres", url: "${CRR_PG_URL}", poolSize: 4 },
            // Not an overload test: a busy machine's PostgreSQL commits must not shed appends.
            append: { queueDelayMaxMs: 0 },
          },
        },
        "us-west-2",
      ],
      env: { CRR_PG_URL: url },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    const ledger = new Ledger();
    await Promise.all([ledger.appendMany(a, "east", 200), ledger.appendMany(b, "west", 200)]);
    // A SIGKILL while appends run: what was acknowledged is in PostgreSQL or in the WAL.
    const load = ledger.appendMany(a, "during", 300).catch(() => undefined);
    await cluster.stopNode("us-east-1", "SIGKILL");
    await load;
    await cluster.startNode("us-east-1");
    await Promise.all([ledger.appendMany(a, "after", 100), ledger.appendMany(b, "after-west", 100)]);

    const [sa, sb] = await waitConverged([a, b]);
    expect(sa!.store.engine).toMatch(/^PostgreSQL 127\.0\.0\.1:\d+\/region_/);
    expect(sb!.store.engine).toMatch(/^SQLite /);
    expect(sa!.store.digest).toBe(sb!.store.digest); // the two engines hold the same winners
    expect(sa!.store.records).toBe(ledger.acked.length);
    expectStoreMatchesLedger(ledger, a.name, await readPostgresStore(url));
    expectStoreMatchesLedger(ledger, b.name, readStore(b.dataDir));

    const shown = JSON.stringify(await status(a)) + cluster.logs("us-east-1");
    expect(shown).not.toContain(password);
  });

  it("a single node on PostgreSQL whose WAL is gone is refused (wal_missing) though its store holds no record of its own; accepted, it is audited", async () => {
    const url = await freshDatabase(inject("pgUrl"), "walgone");
    const cluster = await Cluster.start({
      regions: [
        { name: "us-east-1", config: { store: { kind: "postgres", url: "${CRR_PG_URL}", poolSize: 4 } } },
        "us-west-2",
      ],
      env: { CRR_PG_URL: url },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    const ledger = new Ledger();
    await ledger.appendMany(b, "west", 20); // the database holds us-west-2's records only
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1");
    fs.rmSync(path.join(a.dataDir, "wal"), { recursive: true });
    await expect(cluster.startNode("us-east-1")).rejects.toThrow(
      /exited \(1\)[^]*holds no segment, but the store has served this region before/,
    );
    await cluster.startNode("us-east-1", ["--accept-wal-loss"]);
    const audit = fs.readFileSync(path.join(a.dataDir, "audit", "audit-000001.log"), "utf8");
    expect(audit).toMatch(/"kind":"wal-abandoned".*held no segment/);
    await ledger.appendMany(a, "east", 20);
    await waitConverged([a, b]);
    expectStoreMatchesLedger(ledger, a.name, await readPostgresStore(url));
    expectStoreMatchesLedger(ledger, b.name, readStore(b.dataDir));
  });
});
