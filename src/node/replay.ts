/**
 * At open, the store catches up with this region's own stream: what it lacks below the
 * WAL's oldest segment comes from the peers (what nobody holds is audited as lost, before
 * the watermark moves past it), the rest from the WAL. When a peer that may hold what the
 * store lacks does not answer, the catch-up waits for it while the node serves its peers
 * (`replayLocalWhenAnswered`), instead of refusing at once.
 */
import { sleep } from "../runtime/index.js";
import type { Wal } from "../wal/index.js";
import type { Evidence } from "./evidence.js";
import { applyWalRange } from "./local-applier.js";
import { StartupRefusedError } from "./startup.js";
import type { Region } from "./region.js";

/** The store lacks own records below the WAL that no peer that answered holds, and some peers did not answer. */
export class OwnRecordsUndecidedError extends StartupRefusedError {
  constructor(
    message: string,
    readonly unanswered: readonly string[],
  ) {
    super(message);
  }
}

/**
 * replayLocal, asked again every `retryMs` until `untilMs` while peers that may hold own
 * records the store lost do not answer. The node serves its peers meanwhile: a peer in the
 * same state needs this region's answer as much as this region needs its (found by the
 * simulator, seed 16: two regions that had lost their stores each refused to start while the
 * other did not answer, and neither answered while it refused, so neither ever started).
 */
export async function replayLocalWhenAnswered(
  r: Region,
  evidence: Evidence,
  o: { untilMs: number; retryMs: number; onWait: (detail: string) => void },
): Promise<void> {
  for (;;) {
    evidence.refresh(); // open asked them already: ask again now that this node serves its peers
    try {
      await replayLocal(r, evidence);
      await r.auditPump.pump();
      return;
    } catch (err) {
      if (!(err instanceof OwnRecordsUndecidedError) || r.runtime.nowMs() >= o.untilMs) throw err;
      const leftS = Math.ceil((o.untilMs - r.runtime.nowMs()) / 1000);
      o.onWait(
        `own records the store lost may be held by ${err.unanswered.join(", ")}: waiting for an answer (${leftS} s left)`,
      );
      await sleep(r.runtime, Math.min(o.retryMs, Math.max(1, o.untilMs - r.runtime.nowMs())));
    }
  }
}

/** Apply to the store what it lacks of this incarnation: from peers below the WAL, then from the WAL. */
export async function replayLocal(r: Region, evidence: Evidence): Promise<void> {
  const wal: Wal = r.wal;
  const incarnation = wal.incarnation;
  const from = (await r.store.watermark(r.name, incarnation)) + 1;
  if (from < wal.firstLsn) await refillBelowWal(r, evidence, incarnation, from, wal.firstLsn - 1);
  const next = Math.max(from, wal.firstLsn);
  if (next > wal.durableLsn) return;
  await applyWalRange(wal, r.store, r.name, next, wal.durableLsn, (result) => r.countApplied(r.name, result));
  r.log.info({ from: next, to: wal.durableLsn }, "replayed local WAL records into the store");
}

/** Own records below the WAL's oldest segment that the store lost: from the peers; what nobody holds is audited as lost. */
async function refillBelowWal(
  r: Region,
  evidence: Evidence,
  incarnation: string,
  from: number,
  to: number,
): Promise<void> {
  const records = await evidence.records(incarnation, from, to);
  const lost = to - from + 1 - records.length;
  // Lost means nobody holds them: a peer that did not answer may (found by the simulator,
  // seed 62: a region whose clock had jumped was refused by every peer, declared all its
  // own acknowledged records lost, and a peer that needed them never got them).
  if (lost > 0 && evidence.unanswered.length > 0)
    throw new OwnRecordsUndecidedError(
      `region ${r.name}: its store lacks ${lost} of its own records ${from}..${to} (below the WAL's first LSN) and ${evidence.unanswered.join(", ")} did not answer, which may hold them; nothing was changed. Start again when they are reachable (a peer gone for good: remove it from crr.peers first).`,
      [...evidence.unanswered],
    );
  if (lost > 0) {
    const held = new Set(records.map((x) => x.lsn));
    const missing: number[] = [];
    for (let l = from; l <= to && missing.length < 1000; l++) if (!held.has(l)) missing.push(l);
    r.log.error(
      { from, to, lost, missing: missing.slice(0, 20) },
      "own records held by nobody (the store and the WAL lost them, no peer has them)",
    );
    // Audited before the watermark moves past them: a crash in between cannot lose the entry.
    await r.auditPump.record({ kind: "records-lost", origin: r.name, incarnation, from, to, lost, missing });
  } else {
    r.log.warn({ from, to }, "own records the store lacked below the WAL were copied back from peers");
  }
  await r.store.applyLocal({ origin: r.name, incarnation, firstLsn: from, lastLsn: to, records });
}
