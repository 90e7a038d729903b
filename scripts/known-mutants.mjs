#!/usr/bin/env node
/**
 * The mutations an outside review found the suite blind to, and each loss-path fix reverted,
 * applied one at a time to src/: each must make the tests named beside it fail. Prints a
 * table (mutation, tests, killed or SURVIVED, seconds) and exits 1 if any survived.
 *
 *   node scripts/known-mutants.mjs [--only NAME] [--check] [--sim N [--from F] [--sim-store postgres]]
 *
 * --sim N runs the deterministic simulator (seeds 1..N, or F..F+N-1) instead of the named
 * tests: which mutations it finds, and at which seed (the bug-finding table of the
 * simulator). --sim-store postgres runs it with every region's store on PostgreSQL.
 *
 * --check only verifies each mutation's text is found exactly once (the suite runs it, so a
 * refactor cannot silently turn a mutation into a no-op).
 *
 * Every mutation is a literal replacement that must match exactly once (so a refactor that
 * moves the line makes this script fail loudly instead of testing nothing). The file is
 * restored after each run, whatever happens. Tests that run `crr serve` use dist/, which the
 * suite's global setup rebuilds from the mutated src/ before running.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";

const mutants = [
  // --- the review's list: each left the whole suite green before -------------------------
  {
    name: "first-write-wins flipped to last-write-wins",
    file: "src/store/merge.ts",
    from: 'case "first-write-wins":\n      return firstWriteOrder(a, b);',
    to: 'case "first-write-wins":\n      return -firstWriteOrder(a, b);',
    tests: ["test/store/store-contract.test.ts"],
  },
  {
    name: "reader's clock-skew check removed",
    file: "src/reader/reader.ts",
    from: "    if (skew) return skew;\n    return this.apply(batch);\n  }\n\n  /** Merge the batch's newest",
    to: "    return this.apply(batch);\n  }\n\n  /** Merge the batch's newest",
    tests: ["test/replication/refusals.test.ts"],
  },
  {
    name: "a skip is applied without an audit entry on the receiving side",
    file: "src/reader/reader.ts",
    from: "if ((batch.flags & BATCH_FLAG_SKIP_GAP) === 0) return;",
    to: "return;",
    tests: ["test/replication/backfill.test.ts"],
    only: "nobody holds",
  },
  {
    name: "the shipper skips a gap without the operator's allowance",
    file: "src/shipper/peer-shipper.ts",
    from: "if (!(err instanceof StreamGapError) || err.toLsn > this.skipThrough) throw err;",
    to: "if (!(err instanceof StreamGapError)) throw err;",
    tests: ["test/replication/backfill.test.ts"],
    only: "nobody holds",
  },
  {
    name: "a backfill answer taken for an acknowledgement",
    file: "src/shipper/peer-shipper.ts",
    from: 'if (answer.kind === "ok" && (flags & BATCH_FLAG_BACKFILL) !== 0)',
    to: "if (false)",
    tests: ["test/shipper/peer-shipper.test.ts"],
    only: "keeps shipping new records",
  },
  {
    name: "a policy widened to every tenant backfills nothing",
    file: "src/shipper/peer-shipper.ts",
    from: 'before === undefined || now === "*" || now.some',
    to: "before === undefined || now.some",
    tests: ["test/shipper/peer-shipper.test.ts"],
    only: "multi-way",
  },
  {
    name: "older incarnation's lost LSNs not audited at the origin",
    file: "src/shipper/backfill.ts",
    from: "if (lost.length > 0) await c.reportLost(incarnation, lost);",
    to: "",
    tests: ["test/shipper/peer-shipper.test.ts"],
    only: "with a hole nobody holds",
  },
  {
    name: "retention off by one LSN (a peer's ack)",
    file: "src/node/retention.ts",
    from: "needed = Math.min(needed, acked + 1);",
    to: "needed = Math.min(needed, acked + 2);",
    tests: ["test/node/local-apply-retention.test.ts"],
  },
  {
    name: "retention off by one LSN (segment boundary)",
    file: "src/wal/wal.ts",
    from: "if (next.header.firstLsn - 1 >= lsn) break;",
    to: "if (next.header.firstLsn - 1 > lsn) break;",
    tests: ["test/node/local-apply-retention.test.ts"],
  },
  {
    name: "retention ignores peer acknowledgements",
    file: "src/node/retention.ts",
    from: "for (const acked of peerAcks) needed = Math.min(needed, acked + 1);",
    to: "",
    tests: ["test/node/local-apply-retention.test.ts"],
  },
  {
    name: "reconcile takes the stored copy as evidence",
    file: "src/divergence/reconcile.ts",
    from: 'evidence: intact === false ? "none" : "intact-copy"',
    to: 'evidence: "intact-copy"',
    tests: ["test/divergence/evidence.test.ts"],
  },
  {
    name: "reconcile decides without evidence",
    file: "src/divergence/reconcile.ts",
    from: 'const proven = established.filter((e) => e.evidence !== "none");',
    to: "const proven = [...established];",
    tests: ["src/divergence/reconcile.test.ts"],
  },
  {
    name: "local applier's hole filling skipped",
    file: "src/node/local-applier.ts",
    from: "if (watermark + 1 < first)\n          await applyWalRange(",
    to: "if (false)\n          await applyWalRange(",
    tests: ["test/node/local-apply-retention.test.ts"],
  },
  {
    name: "&& for || in divergence classification",
    file: "src/divergence/classify.ts",
    from: "return localHasB && remoteHasA\n",
    to: "return localHasB || remoteHasA\n",
    tests: ["src/divergence/classify.test.ts"],
  },
  {
    name: "a batch applied without a transaction",
    file: "src/store/sqlite-store.ts",
    from: "this.applyTx = this.db.transaction((b: ApplyBatchInput) => this.applyInTransaction(b));",
    to: "this.applyTx = (b: ApplyBatchInput) => this.applyInTransaction(b);",
    tests: ["test/store/store-contract.test.ts"],
  },
  // --- found this stop: the peer's order, the gate's slots, a left node's fence ---------------
  {
    name: "reader: a stream's batches reach the store in any order",
    file: "src/reader/reader.ts",
    from: "const run = (this.streams.get(key) ?? Promise.resolve()).then(apply);",
    to: "const run = apply();",
    tests: ["src/reader/reader.test.ts"],
  },
  {
    // Found by the simulator (seeds 315 and 454): an own record deleted by hand, then beaten
    // by another region's older version of the key; the winner digests all agreed.
    name: "crr verify: own records not checked against the WAL",
    file: "src/node/region.ts",
    from: "const own = await restoreOwnFromWal(this);",
    to: "const own = { restored: 0 };",
    // Seed 315 found it; since the thirteenth stop's changes moved its schedule, the test of
    // Region.verify itself kills it.
    tests: ["src/node/repair.test.ts"],
    only: "the call, not only the helper",
  },
  {
    // Found by the simulator (seeds 314 and 454): a hand-deleted copy of another region's
    // record (or an own one past the WAL's retention), beaten since by another version.
    name: "crr verify: streams not checked against the peers' copies",
    file: "src/node/region.ts",
    from: "const peers = await restoreStreamsFromPeers(this);",
    to: "const peers = { restored: 0, failed: [] };",
    tests: ["test/sim/sim.test.ts"],
    only: "seed 314:",
  },
  {
    // Found by the simulator (seed 1084): two flipped bits in the last frame, one in its
    // length, cut as a torn tail; the acknowledged LSN was held nowhere else and reissued.
    name: "a last frame whose own field lengths fit the file cut as a tear",
    file: "src/wal/tail-plan.ts",
    from: "return end === undefined || end > image.length;",
    to: "return true;",
    tests: ["src/wal/tail-plan.test.ts"],
    only: "its own field lengths fitting the file",
  },
  {
    // Found by the simulator (seed 1151): a hand-edited winner, beaten since, was kept as
    // a loser with the edit (the winner digests cannot show a loser).
    name: "SQLite: a winner changed by hand kept as a loser when beaten",
    file: "src/store/sqlite-store.ts",
    from: "if (incomingWins && !this.isIntact(row)) {",
    to: "if (false) {",
    tests: ["test/store/store-contract.test.ts"],
    only: "changed by hand that a newer decision beats",
  },
  {
    name: "PostgreSQL: a winner changed by hand kept as a loser when beaten",
    file: "src/store/postgres-store.ts",
    from: "if (incomingWins && !cur.intact)",
    to: "if (false)",
    tests: ["test/store/store-contract.test.ts"],
    only: "changed by hand that a newer decision beats",
  },
  {
    // Found by the simulator (seed 1302): a peer's watermarks read before it lost its disk,
    // its bucket listing after, made missing findings.
    name: "detector: a peer's watermarks and records from two processes compared",
    file: "src/divergence/detector.ts",
    from: "if (this.acrossTwo(peer, ctx, answer))",
    to: "if (false)",
    tests: ["test/store/divergence-detector.test.ts"],
    only: "from one process with its records from another",
  },
  {
    name: "detector: a region served by several nodes compared by boot",
    file: "src/divergence/detector.ts",
    from: "return !this.o.severalNodes?.regions.has(peer) && ctx.boot !== answer.boot;",
    to: "return ctx.boot !== answer.boot;",
    tests: ["test/store/divergence-detector.test.ts"],
    only: "from one process with its records from another",
  },
  {
    name: "detector: a peer's watermarks and records from two stores compared",
    file: "src/divergence/detector.ts",
    from: "if (ctx.storeId !== answer.storeId) return true;",
    to: "",
    tests: ["test/store/divergence-detector.test.ts"],
    only: "from one process with its records from another",
  },
  {
    name: "PostgreSQL: a row's tampered note not read after its lock",
    file: "src/store/postgres-store.ts",
    from: "const tampered = new Set(t.rows.map((x) => x.key));",
    to: "const tampered = new Set<string>();",
    tests: ["test/store/postgres-store.test.ts"],
    only: "scrub noted while an apply waited",
  },
  {
    name: "a displaced winner changed outside the engine not noted for the audit",
    file: "src/store/sqlite-store.ts",
    from: "this.stmt.noteAudit.run(JSON.stringify(displacedEntry(loser, winner, now)));",
    to: "void displacedEntry;",
    tests: ["test/store/store-contract.test.ts", "test/store/sqlite-store.test.ts"],
    only: "newer decision beats|displaced damaged",
  },
  {
    name: "a repair's entries not noted for the audit in its transaction",
    file: "src/store/sqlite-store.ts",
    from: "if (audit) this.stmt.noteAudit.run(",
    to: "if (false) this.stmt.noteAudit.run(",
    tests: ["test/store/store-contract.test.ts"],
    only: "repair with an audit",
  },
  {
    name: "the audit pump never writes the store's notes",
    file: "src/node/audit-pump.ts",
    from: "        await this.writeNotes();\n",
    to: "",
    tests: ["test/audit/audit-log.test.ts"],
  },
  {
    name: "the audit pump appends notes again when their forget failed",
    file: "src/node/audit-pump.ts",
    from: "        if (this.appendedNotes.has(n.id)) continue;\n",
    to: "",
    tests: ["test/audit/audit-log.test.ts"],
    only: "cannot forget",
  },
  {
    name: "crr rebuild moves a store aside without writing what it owed the audit log",
    file: "src/cli/rebuild.ts",
    from: "  else await auditOldStore(config, say);\n",
    to: "",
    tests: ["src/node/audit-leftovers.test.ts"],
  },
  {
    name: "crr rebuild reads only the first page of notes of a store that refuses to forget them",
    file: "src/node/audit-leftovers.ts",
    from: "    afterId = notes.at(-1)!.id;\n",
    to: "    if (written > 0) return written;\n",
    tests: ["src/node/audit-leftovers.test.ts"],
  },
  {
    name: "a version applied after a hand delete inherits the scrubber's note (SQLite)",
    file: "src/store/sqlite-store.ts",
    from: "    if (inserted === 1 && this.noted) this.stmt.clearTampered.run(bucket, v.key);\n",
    to: "",
    tests: ["test/store/store-contract.test.ts"],
  },
  {
    name: "deleteSince raises a watermark over LSNs never received",
    file: "src/store/sqlite-store.ts",
    from: '"UPDATE watermarks SET lsn = ?, updated_at_ms = ? WHERE origin = ? AND incarnation = ? AND lsn > ?",',
    to: '"UPDATE watermarks SET lsn = ?, updated_at_ms = ? WHERE origin = ? AND incarnation = ? AND lsn > ? - 1000000",',
    tests: ["test/store/store-contract.test.ts"],
    only: "deleteSince drops what was written",
  },
  {
    name: "an accepted WAL loss bootstraps every peer stream again (no seeded streams)",
    file: "src/node/wal-open.ts",
    from: "const held = (await o.store.watermarks()).filter((w) => w.origin !== o.region && w.lsn > 0);",
    to: "const held = [] as Array<{ origin: string; incarnation: string; lsn: number }>;",
    tests: ["src/node/wal-open.test.ts"],
  },
  {
    name: "crr verify: a missing version that would win put back without reconcile",
    file: "src/node/stream-check.ts",
    from: "if (winner && compareVersions(c.rule, winner, v) < 0) losers.push(v);",
    to: "if (true) losers.push(v);",
    tests: ["src/node/stream-check.test.ts"],
    only: "leaves a missing version that would win",
  },
  {
    name: "crr verify: a damaged peer copy taken as an answer",
    file: "src/node/stream-check.ts",
    from: "if (!intact || !missing.delete(v.lsn)) continue;",
    to: "if (!missing.delete(v.lsn)) continue;",
    tests: ["src/node/stream-check.test.ts"],
    only: "asks the origin first",
  },
  {
    name: "crr verify: own records missing from the store not read back from the WAL",
    file: "src/node/repair.ts",
    from: "const found = missing.length > 0 ? await walRecords(r, missing) : [];",
    to: "const found: StoredRecord[] = [];",
    tests: ["src/node/repair.test.ts"],
    only: "puts back an own record deleted by hand",
  },
  {
    // Found by the simulator (seed 631): a bootstrap kept a peer's answer from before that
    // peer lost its store, and raised its watermark past LSNs the peer no longer held.
    name: "bootstrap: a peer's current stream covered past a hole neither its store nor its WAL fills",
    file: "src/node/copy.ts",
    from: "        if (w.firstUnfilled !== undefined) coveredThrough = Math.min(coveredThrough, w.firstUnfilled - 1);\n",
    to: "",
    tests: ["src/node/copy.test.ts"],
    only: "covered only below a hole neither its store nor its WAL fills",
  },
  {
    // Found by the simulator (seed 306): the old WAL's damaged frames held two acknowledged
    // records the store lacked (a power loss undid their commits) and a peer held.
    name: "an accepted WAL loss starts without copying what the peers hold",
    file: "src/node/parts.ts",
    from: "  empty ||= await bootstrapRunning(store);\n",
    to: "",
    tests: ["test/sim/sim.test.ts"],
    // Seed 306 found it; this stop's changes moved its schedule, seed 144 meets it now.
    only: "seed 144:",
  },
  {
    // Found by the simulator (seed 709): a wiped region's older stream, its watermark taken
    // from the peers' answers at its bootstrap, held two more records copied back later.
    name: "an older incarnation shipped only up to our own watermark, not what the store holds past it",
    file: "src/shipper/backfill.ts",
    from: "    await shipHeldBeyond(c, s.incarnation, next);\n",
    to: "",
    tests: ["src/shipper/backfill.test.ts"],
    only: "past its own watermark, without a hole",
  },
  {
    // Found by the simulator (seed 106): a region bootstrapped from a peer whose operator had
    // just deleted a key by hand; the record survived only in the peer's WAL.
    name: "bootstrap: a peer's current stream copied from its store alone, not the holes from its WAL",
    file: "src/node/copy.ts",
    from: "      if (!older && r.holes.length > 0) {\n",
    to: "      if (false) {\n",
    tests: ["src/node/copy.test.ts"],
    only: "lacks in its store from its WAL",
  },
  {
    // Found by the simulator's check that no node ends a run stopped (seed 2): a request of a
    // restarted node's previous boot, delayed past the new boot's first one, made the new boot
    // a second node, and it stopped taking appends for good.
    name: "twin check: a request counts by its arrival alone, not also by when it was sent",
    file: "src/node/incarnations.ts",
    from: "      if (sentAtMs <= o.firstSentMs && nowMs - o.firstMs <= this.aliveMs) continue;\n",
    to: "",
    tests: ["src/reader/refusals.test.ts"],
    only: "no rival, whenever it arrives",
  },
  {
    // Found by the simulator (seed 206: the previous boot's clock ran 1.4 s ahead) and by
    // review (that, with one late request): one request is no proof of a live instance.
    name: "twin check: one request after the new instance's first is a rival (no spread)",
    file: "src/node/incarnations.ts",
    from: "if (h.firstMs < me.firstMs && spoke && spoke.toMs - spoke.fromMs >= this.spreadMs)",
    to: "if (h.firstMs < me.firstMs && spoke)",
    tests: ["src/reader/refusals.test.ts"],
    only: "clock ran ahead is no rival either",
  },
  {
    // Found by review: by timestamps alone a copy with a clock behind passes as long as it is behind.
    name: "twin check: no bound on a request's lateness (a clock behind hides a live copy)",
    file: "src/node/incarnations.ts",
    from: "      if (sentAtMs <= o.firstSentMs && nowMs - o.firstMs <= this.aliveMs) continue;",
    to: "      if (sentAtMs <= o.firstSentMs) continue;",
    tests: ["src/reader/refusals.test.ts"],
    only: "whose clock runs behind",
  },
  {
    name: "gate: a slot given back only at onResponse",
    file: "src/node/http/gate.ts",
    from: '  app.addHook("onSend", async (req, _reply, payload) => {\n    release(req);',
    to: '  app.addHook("onSend", async (req, _reply, payload) => {\n    void req;',
    tests: ["src/node/http/gate.test.ts"],
  },
  {
    name: "gate: a running handler's slot given back when its connection closes",
    file: "src/node/http/gate.ts",
    from: "if (!held.get(req)?.handling) release(req);",
    to: "release(req);",
    tests: ["src/node/http/gate.test.ts"],
  },
  {
    name: "claims: a re-taken claim given back on a failure",
    file: "src/node/append-path.ts",
    from: "const unclaim = c.fresh ? () => claims.release(rec.key) : undefined;",
    to: "const unclaim = () => claims.release(rec.key);",
    tests: ["src/node/append-path.test.ts"],
  },
  {
    name: "PostgreSQL: a node marked left still applies",
    file: "src/store/postgres-store.ts",
    from: "if (node.rows[0] && node.rows[0].left_at_ms !== null) throw new NodeLeftError(batch.incarnation);",
    to: "",
    tests: ["test/store/postgres-store.test.ts"],
  },
  {
    name: "PostgreSQL: a node marked left still claims",
    file: "src/store/postgres-store.ts",
    from: "SELECT $1, $2, $3, $4, $4 WHERE EXISTS",
    to: "SELECT $1, $2, $3, $4, $4 WHERE TRUE OR EXISTS",
    tests: ["test/store/postgres-store.test.ts"],
  },
  {
    name: "shipper: a resync waits for an idle window",
    file: "src/shipper/peer-shipper.ts",
    from: "if (roomFor() && !this.resyncWanted) {",
    to: "if (roomFor()) {",
    tests: ["test/replication/resync.test.ts"],
  },
  {
    name: "several nodes per region: a departed node's stream waits for a restart",
    file: "src/node/fellows.ts",
    from: "for (const s of r.shippers.values()) s.resync();",
    to: "void r;",
    tests: ["test/store/region-nodes.test.ts"],
  },
  {
    name: "several nodes per region: a node's shippers read its whole durable WAL, not what the store holds",
    file: "src/node/applied-wal.ts",
    from: "return node.store.shared && node.nodeId ? appliedOnly(node.wal, node.applier) : node.wal;",
    to: "return node.wal;",
    tests: ["src/node/applied-wal.test.ts"],
  },
  {
    name: "SQLite: a meta decision written without a synced commit",
    file: "src/store/sqlite-store.ts",
    from: '    this.guard("write meta", () => {\n      this.syncCommits(true);',
    to: '    this.guard("write meta", () => {',
    tests: ["test/store/sqlite-store.test.ts"],
    only: "the first after opening",
  },
  {
    name: "shipper: a bootstrapping peer's empty view taken as every tenant delivered (simulator seed 5)",
    file: "src/shipper/peer-shipper.ts",
    from: "    if (c.view.bootstrapping === true) return this.peerBootstrapping();\n",
    to: "",
    tests: ["test/shipper/peer-shipper.test.ts"],
    only: "bootstrapping under an older policy",
  },
  {
    name: "bootstrap: our older incarnation asked of a peer only when its own watermark for it is above 0 (simulator seed 298)",
    file: "src/node/copy.ts",
    from: "      if (fromLsn > at.lsn) continue;\n      const s = { origin: m.region, incarnation, fromLsn, toLsn: at.lsn };",
    to: "      const mine = m.views.get(peer)!.streams.find((x) => x.origin === m.region && x.incarnation === incarnation);\n      if (fromLsn > at.lsn || !mine || mine.lsn === 0) continue;\n      const s = { origin: m.region, incarnation, fromLsn, toLsn: mine.lsn };",
    tests: ["src/node/copy.test.ts"],
    only: "furthest watermark",
  },
  {
    name: "detector: a record a widened policy newly takes, passed by a watermark while left out, reported missing",
    file: "src/divergence/classify.ts",
    from: "    v.hlc.wallMs <= w.atMs + (c.maxSkewMs ?? 0)\n",
    to: "    false\n",
    tests: ["src/divergence/classify.test.ts"],
    only: "widened to take",
  },
  {
    name: "the store does not remember the policy: no widening in the watermarks view (simulator seed 215)",
    file: "src/node/parts.ts",
    from: "  await notePolicy(store, config, runtime.nowMs());\n",
    to: "",
    tests: ["test/sim/sim.test.ts"],
    only: "seed 215:",
  },
  {
    name: "SQLite: a hand-edited copy exported to a bootstrap (simulator seed 52)",
    file: "src/store/sqlite-store.ts",
    from: "(r) => r.lsn > (held.get(`${r.origin}/${r.incarnation}`) ?? 0) && this.isIntact(r))",
    to: "(r) => r.lsn > (held.get(`${r.origin}/${r.incarnation}`) ?? 0))",
    tests: ["test/store/store-contract.test.ts"],
  },
  {
    name: "a WAL read of the active segment borrows the writer's fd (simulator, PostgreSQL with several nodes, seed 3)",
    file: "src/wal/wal.ts",
    from: 'const fd = await this.ops.open(seg.path, "r");',
    to: 'const fd = seg === this.active ? this.activeFd : await this.ops.open(seg.path, "r");',
    and: [
      {
        from: "      await this.ops.close(fd).catch(() => undefined);\n    }",
        to: "      if (seg !== this.active) await this.ops.close(fd).catch(() => undefined);\n    }",
      },
    ],
    tests: ["test/wal/wal.test.ts"],
  },
  {
    name: "PostgreSQL: a hand-edited copy exported to a bootstrap",
    file: "src/store/postgres-store.ts",
    from: "!row.flagged && row.vh.equals(versionHash(fromRow(row)));\n    return {\n      versions: r.rows",
    to: "row.vh.length >= 0;\n    return {\n      versions: r.rows",
    tests: ["test/store/store-contract.test.ts"],
  },
  {
    name: "the detector compares with a peer that is bootstrapping (simulator seed 3)",
    file: "src/divergence/detector.ts",
    from: "    if (view.bootstrapping === true)\n",
    to: "    if (false)\n",
    tests: ["test/store/divergence-detector.test.ts"],
  },
  {
    name: "a bootstrap holds its older incarnation's watermark below an LSN one peer holds damaged, though another gave it intact (simulator seed 98)",
    file: "src/node/copy.ts",
    from: "if (held.length === 0) upTo = l - 1;",
    to: "if (held.length >= 0) upTo = l - 1;",
    tests: ["src/node/copy.test.ts"],
  },
  {
    name: "an overloaded node reads a refused append's whole body before refusing it",
    file: "src/node/http/routes-public.ts",
    from: "        region.refuseEarly();\n      } catch (err) {",
    to: "        void region;\n      } catch (err) {",
    tests: ["test/node/batch-appends.test.ts"],
  },
  // --- PostgreSQL: what keeps several nodes of a region on one store correct ----------------
  {
    name: "several nodes per region: a claim whose answer was lost stays until the node restarts",
    file: "src/node/append-path.ts",
    from: "        await end().catch((e: unknown) => this.d.onClaimStuck?.(rec.key, e, end));\n",
    to: "",
    tests: ["src/node/append-path.test.ts"],
  },
  {
    name: "several nodes per region: a claim whose end failed stays after the store answers again",
    file: "src/node/fellows.ts",
    from: "      await this.o.onBeat?.();\n",
    to: "",
    tests: ["src/node/fellows.test.ts"],
  },
  {
    name: "PostgreSQL: a lost claim's release ends a claim another attempt made",
    file: "src/store/postgres-store.ts",
    from: '"DELETE FROM claims WHERE key = $1 AND incarnation = $2 AND attempt = $3 AND taken_by = $3"',
    to: '"DELETE FROM claims WHERE key = $1 AND incarnation = $2 AND attempt = $3"',
    tests: ["test/store/postgres-store.test.ts"],
  },

  {
    name: "several nodes per region: a third region's detector guesses its live streams from which was updated last",
    file: "src/divergence/classify.ts",
    from: "  for (const [region, live] of liveElsewhere) if (!current.has(region)) current.set(region, new Set(live));",
    to: "  void liveElsewhere;",
    tests: ["test/store/divergence-detector.test.ts"],
  },

  {
    name: "several nodes per region: appends take no claim",
    file: "src/node/fellows.ts",
    from: "  if (!shared || !nodeId) return undefined;\n",
    to: "  if (!shared || !nodeId || waitMs > 0) return undefined;\n",
    tests: ["test/store/region-nodes.test.ts"],
  },
  {
    name: "several nodes per region: a replacement node takes a left node's stream for its own",
    file: "src/node/parts.ts",
    from: "  const others = await otherNodesIncarnations(store, nodeId);\n",
    to: "  const others = await fellowIncarnations(store, nodeId);\n",
    tests: ["test/store/region-nodes.test.ts"],
  },
  {
    name: "several nodes per region: readiness blind to a shared store that does not answer",
    file: "src/node/status.ts",
    from: "  const heartbeatsFailed = r.membership?.failures ?? 0;\n",
    to: "  const heartbeatsFailed = 0;\n",
    tests: ["test/store/region-nodes.test.ts"],
  },
  {
    name: "several nodes per region: after a lost store, a node admitted before its fellows replayed their WALs",
    file: "src/node/startup.ts",
    from: "      await this.o.fellowsReplayed?.({\n",
    to: "      await (undefined as typeof this.o.fellowsReplayed)?.({\n",
    tests: ["test/store/region-nodes.test.ts"],
    only: "lost shared store",
  },
  {
    name: "several nodes per region: a fellow's row a backup brought back (replayed before the memory) taken for a new replay",
    file: "src/node/fellow-memory.ts",
    from: "r.replayedAtMs !== undefined && r.replayedAtMs > memory.atMs",
    to: "r.replayedAtMs !== undefined",
    tests: ["src/node/fellow-memory.test.ts"],
  },
  {
    name: "several nodes per region: a node the shared store no longer knows keeps taking appends",
    file: "src/node/fellows.ts",
    from: "      if (forgotten) {\n",
    to: "      if (false) {\n",
    tests: ["test/store/region-nodes.test.ts"],
    only: "lost shared store",
  },
  {
    name: "several nodes per region: a store that forgot a fellow under a running node goes unnoticed",
    file: "src/node/fellow-wait.ts",
    from: "    if (forgotten.length > 0) {\n",
    to: "    if (false) {\n",
    tests: ["test/store/region-nodes.test.ts"],
    only: "lost shared store",
  },
  {
    name: "several nodes per region: crr leave --node-id records nothing for a node the store forgot",
    file: "src/store/postgres-store.ts",
    from: "        if (rows.rows.length === 0) await this.recordLeftUnknown(c, nodeId);\n",
    to: "",
    tests: ["test/store/region-nodes.test.ts"],
    only: "lost shared store",
  },
  {
    name: "several nodes per region: after a lost store, a remembered fellow taken for a twin",
    file: "src/node/region.ts",
    from: "...(this.fellowWatch?.rememberedFellows() ?? []),",
    to: "...([] as string[]),",
    tests: ["test/sim/sim.test.ts"],
    only: "lost its store",
  },
  {
    name: "several nodes per region: a restart during the wait for fellows forgets the store forgot",
    file: "src/node/fellow-wait.ts",
    from: "    if (!memory.forgotten) await this.write({ ...memory, forgotten: [...this.o.forgotten] });\n",
    to: "",
    tests: ["src/node/fellow-wait.test.ts"],
  },
  {
    name: "several nodes per region: a store holding less of the node's own stream than it applied, unnoticed while it runs",
    file: "src/node/fellow-wait.ts",
    from: "    if (held < applied)\n",
    to: "    if (false)\n",
    tests: ["src/node/fellow-wait.test.ts"],
  },
  {
    name: "several nodes per region: after the wait, the memory keeps rows the store never got back",
    file: "src/node/fellow-wait.ts",
    from: "    if (next) await this.write(next);\n",
    to: "",
    tests: ["src/node/fellow-wait.test.ts"],
  },
  {
    name: "several nodes per region: fellows.json that cannot be written fails the heartbeat (read as a store that does not answer)",
    file: "src/node/fellow-wait.ts",
    from: "      this.o.onWriteError(err as Error);\n",
    to: "      throw err;\n",
    tests: ["src/node/fellow-wait.test.ts"],
  },
  {
    name: "PostgreSQL: a server that does not answer taken for a failed store (500, not 503)",
    file: "src/store/postgres-store.ts",
    from: "    if (unreachable(err)) return new StoreUnavailableError(this.description, op, err);\n",
    to: "",
    tests: ["test/store/region-nodes.test.ts"],
  },
  {
    name: "PostgreSQL: a stream's watermark read without locking it",
    file: "src/store/postgres-store.ts",
    from: '`SELECT lsn FROM watermarks WHERE origin = $1 AND incarnation = $2${lock ? " FOR UPDATE" : ""}`',
    to: "`SELECT lsn FROM watermarks WHERE origin = $1 AND incarnation = $2`",
    tests: ["test/store/store-contract.test.ts"],
  },
  {
    name: "PostgreSQL: a batch's keys read without locking them",
    file: "src/store/postgres-store.ts",
    from: "         ORDER BY bucket, key FOR UPDATE`,",
    to: "         ORDER BY bucket, key`,",
    tests: ["test/store/store-contract.test.ts"],
  },
  // --- each loss-path fix, reverted --------------------------------------------------------
  {
    name: "recovery without evidence (torn-tail window only)",
    file: "src/node/parts.ts",
    from: "    onFsync: (seconds) => metrics.walFsyncSeconds.observe(seconds),\n    evidence,\n",
    to: "    onFsync: (seconds) => metrics.walFsyncSeconds.observe(seconds),\n",
    tests: ["test/recovery/wal-evidence.test.ts"],
  },
  {
    name: "damaged whole frames at the tail cut beyond what the evidence saw",
    file: "src/wal/tail-plan.ts",
    from: "    seen < last + Math.max(1, tailFramesMax) &&\n",
    to: "    seen <= last &&\n",
    tests: ["src/wal/tail-plan.test.ts"],
  },
  {
    name: "retention does not wait for the archive's verified copy",
    file: "src/node/retention.ts",
    from: "      ...(archived !== undefined ? [archived] : []),\n",
    to: "",
    tests: ["test/archive/archive.test.ts"],
  },
  {
    name: "an archived copy counted without reading it back",
    file: "src/archive/archiver.ts",
    from: "    verifyCopy(key, back, seal.sha256Hex, want, this.o.keys);\n",
    to: "",
    tests: ["src/archive/archiver.test.ts"],
  },
  {
    name: "a bootstrap copies from peers that are bootstrapping while another did not answer",
    file: "src/node/startup.ts",
    from: "    if (withState || views.size === this.o.links.length) return;\n",
    to: "    return;\n",
    tests: ["src/node/startup.test.ts"],
  },
  {
    name: "a bootstrap's winners export asks again for what the archive restored",
    file: "src/node/copy.ts",
    from: "await copyWinners(m.links.get(peer)!, m.store, keep, m.covered, m.region, takes);",
    to: "await copyWinners(m.links.get(peer)!, m.store, keep, undefined, m.region, takes);",
    tests: ["test/archive/archive.test.ts"],
  },
  {
    name: "a bootstrap's stream copy starts again from LSN 1 over what the archive restored",
    file: "src/node/copy.ts",
    from: "      const fromLsn = restored(m, peer, own.incarnation) + 1;\n",
    to: "      const fromLsn = 1;\n",
    tests: ["test/archive/archive.test.ts"],
  },
  {
    name: "crr rebuild ignores the archive",
    file: "src/cli/rebuild.ts",
    from: "    const covered = await fromArchive(region, say);\n",
    to: "    const covered: SeededStream[] = [];\n",
    tests: ["test/archive/archive.test.ts"],
  },
  {
    name: "recovery does not ask the archive what the WAL held",
    file: "src/node/evidence.ts",
    from: '    if (this.o.archive) candidates.push(["the S3 archive", await this.archivedLsn(incarnation)]);\n',
    to: "",
    tests: ["test/archive/archive.test.ts"],
  },
  {
    name: "the archive's objects beyond its cursor are not evidence",
    file: "src/archive/evidence.ts",
    from: "      if (await this.genuine(obj)) best = obj.lastLsn;\n",
    to: "      void obj;\n",
    tests: ["src/archive/evidence.test.ts"],
  },
  {
    name: "an archive pass uploads as long as records keep arriving",
    file: "src/archive/archiver.ts",
    from: "    if (want > target) return undefined;\n",
    to: "",
    tests: ["src/archive/archiver.test.ts"],
  },
  {
    name: "a restore takes one of two versions of an LSN silently",
    file: "src/archive/restore.ts",
    from: "const checked = await damaged(async () => (await checkVersions(s, framesOf), true));",
    to: "const checked = await damaged(async () => true);",
    tests: ["src/archive/evidence.test.ts"],
  },
  {
    name: "an archived object applied without its origin's seal",
    file: "src/archive/restore.ts",
    from: 'if (sealed !== "ok") throw new ArchiveDamageError(`archived ${obj.key} refused: ${sealed}`);',
    to: "void sealed;",
    tests: ["src/archive/follower.test.ts"],
  },
  {
    name: "peers reached via s3 are not followed",
    file: "src/node/region.ts",
    from: "      for (const f of this.followers) f.start();\n",
    to: "",
    tests: ["test/archive/archive.test.ts"],
  },
  {
    name: "local apply ignores the store's answer",
    file: "src/node/local-applier.ts",
    // Both guards: the check before applying and the check of the store's answer.
    from: "        if (watermark >= first) throw new LsnReuseError(first, watermark);\n",
    to: "",
    and: [
      {
        from: '  if (result.status !== "applied" || result.watermark !== batch.lastLsn)\n    throw new LsnReuseError(batch.firstLsn, result.watermark);\n',
        to: "",
      },
    ],
    tests: ["test/node/local-apply-retention.test.ts"],
  },
  {
    name: "shipper not supervised (one session, then gone)",
    file: "src/shipper/peer-shipper.ts",
    from: "        await this.session();\n      } catch (err) {\n        if (signal.aborted) break;",
    to: "        await this.session();\n      } catch (err) {\n        if (signal.aborted || err) break;",
    tests: ["test/replication/shipper-supervision.test.ts"],
  },
  {
    name: "no store fallback when the WAL cannot serve",
    file: "src/shipper/stream-reader.ts",
    from: "    onFallback(err);\n    return readFromStore(",
    to: "    throw err;\n    return readFromStore(",
    tests: ["test/replication/backfill.test.ts"],
    only: "damaged sealed segment",
  },
  {
    name: "peer acknowledges before a synced commit",
    file: "src/store/sqlite-store.ts",
    from: '    return this.guard("apply a batch", () => {\n      this.syncCommits(true);',
    to: '    return this.guard("apply a batch", () => {',
    tests: ["test/replication/durable-acks.test.ts"],
  },
  {
    name: "a region without state serves at once",
    file: "src/node/startup.ts",
    from: "if (this.o.empty && this.o.links.length > 0) await this.bootstrap(views);",
    to: "if (false) await this.bootstrap(views);",
    tests: ["test/recovery/startup.test.ts"],
    only: "disk was lost",
  },
  {
    name: "no check for a second node with this region's name",
    file: "src/node/startup.ts",
    from: "    if (alive.length > 0) {",
    to: "    if (false) {",
    tests: ["test/recovery/startup.test.ts"],
    only: "same region name",
  },
  {
    name: "audit head moves before the write",
    file: "src/audit/audit-log.ts",
    from: "        this.head = heads.at(-1)!;\n",
    to: "",
    tests: ["test/audit/audit-log.test.ts"],
  },
  {
    name: "appends admitted on a full disk",
    file: "src/node/region.ts",
    from: "    if (this.disk.full !== undefined)\n      throw new UnavailableError(",
    to: "    if (false)\n      throw new UnavailableError(",
    tests: ["test/node/disk-full.test.ts"],
  },
  {
    name: "in flight forever (no age bound)",
    file: "src/divergence/classify.ts",
    from: '  if (c.nowMs - v.hlc.wallMs > c.inFlightMsMax) return "age";\n',
    to: "",
    tests: ["src/divergence/classify.test.ts", "test/divergence/evidence.test.ts"],
  },
  {
    name: "peers with another conflict rule replicate",
    file: "src/reader/reader.ts",
    from: "    if (rule !== this.o.rule) {",
    to: "    if (false) {",
    tests: ["test/replication/refusals.test.ts"],
  },
  {
    name: "lone surrogates accepted",
    file: "src/wal/record.ts",
    from: "  if (loneSurrogate.test(value))",
    to: "  if (false)",
    tests: ["test/replication/refusals.test.ts"],
  },
  {
    name: "store errors without the file's name",
    file: "src/store/sqlite-store.ts",
    from: '      throw storeError(o.path, "open", err);\n    }\n    this.applyTx',
    to: "      throw err;\n    }\n    this.applyTx",
    tests: ["test/divergence/divergence.test.ts"],
    only: "rebuilds a region",
  },
  // --- what the simulator found (issue 10), each fix reverted ------------------------------
  {
    name: "a bit flip in the last synced frame cut as a torn tail",
    file: "src/wal/tail-plan.ts",
    from: "    end >= image.length - i.unsyncedBytesMax &&\n    !looksTorn(image, end)\n",
    to: "    end >= image.length - i.unsyncedBytesMax &&\n    false\n",
    tests: ["test/recovery/wal-damage.test.ts"],
  },
  {
    name: "conflict ids not reserved above the audit log's mark",
    file: "src/node/parts.ts",
    from: "  await store.reserveConflictIds(audit.current.conflictMark);\n",
    to: "",
    tests: ["test/sim/sim.test.ts"],
  },
  {
    name: "bootstrap copies only a peer's current incarnation",
    file: "src/node/copy.ts",
    from: "    for (const own of view.streams.filter((x) => x.origin === peer && x.lsn > 0))",
    to: "    for (const own of view.streams.filter((x) => x.origin === peer && x.incarnation === view.incarnation && x.lsn > 0))",
    tests: ["test/sim/sim.test.ts"],
  },
  {
    name: "bootstrap copies to the watermarks seen at open",
    file: "src/node/startup.ts",
    from: "    refresh(views, await this.ask());\n    this.refuseOnlyBootstrapping(views);\n",
    to: "    this.refuseOnlyBootstrapping(views);\n",
    // The simulator found it (seed 60, then seed 1); since the thirteenth stop's changes moved
    // those schedules, the startup test kills it.
    tests: ["src/node/startup.test.ts"],
    only: "asks the peers again right before copying",
  },
  {
    name: "a bootstrap retry drops peers that do not answer again",
    file: "src/node/startup.ts",
    from: "        refresh(views, await this.ask());\n      }",
    to: "        views = new Map(await this.ask());\n      }",
    tests: ["src/node/startup.test.ts"],
  },
  {
    // No SIGKILL test can see this one (the page cache keeps the entry): only a power loss.
    name: "a new WAL segment's directory entry never synced",
    file: "src/wal/recovery.ts",
    from: "    await ops.rename(tmpPath, finalPath);\n    await fsyncDir(dir, ops);\n",
    to: "    await ops.rename(tmpPath, finalPath);\n",
    tests: ["test/sim/sim.test.ts"],
  },
  {
    name: "own records declared lost while a peer did not answer",
    file: "src/node/replay.ts",
    from: "  if (lost > 0 && evidence.unanswered.length > 0)\n",
    to: "  if (false)\n",
    tests: ["test/sim/sim.test.ts"],
    only: "seed 196:",
  },
  {
    name: "a region whose own lost records a silent peer may hold refuses at once instead of serving and asking again",
    file: "src/node/region.ts",
    from: "        if (!(err instanceof OwnRecordsUndecidedError)) throw err;\n",
    to: "        throw err;\n",
    tests: ["test/recovery/lost-state.test.ts"],
  },
  {
    name: "a bootstrap copies the winners of the first peer only",
    file: "src/node/copy.ts",
    from: "  for (const peer of m.views.keys()) {\n    const takes =",
    to: "  for (const peer of [...m.views.keys()].slice(0, 1)) {\n    const takes =",
    tests: ["src/node/copy.test.ts"],
  },
  {
    name: "a bootstrap takes another region's copied stamp as its clock floor, however far ahead",
    file: "src/node/startup.ts",
    from: "    if (newest.other) this.observeClock(",
    to: "    if (newest.other) this.o.clock.observe(newest.other);\n    if (false) this.observeClock(",
    tests: ["src/node/startup.test.ts"],
    only: "takes the newest stamp of another region",
  },
  {
    name: "a bootstrap bounds its own records' stamps like another region's (a slow clock stamps below them)",
    file: "src/node/startup.ts",
    from: "    if (newest.own) this.o.clock.observe(newest.own);",
    to: '    if (newest.own) this.observeClock(newest.own, {}, "own");',
    tests: ["src/node/startup.test.ts"],
    only: "takes the newest stamp of another region",
  },
  {
    name: "append.eventLoopDelayMaxMs never registered",
    file: "src/node/http/routes-public.ts",
    from: "    if (delayMaxMs > 0)\n      await app.register(underPressure, {",
    to: "    if (delayMaxMs < 0)\n      await app.register(underPressure, {",
    tests: ["src/node/http/event-loop-admission.test.ts"],
  },
  {
    name: "a node never names the codings it reads",
    file: "src/node/http/routes-peer.ts",
    from: '        void reply.header("accept-encoding", codingsRead);\n',
    to: "",
    tests: ["test/replication/compression.test.ts"],
  },
  {
    name: "a shipper codes again at once after a coded batch was refused as unreadable",
    file: "src/link/http-link.ts",
    from: "this.codingPausedUntilMs = this.rt.nowMs() + codingPauseMs;",
    to: "this.codingPausedUntilMs = 0;",
    tests: ["src/link/coding.test.ts"],
  },
  {
    name: "the event-loop shed answers before asking whether the node takes appends at all",
    file: "src/node/append-path.ts",
    from: "    this.d.admit();\n    const lag =",
    to: "    const lag =",
    tests: ["src/node/http/event-loop-admission.test.ts"],
  },
  {
    name: "a coded batch handed to the reader undecoded",
    file: "src/node/http/routes-peer.ts",
    from: "          body: decoded.body,",
    to: "          body: req.body,",
    tests: ["test/replication/compression.test.ts"],
  },
  {
    name: "the peer routes send a tenant the policy keeps from the asker",
    file: "src/node/http/routes-peer.ts",
    from: "const takes = (asker: string, tenant: string) => region.policy.regionTakes(asker, tenant);",
    to: "const takes = (_asker: string, _tenant: string) => true;",
    tests: ["src/node/http/withhold.test.ts"],
  },
  {
    name: "a copy by stream takes a withheld LSN for a hole",
    file: "src/node/copy.ts",
    from: ": [...page.versions, ...withheld.map((w) => ({ lsn: w.lsn, intact: true }))].sort(byLsn);",
    to: ": page.versions;",
    tests: ["src/node/copy.test.ts"],
  },
  {
    name: "a copy by stream covers a withheld LSN whose tenant it takes",
    file: "src/node/copy.ts",
    from: "for (const w of withheld) if (keep(w)) coveredThrough = Math.min(coveredThrough, w.lsn - 1);",
    to: "",
    tests: ["src/node/copy.test.ts"],
  },
  {
    name: "a bootstrap copies winners from a peer that withholds a tenant it takes",
    file: "src/node/copy.ts",
    from: "    if (refused.length > 0)\n      throw",
    to: "    if (false)\n      throw",
    tests: ["src/node/copy.test.ts"],
  },
  {
    name: "the detector takes a key of a tenant the peer withheld for missing there",
    file: "src/divergence/detector.ts",
    from: "        if (mine && !remoteByKey.has(key) && withheld.has(mine.tenant)) continue;\n",
    to: "",
    tests: ["test/store/divergence-detector.test.ts"],
  },
  {
    name: "an operator's skip allowance is never spent (a peer that went back skips the gap again unasked)",
    file: "src/shipper/peer-shipper.ts",
    from: "if (this.skipThrough > 0 && watermark >= this.skipThrough) this.skipThrough = 0;",
    to: "",
    tests: ["test/shipper/peer-shipper.test.ts"],
    only: "is spent once the peer passed it",
  },
  {
    name: "verify's stream check leaves a withheld LSN unanswered",
    file: "src/node/stream-check.ts",
    from: "for (const w of page.withheld ?? []) if (!c.accepts(s.origin, w.tenant)) missing.delete(w.lsn);",
    to: "",
    tests: ["src/node/stream-check.test.ts"],
  },
  {
    name: "an operator's skip through the last LSN is not spent when the peer reaches exactly it",
    file: "src/shipper/peer-shipper.ts",
    from: "if (this.skipThrough > 0 && watermark >= this.skipThrough) this.skipThrough = 0;",
    to: "if (this.skipThrough > 0 && watermark > this.skipThrough) this.skipThrough = 0;",
    tests: ["test/shipper/peer-shipper.test.ts"],
    only: "is spent when the peer reaches exactly that LSN",
  },
  {
    name: "a shipper that fails after every session's first answer logs 'recovered' and 'failing' at every retry",
    file: "src/shipper/peer-shipper.ts",
    from: "    await this.backfillWidened(c, wentBack);\n    await this.shipCurrent();",
    to: "    await this.backfillWidened(c, wentBack);\n    this.noteRecovered();\n    await this.shipCurrent();",
    tests: ["test/replication/shipper-supervision.test.ts", "test/shipper/peer-shipper.test.ts"],
  },
  {
    name: "a sealed WAL segment that ends early answers 'nothing durable yet' on the next read of an LSN it lacks",
    file: "src/wal/wal.ts",
    from: "        throw seg.damaged;\n      }",
    to: "        const found = seg.damaged;\n        seg.damaged = undefined;\n        throw found;\n      }",
    tests: ["test/wal/wal-io.test.ts"],
    only: "ends before the next one starts",
  },
  {
    name: "a follower reads a peer's archived objects without its audience's word (tenants kept from it)",
    file: "src/archive/follower.ts",
    from: "if (!allowed) await this.checkAudience(obj.incarnation);",
    to: "",
    tests: ["src/archive/follower.test.ts"],
  },
  {
    name: "a seed from the archive takes a stream not sent to this region whole",
    file: "src/archive/restore.ts",
    from: "const plan = planned.filter((s) => !passedOver.has(streamId(s.origin, s.incarnation)));",
    to: "const plan = planned;",
    tests: ["src/archive/audience.test.ts"],
  },
  {
    name: "crr restore keeps a peer's tenants its audience does not send here",
    file: "src/cli/restore.ts",
    from: "return a === undefined || sendsTenant(a, config.region, tenant);",
    to: "return true;",
    tests: ["src/archive/audience.test.ts"],
  },
  {
    name: "one audience that cannot be read fails a whole seed from the archive",
    file: "src/archive/audience.ts",
    from: "      const why = (err as Error).message;",
    to: "      if (!(err instanceof AudienceError)) throw err;\n      const why = (err as Error).message;",
    tests: ["src/archive/audience.test.ts"],
  },
  {
    name: "via: s3 accepted under a selective policy",
    file: "src/config/load.ts",
    from: 'else if (c.crr.replicationMode === "selective")',
    to: 'else if (c.crr.replicationMode === ("none" as string))',
    tests: ["src/config/load.test.ts"],
  },
  // --- twenty-second stop: bootstrap from the archive, and the archive's listing ------------
  {
    name: "a bootstrap whose archive cannot be read goes on from the peers alone",
    file: "src/node/startup.ts",
    from: "        const error = (err as Error).message;\n        if (this.o.runtime.nowMs() > this.bootstrapFromMs",
    to: "        const error = (err as Error).message;\n        if (error) return { streams: [], audit: { error } };\n        if (this.o.runtime.nowMs() > this.bootstrapFromMs",
    tests: ["src/node/startup.test.ts"],
  },
  {
    name: "a region without peers skips its archive at bootstrap",
    file: "src/node/startup.ts",
    from: 'else if (this.o.empty) await this.bootstrapAlone("a region with no peers");',
    to: 'else if (this.o.empty) await this.o.store.setMeta("bootstrap", "done");',
    tests: ["src/node/startup.test.ts"],
  },
  {
    name: "a bootstrap takes its own archived stream cut short by damage without the operator's word",
    file: "src/node/startup.ts",
    from: "if (missing.length === 0 || this.o.acceptWalLoss) return missing;",
    to: "return missing;",
    tests: ["src/node/startup.test.ts"],
  },
  {
    name: "a damaged archived object fails a bootstrap's whole restore",
    file: "src/archive/restore.ts",
    from: "upToDamage: true });",
    to: "upToDamage: false });",
    tests: ["src/archive/audience.test.ts"],
  },
  {
    name: "an origin's incarnations listed from one page only",
    file: "src/archive/s3-store.ts",
    from: "ContinuationToken = r.IsTruncated ? r.NextContinuationToken : undefined;",
    to: "ContinuationToken = undefined;",
    tests: ["src/archive/s3-store.test.ts"],
  },
  {
    name: "a bootstrap counts a peer's watermark, not the records it copied, after its own archived stream's cut",
    file: "src/node/copy.ts",
    from: "      gap(v.lsn - 1);\n",
    to: "",
    tests: ["src/node/startup.test.ts"],
  },
  {
    name: "a bootstrap's restore leaves what intact archived objects past a cut hold to the peers",
    file: "src/archive/restore.ts",
    from: "cutWhy && o.upToDamage && rest.length > 0",
    to: "false",
    tests: ["src/archive/seed-beyond.test.ts"],
  },
  {
    name: "a bootstrap leaves its own cut stream's watermark below what it restored past the cut (never shipped)",
    file: "src/node/startup.ts",
    from: "        await this.o.store.resetWatermark(c.origin, c.incarnation, c.archivedLsn);",
    to: "        void 0;",
    tests: ["src/node/startup.test.ts"],
  },
  {
    name: "a damaged archived object shared with an intact copy fails its whole stream's restore",
    file: "src/archive/restore.ts",
    from: "      if (!(err instanceof ArchiveDamageError)) throw err;\n      continue;",
    to: "      throw err;",
    tests: ["src/archive/seed-beyond.test.ts"],
  },
  {
    name: "a peer's new instance leaves an idle shipper to it as it was (a store restored from a copy waits for our next append)",
    file: "src/node/http/gate.ts",
    from: "    region.peerRestarted(peer);",
    to: "    void peer;",
    tests: ["test/node/store-restored.test.ts"],
  },
  {
    name: "a lost WAL beside a store that ran before but holds no own stream starts silently as a new incarnation",
    file: "src/node/wal-open.ts",
    from: "const lost = live.length > 0 || (o.bootstrapAfterLoss && (await ranBefore(o.store)));",
    to: "const lost = live.length > 0;",
    tests: ["src/node/wal-open.test.ts", "test/node/store-restored.test.ts"],
  },
  {
    name: "a restarted peer's predecessor's acknowledgement trusted before a session read the new one (crr drain drained)",
    file: "src/shipper/peer-shipper.ts",
    from: "    this.ackInDoubt = true;\n    this.resync();",
    to: "    this.resync();",
    tests: ["test/shipper/peer-shipper.test.ts"],
  },
  {
    name: "a restarted peer's ack doubt cleared by an answer asked before the new instance spoke",
    file: "src/shipper/peer-shipper.ts",
    from: "    if (this.restartsHeard === restartsBefore) this.ackInDoubt = false;",
    to: "    this.ackInDoubt = false;",
    tests: ["test/shipper/peer-shipper.test.ts"],
  },
  {
    name: "a single node on PostgreSQL leaves its lost WAL unchecked (keyed on the store offering sharing)",
    file: "src/node/parts.ts",
    from: "    bootstrapAfterLoss: !several,",
    to: "    bootstrapAfterLoss: store.shared === undefined,",
    tests: ["test/store/postgres-region.test.ts"],
  },
  {
    name: "an accepted WAL loss whose start died before its audit entry is never audited",
    file: "src/node/wal-open.ts",
    from: "  for (const entry of await pendingAbandoned(o.store)) o.onAbandoned(entry);",
    to: "  void pendingAbandoned;",
    tests: ["src/node/wal-open.test.ts"],
  },
  {
    name: "a throwing listener of written audit entries cuts synced, acknowledged entries",
    file: "src/audit/audit-log.ts",
    from: "        batch.forEach((b, i) => b.resolve(heads[i]!));\n      } catch (err) {",
    to: "        batch.forEach((b, i) => b.resolve(heads[i]!));\n        for (const b of batch) this.o.onWritten?.(b.entry.kind);\n      } catch (err) {",
    tests: ["test/audit/audit-log.test.ts"],
  },
];

/** A mutation's replacements: `from`/`to`, then any `and` ones (in the same file). */
const editsOf = (m) => [{ from: m.from, to: m.to }, ...(m.and ?? [])];

const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
if (args.includes("--check")) {
  // Only check that every mutation's text is where it should be (fast; run by the test suite).
  const bad = mutants.filter((m) =>
    editsOf(m).some((e) => fs.readFileSync(m.file, "utf8").split(e.from).length !== 2),
  );
  for (const m of bad) console.error(`mutation "${m.name}": its text is not exactly once in ${m.file}`);
  process.exit(bad.length > 0 ? 1 : 0);
}
const simSeeds = args.includes("--sim") ? Number(args[args.indexOf("--sim") + 1]) : undefined;
const simFrom = args.includes("--from") ? args[args.indexOf("--from") + 1] : "1";
const simStore = args.includes("--sim-store") ? args[args.indexOf("--sim-store") + 1] : "sqlite";

/** With --sim N: run the simulator on N seeds against the mutated source; the first failing seed. */
function simulate() {
  const r = spawnSync(
    "node",
    [
      "--import",
      "tsx",
      "scripts/sim.ts",
      "--seeds",
      String(simSeeds),
      "--from",
      simFrom,
      "--store",
      simStore,
    ],
    { encoding: "utf8" },
  );
  const failed = /seed (\d+): FAILED/.exec(r.stdout);
  return failed ? Number(failed[1]) : r.status === 0 ? undefined : -1;
}

const rows = [];
let survived = 0;
for (const m of mutants.filter((x) => !only || x.name.includes(only))) {
  const original = fs.readFileSync(m.file, "utf8");
  for (const e of editsOf(m)) {
    const count = original.split(e.from).length - 1;
    if (count !== 1) {
      console.error(`mutation "${m.name}": expected its text exactly once in ${m.file}, found ${count}`);
      process.exit(2);
    }
  }
  const started = Date.now();
  let killed;
  try {
    fs.writeFileSync(
      m.file,
      editsOf(m).reduce((text, e) => text.replace(e.from, e.to), original),
    );
    if (simSeeds !== undefined) {
      const seed = simulate();
      killed = seed !== undefined;
      m.found = seed === -1 ? "crashed" : seed === undefined ? `none of ${simSeeds}` : `seed ${seed}`;
    } else {
      const r = spawnSync("npx", ["vitest", "run", ...m.tests, ...(m.only ? ["-t", m.only] : [])], {
        encoding: "utf8",
        env: { ...process.env, CI: "" },
      });
      killed = r.status !== 0;
    }
  } finally {
    fs.writeFileSync(m.file, original);
  }
  if (!killed) survived++;
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const by =
    simSeeds !== undefined
      ? `simulator: ${m.found}`
      : `${m.tests.join(", ")}${m.only ? ` (-t "${m.only}")` : ""}`;
  rows.push(`| ${m.name} | ${by} | ${killed ? "killed" : "SURVIVED"} | ${seconds} |`);
  console.log(rows.at(-1));
}
// Rebuild dist/ from the restored sources.
spawnSync("npm", ["run", "build"], { stdio: "ignore" });
console.log(["", "| mutation | tests | result | s |", "| --- | --- | --- | --- |", ...rows].join("\n"));
process.exit(survived > 0 ? 1 : 0);
