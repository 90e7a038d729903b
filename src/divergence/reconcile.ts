/**
 * What reconcile does with one finding, decided from evidence only. Pure.
 *
 * A version counts as true when there is evidence for its content: its origin's WAL holds it
 * (the source of truth), or a region holds a copy still equal to what it applied (its
 * content hash matches and the scrubber never flagged it). A copy without evidence (changed
 * outside the engine, and its origin's WAL no longer has it) is never spread: it is only
 * replaced when another version with evidence has its identity. When some version lacks
 * evidence and nothing else tells what it was, the key is undecided and nothing is written:
 * reconciling a hand edit from the region that holds it must not copy it onto the healthy one.
 */
import { compareVersions, type MergeRule, type StoredRecord } from "../store/pure.js";
import type { Finding } from "./classify.js";

export type Evidence = "origin-wal" | "intact-copy" | "none";

/** A candidate version as reconcile established it: the content evidence says it has, and which evidence. */
export interface Established {
  version: StoredRecord;
  evidence: Evidence;
}

export type Decision =
  | { kind: "write"; winner: Established; targets: string[] }
  | { kind: "agree" }
  | { kind: "undecided"; reason: string };

export const sameIdentity = (a: StoredRecord, b: StoredRecord) =>
  a.origin === b.origin && a.incarnation === b.incarnation && a.lsn === b.lsn;

export const sameContent = (a: StoredRecord, b: StoredRecord) =>
  sameIdentity(a, b) &&
  a.key === b.key &&
  a.outcome === b.outcome &&
  a.tenant === b.tenant &&
  a.bodyJson === b.bodyJson &&
  a.hlc.wallMs === b.hlc.wallMs &&
  a.hlc.logical === b.hlc.logical;

/**
 * Decide one finding. `established` holds, for each version the two regions hold, what the
 * evidence says it is (its stored content when that is the evidence).
 */
export function decide(f: Finding, established: readonly Established[], rule: MergeRule): Decision {
  const proven = established.filter((e) => e.evidence !== "none");
  for (const e of established) {
    if (e.evidence !== "none") continue;
    if (!proven.some((p) => sameIdentity(p.version, e.version)))
      return {
        kind: "undecided",
        reason: `no evidence for ${e.version.origin} LSN ${e.version.lsn} ('${e.version.outcome}'): its origin's WAL no longer holds it and no intact copy remains`,
      };
  }
  for (const a of proven)
    for (const b of proven)
      if (sameIdentity(a.version, b.version) && !sameContent(a.version, b.version))
        return {
          kind: "undecided",
          reason: `two contents with evidence for ${a.version.origin} LSN ${a.version.lsn}`,
        };
  if (proven.length === 0) return { kind: "undecided", reason: "no version has evidence" };
  const winner = [...proven].sort((a, b) => compareVersions(rule, a.version, b.version))[0]!;
  const differs = (v: StoredRecord | undefined) => !v || !sameContent(v, winner.version);
  const targets = [
    ...(differs(f.localVersion) ? [f.local] : []),
    ...(differs(f.remoteVersion) ? [f.remote] : []),
  ];
  return targets.length === 0 ? { kind: "agree" } : { kind: "write", winner, targets };
}

/** Where a reconcile reads its evidence and writes its decisions (the CLI: signed links; the simulator: its regions). */
export interface ReconcileIo {
  /** The records of `origin`'s own WAL at `lsn` (the truth); throws when it cannot be asked. */
  walOf(origin: string, lsn: number): Promise<StoredRecord[]>;
  /** Write `version` into `target`'s store (audited there). */
  repair(target: string, version: StoredRecord): Promise<void>;
}

/** What the evidence says `v` is: its origin's WAL first, then its holder's copy if intact. */
export async function establish(
  v: StoredRecord & { intact?: boolean },
  walOf: ReconcileIo["walOf"],
): Promise<Established> {
  try {
    const fromWal = (await walOf(v.origin, v.lsn)).find(
      (x) => x.incarnation === v.incarnation && x.lsn === v.lsn,
    );
    if (fromWal) return { version: fromWal, evidence: "origin-wal" };
  } catch {
    // The origin is unreachable or its WAL unreadable: the copy's own evidence decides.
  }
  // The copy as a record: `intact` is what its holder said of it, not part of the version
  // that is written (the repair route takes it, but a version is a record).
  const { intact, ...version } = v;
  return { version, evidence: intact === false ? "none" : "intact-copy" };
}

/**
 * Decide each finding from evidence, tell `onDecision` (before anything is written), and with
 * `apply` write each winner where a region differs. Returns the copies written and the keys
 * left undecided.
 */
export async function reconcileFindings(
  findings: readonly Finding[],
  io: ReconcileIo,
  o: { rule: MergeRule; apply: boolean; onDecision?: (f: Finding, d: Decision) => void },
): Promise<{ repaired: number; undecided: number }> {
  let repaired = 0;
  let undecided = 0;
  for (const f of findings) {
    const held = [f.localVersion, f.remoteVersion].filter((v): v is StoredRecord => v !== undefined);
    const d = decide(f, await Promise.all(held.map((v) => establish(v, io.walOf))), o.rule);
    o.onDecision?.(f, d);
    if (d.kind === "undecided") undecided++;
    if (d.kind !== "write" || !o.apply) continue;
    for (const target of d.targets) {
      await io.repair(target, d.winner.version);
      repaired++;
    }
  }
  return { repaired, undecided };
}
