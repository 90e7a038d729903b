/**
 * What a simulated run must end with, checked against the ledger of what clients were told
 * and an independent first-write-wins (written here apart from src/store/merge.ts), never
 * only region against region.
 */
import fs from "node:fs";
import path from "node:path";
import { verifyAuditFiles } from "../audit/index.js";
import { formatHlc, type Hlc } from "../clock/index.js";
import type { StoredRecord } from "../store/index.js";
import { auditLinesOf, siteOf, type LedgerEntry, type SimCluster, type SimNode } from "./cluster.js";
import { simReadable } from "./store.js";

/** Whether `region` should hold records of `tenant` written in `origin` (by `policy`: default, the current one). */
export function targets(
  c: SimCluster,
  region: string,
  tenant: string,
  origin: string,
  policy = c.o.tenants,
): boolean {
  if (region === origin) return true;
  const t = policy;
  if (!t) return true;
  const p = t.find((x) => x.tenantID === tenant);
  return p !== undefined && p.targetRegions.includes(region);
}

/** The obvious rule: the smallest (wall ms, logical, origin) wins. */
function earlier(a: { hlc: Hlc; origin: string }, b: { hlc: Hlc; origin: string }): boolean {
  if (a.hlc.wallMs !== b.hlc.wallMs) return a.hlc.wallMs < b.hlc.wallMs;
  if (a.hlc.logical !== b.hlc.logical) return a.hlc.logical < b.hlc.logical;
  return a.origin < b.origin;
}

const id = (v: { origin: string; incarnation: string; lsn: number }) =>
  `${v.origin}/${v.incarnation.slice(0, 8)}/${v.lsn}`;

function sameContent(v: StoredRecord, e: LedgerEntry): string | undefined {
  if (v.key !== e.key) return `key ${v.key} != ${e.key}`;
  if (v.tenant !== e.tenant) return `tenant ${v.tenant} != ${e.tenant}`;
  if (v.outcome !== e.outcome) return `outcome ${v.outcome} != ${e.outcome}`;
  if ((v.bodyJson ?? "") !== e.bodyJson) return `body ${v.bodyJson} != ${e.bodyJson}`;
  if (formatHlc(v.hlc) !== e.hlc) return `hlc ${formatHlc(v.hlc)} != ${e.hlc}`;
  return undefined;
}

/**
 * What the audit logs of `region`'s nodes say, those lost with a node's disk included (a
 * region served by several nodes audits on whichever node did the work).
 */
function regionAudit(c: SimCluster, region: string): Array<Record<string, unknown>> {
  return [
    ...c.nodesOf(region).flatMap((n) => auditLinesOf(n.config.dataDir)),
    ...c.lostAuditLines.filter((x) => x.region === region).map((x) => x.line),
  ];
}

function auditedLosers(c: SimCluster, region: string): Set<string> {
  const out = new Set<string>();
  for (const e of regionAudit(c, region)) {
    if (e.kind !== "conflict") continue;
    const loser = e.loser as { origin: string; incarnation: string; lsn: number };
    out.add(`${String(e.key)}|${id(loser)}`);
  }
  return out;
}

/**
 * Acknowledged records given up with a damaged WAL must be named by the region's audit log,
 * unless they were not lost after all: the start with --accept-wal-loss may find the WAL
 * recoverable (a peer answers with the damaged frames this time) and abandon nothing (seed 53).
 */
async function unauditedLosses(c: SimCluster): Promise<string[]> {
  const out: string[] = [];
  const held = async (e: LedgerEntry) => {
    for (const n of c.nodes.values())
      if (
        n.region?.store.isOpen === true &&
        (await simReadable(n.region.store).streamVersions(e.origin, e.incarnation, e.lsn, e.lsn, 1)).length >
          0
      )
        return true;
    return false;
  };
  for (const e of c.ledger) {
    if (!e.lost?.startsWith("the WAL of") || (await held(e))) continue;
    const abandoned = regionAudit(c, e.origin).some(
      (a) => a.kind === "wal-abandoned" && a.incarnation === e.incarnation,
    );
    if (!abandoned)
      out.push(`${e.origin}: lost ${id(e)} without a wal-abandoned audit entry for its incarnation`);
  }
  return out;
}

/** Every problem found in the cluster's final state (empty: the run passed). */
export async function checkCluster(c: SimCluster): Promise<string[]> {
  const problems: string[] = [];
  // Entries given up (no copy was left) are no longer expected, but one may still turn up
  // (an operator's salvage): then it is a decision like any other.
  const decided = c.ledger.filter((e) => !e.duplicate);
  problems.push(...decidedTwice(c, decided));
  // A region's store is checked once, through one of its running nodes.
  const checked = new Set<string>();
  for (const n of c.up()) {
    if (checked.has(n.regionName)) continue;
    checked.add(n.regionName);
    const store = simReadable(n.region!.store);
    const byKey = new Map<string, Array<{ e: LedgerEntry | undefined; v: StoredRecord }>>();
    for (const e of decided) {
      if (!targets(c, n.regionName, e.tenant, e.origin)) continue;
      const v = (await store.streamVersions(e.origin, e.incarnation, e.lsn, e.lsn, 10)).find(
        (x) => x.lsn === e.lsn,
      );
      if (!v) {
        if (!e.lost) problems.push(`${n.name} lacks acknowledged ${id(e)} (${e.key}, answered by ${e.node})`);
        continue;
      }
      const diff = sameContent(v, e);
      if (diff) problems.push(`${n.name} holds ${id(e)} changed: ${diff}`);
      const list = byKey.get(e.key) ?? [];
      list.push({ e, v });
      byKey.set(e.key, list);
    }
    const audited = auditedLosers(c, n.regionName);
    for (const [key, list] of byKey) {
      const winner = await store.get(key);
      // A write made durable whose answer no client heard (a crash in between) is a decision
      // too: the stored winner competes when the ledger does not know it.
      if (winner && !list.some((x) => id(x.v) === id(winner))) list.push({ e: undefined, v: winner });
      let first = list[0]!;
      for (const x of list) if (earlier(x.v, first.v)) first = x;
      if (!winner || id(winner) !== id(first.v))
        problems.push(
          `${n.name}: ${key} won by ${winner ? id(winner) : "nothing"}, the ledger says ${id(first.v)}`,
        );
      for (const x of list)
        if (x !== first && x.e && !audited.has(`${key}|${id(x.v)}`))
          problems.push(`${n.name}: conflict loser ${id(x.v)} of ${key} not in the audit log`);
    }
    problems.push(...(await policyLeaks(c, n)));
  }
  for (const n of c.up()) {
    const dir = path.join(n.config.dataDir, "audit");
    const files = fs.existsSync(dir)
      ? fs
          .readdirSync(dir)
          .sort()
          .map((f) => path.join(dir, f))
      : [];
    const audit = verifyAuditFiles(files);
    if (audit.problem) problems.push(`${n.name}: audit chain: ${audit.problem}`);
  }
  problems.push(...(await unauditedLosses(c)));
  problems.push(...(await unauditedSkips(c)));
  problems.push(...unallowedSkips(c));
  problems.push(...falseDivergence(c));
  for (const n of c.nodes.values())
    if (n.state !== "up") problems.push(`${n.name} is ${n.state}${n.refusal ? `: ${n.refusal}` : ""}`);
  return problems;
}

/**
 * Divergence the detector reported during the run, judged against what the run did: two
 * regions that each applied the other's version by watermark yet hold different ones is a
 * real difference, and the only ones this run makes are an operator's hand edits. Any other
 * such report is a false alarm (e.g. a version still in flight taken for a difference).
 * Reports settled by a dead incarnation or by age are not judged here: a dead stream's
 * records may still come by backfill, and the classifier cannot know.
 */
function falseDivergence(c: SimCluster): string[] {
  const out: string[] = [];
  // Every node's log, and what the logs of lost disks said before they went.
  const logs = [
    ...[...c.nodes.values()].map((n) => ({ name: n.name, lines: auditLinesOf(n.config.dataDir) })),
    ...c.lostAuditLines.map((x) => ({ name: `${x.region} (a lost disk)`, lines: [x.line] })),
  ];
  for (const n of logs)
    for (const e of n.lines)
      if (
        e.kind === "divergence" &&
        e.reason !== "dead-incarnation" &&
        e.reason !== "age" &&
        !c.handEdited.has(String(e.key))
      )
        out.push(
          `${n.name}: reported ${String(e.finding)} ${String(e.key)} with ${String(e.peer)} (settled by ${String(e.reason)}), though nothing but a hand edit makes one`,
        );
  return out.slice(0, 10);
}

/**
 * A region answers "first" for a key once: two first answers of one region (from one node
 * or two) naming different versions are a decision taken twice, a split brain. A first
 * answer stops binding only once it was given up (every copy lost) before the next one was
 * given: the key may then be decided again.
 */
function decidedTwice(c: SimCluster, decided: readonly LedgerEntry[]): string[] {
  const binding = new Map<string, LedgerEntry>();
  const out: string[] = [];
  for (const e of [...decided].sort((a, b) => a.atMs - b.atMs)) {
    const region = c.regionOf(e.node);
    const k = `${region}|${e.key}`;
    const before = binding.get(k);
    const released = before?.lostAtMs !== undefined && before.lostAtMs <= e.atMs;
    if (!before || released) binding.set(k, e);
    else if (id(before) !== id(e))
      out.push(
        `${region} decided ${e.key} twice: ${id(before)} (answered by ${before.node}) and ${id(e)} (answered by ${e.node})`,
      );
  }
  return out;
}

async function policyLeaks(c: SimCluster, n: SimNode): Promise<string[]> {
  // Every row, edited ones too (the store's export leaves those out): a second connection.
  return (await c.o.stores.rows(siteOf(n)))
    .filter((v) => !targets(c, n.regionName, v.tenant, v.origin))
    .map((v) => `${n.name} holds ${id(v)} of tenant ${v.tenant}: its policy excludes it`);
}

interface LsnRange {
  origin: string;
  incarnation: string;
  from: number;
  to: number;
}

/** The LSN ranges a region's audit log says it moved a watermark over without the records. */
function skippedBy(c: SimCluster, region: string): LsnRange[] {
  return regionAudit(c, region)
    .filter((e) => e.kind === "gap-skipped")
    .map((e) => ({
      origin: String(e.origin),
      incarnation: String(e.incarnation),
      from: Number(e.from),
      to: Number(e.to),
    }));
}

/** The own LSN ranges an origin's audit log declares held by nobody (backfill holes, replay). */
function declaredLost(c: SimCluster, origin: string): LsnRange[] {
  const out: LsnRange[] = [];
  for (const e of regionAudit(c, origin)) {
    if (e.kind !== "records-lost") continue;
    const incarnation = String(e.incarnation);
    if (Array.isArray(e.ranges))
      for (const [from, to] of e.ranges as Array<[number, number]>)
        out.push({ origin, incarnation, from, to });
    else out.push({ origin, incarnation, from: Number(e.from), to: Number(e.to) });
  }
  return out;
}

const covers = (ranges: readonly LsnRange[], origin: string, incarnation: string, lsn: number) =>
  ranges.some((r) => r.origin === origin && r.incarnation === incarnation && r.from <= lsn && lsn <= r.to);

/**
 * No record may be skipped without an audit entry: an acknowledged record given up (no copy
 * was left) that a region's watermark has passed must be named by that region's audit log
 * (a `gap-skipped` entry; at the origin, its `records-lost`), or, for a region that copied
 * the watermark in a bootstrap, by the log of some region that skipped it.
 */
async function unauditedSkips(c: SimCluster): Promise<string[]> {
  const out: string[] = [];
  const everywhere = [...new Set([...c.nodes.values()].map((n) => n.regionName))].flatMap((r) =>
    skippedBy(c, r),
  );
  const checked = new Set<string>();
  for (const n of c.up()) {
    if (checked.has(n.regionName)) continue;
    checked.add(n.regionName);
    const store = n.region!.store;
    const own = skippedBy(c, n.regionName);
    for (const e of c.ledger) {
      // Owed by the policy the run started with: what was lost before a widening was never owed.
      const owed = (policy: SimCluster["o"]["tenants"]) =>
        targets(c, n.regionName, e.tenant, e.origin, policy);
      if (!e.lost || e.duplicate || !owed(c.o.tenants) || !owed(c.firstTenants)) continue;
      if ((await store.watermark(e.origin, e.incarnation)) < e.lsn) continue;
      // One may turn up after all (an operator's salvage): held, it was not skipped.
      if ((await simReadable(store).streamVersions(e.origin, e.incarnation, e.lsn, e.lsn, 1)).length > 0)
        continue;
      const lost = e.origin === n.regionName ? declaredLost(c, e.origin) : [];
      if (covers(own, e.origin, e.incarnation, e.lsn) || covers(lost, e.origin, e.incarnation, e.lsn))
        continue;
      const elsewhere = covers(everywhere, e.origin, e.incarnation, e.lsn)
        ? " (only another region's log does)"
        : "";
      out.push(
        `${n.name}: its watermark passed given-up ${id(e)} without an audit entry naming it${elsewhere}`,
      );
    }
  }
  return out.slice(0, 10);
}

/**
 * A skip needs the operator's command or the origin's own declaration that nobody holds the
 * records: every `gap-skipped` entry must be covered by a `gap-skip-allowed` entry of its
 * origin for that region, or by the origin's `records-lost`.
 */
function unallowedSkips(c: SimCluster): string[] {
  const out: string[] = [];
  const regions = [...new Set([...c.nodes.values()].map((n) => n.regionName))];
  for (const region of regions)
    for (const s of skippedBy(c, region)) {
      const allowed = regionAudit(c, s.origin).some(
        (e) =>
          e.kind === "gap-skip-allowed" &&
          e.peer === region &&
          e.incarnation === s.incarnation &&
          Number(e.throughLsn) >= s.to,
      );
      const lost = declaredLost(c, s.origin);
      let declared = true;
      for (let l = s.from; l <= s.to && declared; l++) declared = covers(lost, s.origin, s.incarnation, l);
      if (!allowed && !declared)
        out.push(
          `${region} skipped ${s.origin}/${s.incarnation.slice(0, 8)} ${s.from}..${s.to} without the operator's allowance or its origin's records-lost entry`,
        );
    }
  return out.slice(0, 10);
}
