/**
 * Admission control of the append path, on its own: appends whose WAL write is held open
 * stand for a stalled disk; the clock is the test's. Beyond append.pendingMax, or while the
 * oldest append has waited beyond append.queueDelayMaxMs, new appends are refused at once
 * (OverloadedError, counted by reason) and write nothing; the bound lifts as soon as the
 * queue drains.
 */
import { describe, expect, it } from "vitest";
import { realRuntime, type Runtime } from "../runtime/index.js";
import type { StoredRecord } from "../store/index.js";
import type { AppendAck, PreparedRecord } from "../wal/index.js";
import { RecordInvalidError, WalBusyError, WalClosedError, WalWriteError } from "../errors.js";
import { AppendPath, OverloadedError, type AppendPathDeps, type ShedReason } from "./append-path.js";

function pathWithHeldWal(o: {
  pendingMax: number;
  queueDelayMaxMs: number;
  lookup?: (key: string) => Promise<StoredRecord | undefined>;
  claims?: AppendPathDeps["claims"];
  onClaimStuck?: AppendPathDeps["onClaimStuck"];
  walAppend?: AppendPathDeps["walAppend"];
  localApply?: AppendPathDeps["localApply"];
}) {
  let nowMs = 1_000;
  const runtime: Runtime = { ...realRuntime, monoMs: () => nowMs };
  const held: Array<() => void> = [];
  const written: string[] = [];
  const shed: Array<[number, ShedReason]> = [];
  let lsn = 0;
  const path = new AppendPath({
    region: "us-east-1",
    policy: { peersFor: () => [] } as never,
    admit: () => undefined,
    lookup: o.lookup ?? (async () => undefined),
    claims: o.claims,
    onClaimStuck: o.onClaimStuck,
    walAppend:
      o.walAppend ??
      ((rec: PreparedRecord) =>
        new Promise<AppendAck>((resolve) => {
          written.push(rec.key);
          const ack = { lsn: ++lsn, hlc: { wallMs: nowMs, logical: 0 } } as AppendAck;
          held.push(() => resolve(ack));
        })),
    localApply: o.localApply ?? (async () => undefined),
    shippers: new Map(),
    waitTimeoutMsDefault: 1_000,
    pendingMax: o.pendingMax,
    queueDelayMaxMs: o.queueDelayMaxMs,
    batchRecordsMax: 100,
    onShed: (n, reason) => shed.push([n, reason]),
    runtime,
    onDuplicate: () => undefined,
    onError: () => undefined,
  });
  const append = (key: string) => path.append({ key, tenant: "t", outcome: "ok" });
  const release = async () => {
    await new Promise((r) => setImmediate(r)); // the appends' store lookups answer first
    for (const r of held.splice(0)) r();
    await new Promise((r) => setImmediate(r));
  };
  return { path, append, release, written, shed, advance: (ms: number) => (nowMs += ms) };
}

/**
 * Claims of this node alone: every key is taken (fresh unless already held); `held` is what
 * stays claimed. A key in `lostAnswers` has its claim committed and its answer lost (the
 * call throws after taking it), as when the connection to the database is cut.
 */
function claimsHeldHere(): {
  held: () => string[];
  lostAnswers: Set<string>;
  claims: NonNullable<AppendPathDeps["claims"]>;
} {
  /** key -> the attempt that created its claim (a re-take keeps it, as the store does). */
  const createdBy = new Map<string, string>();
  const lostAnswers = new Set<string>();
  return {
    held: () => [...createdBy.keys()],
    lostAnswers,
    claims: {
      claim: async (key, attempt) => {
        const fresh = !createdBy.has(key);
        if (fresh) createdBy.set(key, attempt);
        if (lostAnswers.has(key)) throw new Error("Connection terminated unexpectedly");
        return { taken: true, fresh };
      },
      release: async (key) => void createdBy.delete(key),
      releaseLost: async (key, attempt) => createdBy.get(key) === attempt && createdBy.delete(key),
      waitMs: 1_000,
    },
  };
}

describe("admission", () => {
  it("refuses new appends while the oldest has waited beyond queueDelayMaxMs, and admits again once it is answered", async () => {
    const t = pathWithHeldWal({ pendingMax: 1000, queueDelayMaxMs: 50 });
    const first = t.append("a");
    t.advance(50);
    const second = t.append("b"); // the oldest waited 50 ms: not beyond the bound
    t.advance(1);
    const refused = t.append("c");
    await expect(refused).rejects.toBeInstanceOf(OverloadedError);
    await expect(refused).rejects.toMatchObject({
      code: "overloaded",
      reason: "queue_delay",
      message: expect.stringContaining("waited 51 ms"),
    });
    await expect(t.append("c")).rejects.toMatchObject({ reason: "queue_delay" });
    expect(t.written).toEqual(["a", "b"]);
    expect(t.shed).toEqual([
      [1, "queue_delay"],
      [1, "queue_delay"],
    ]);
    expect(t.path.pending).toBe(2);
    await t.release();
    await expect(first).resolves.toMatchObject({ key: "a", lsn: 1 });
    await expect(second).resolves.toMatchObject({ key: "b", lsn: 2 });
    t.advance(1_000); // nothing waits now: however long ago the last append, the queue is empty
    const after = t.append("c");
    await t.release();
    await expect(after).resolves.toMatchObject({ key: "c", lsn: 3 });
  });

  it("measures the oldest append still waiting, not one already answered", async () => {
    const t = pathWithHeldWal({ pendingMax: 1000, queueDelayMaxMs: 50 });
    const old = t.append("a");
    await t.release();
    await old;
    t.advance(40);
    const young = t.append("b");
    t.advance(40); // "a" would be 80 ms old; "b", the oldest waiting, is 40
    const next = t.append("c");
    await t.release();
    await expect(Promise.all([young, next])).resolves.toHaveLength(2);
    expect(t.shed).toEqual([]);
  });

  it("with queueDelayMaxMs 0, refuses only beyond pendingMax (a lone batch always fits)", async () => {
    const t = pathWithHeldWal({ pendingMax: 2, queueDelayMaxMs: 0 });
    const held = [t.append("a"), t.append("b")];
    t.advance(60_000);
    await expect(t.append("c")).rejects.toMatchObject({
      reason: "pending",
      message: expect.stringContaining("exceed append.pendingMax (2)"),
    });
    expect(t.shed).toEqual([[1, "pending"]]);
    await t.release();
    await Promise.all(held);
    const lone = t.path.appendMany([
      { key: "x", tenant: "t", outcome: "ok" },
      { key: "y", tenant: "t", outcome: "ok" },
      { key: "z", tenant: "t", outcome: "ok" },
    ]);
    await t.release();
    expect((await lone).map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
  });
});

describe("the dedup check", () => {
  it("two appends of one key during a slow store lookup append once: the second joins the first", async () => {
    // A network store answers the lookup a few turns later; both appends must not see "absent".
    let answer: () => void = () => undefined;
    const lookup = () => new Promise<undefined>((resolve) => (answer = () => resolve(undefined)));
    const t = pathWithHeldWal({ pendingMax: 1000, queueDelayMaxMs: 0, lookup });
    const first = t.append("k");
    const second = t.append("k");
    answer();
    await new Promise((r) => setImmediate(r));
    await t.release();
    expect(t.written).toEqual(["k"]);
    await expect(first).resolves.toMatchObject({ key: "k", lsn: 1, duplicate: false });
    await expect(second).resolves.toMatchObject({ key: "k", lsn: 1, duplicate: true });
  });
});

describe("claims (several nodes of one region)", () => {
  it("an append waiting for a key another node holds is not waiting for this disk: it sheds nothing", async () => {
    // Found by review: the wait counted toward append.queueDelayMaxMs, so one key held by a
    // crashed fellow made this node refuse every append (429 queue_delay).
    let heldElsewhere = true;
    const claims: AppendPathDeps["claims"] = {
      claim: async (key) =>
        key === "held" && heldElsewhere ? { taken: false, holder: "fellow" } : { taken: true, fresh: true },
      release: async () => undefined,
      releaseLost: async () => false,
      waitMs: 60_000,
    };
    const t = pathWithHeldWal({ pendingMax: 1000, queueDelayMaxMs: 50, claims });
    const held = t.append("held");
    await new Promise((r) => setImmediate(r));
    t.advance(1_000);
    const other = t.append("other");
    await t.release();
    await expect(other).resolves.toMatchObject({ key: "other", duplicate: false });
    expect(t.shed).toEqual([]);
    heldElsewhere = false;
    await waitForWrite(t, "held");
    await t.release();
    await expect(held).resolves.toMatchObject({ key: "held", duplicate: false });
  });
});

describe("claims of appends the WAL refused", () => {
  it("end at once when nothing was written, and stay after a failed write (the restart's replay decides)", async () => {
    const { held, claims } = claimsHeldHere();
    const refusals: Record<string, Error> = {
      busy: new WalBusyError(1 << 20),
      closed: new WalClosedError("/data/wal"),
      huge: new RecordInvalidError("record", "too large for a segment"),
      broken: new WalWriteError(
        "/data/wal/00001.seg",
        "fdatasync",
        Object.assign(new Error("io"), { code: "EIO" }),
      ),
    };
    const t = pathWithHeldWal({
      pendingMax: 1000,
      queueDelayMaxMs: 0,
      claims,
      walAppend: (rec) => Promise.reject(refusals[rec.key]!),
    });
    for (const key of Object.keys(refusals)) await expect(t.append(key)).rejects.toBe(refusals[key]);
    expect(held()).toEqual(["broken"]);
  });

  it("held from an earlier append of this node (its record in the WAL, unapplied) stay when a retry is refused (found by review: another node could decide the key)", async () => {
    const { held, claims } = claimsHeldHere();
    let appends = 0;
    const t = pathWithHeldWal({
      pendingMax: 1000,
      queueDelayMaxMs: 0,
      claims,
      // The first append reaches the WAL; its apply fails (below). The retry is refused.
      walAppend: async () => {
        if (++appends === 2) throw new WalBusyError(1 << 20);
        return { lsn: 1, hlc: { wallMs: 1, logical: 0 } } as AppendAck;
      },
      localApply: async () => {
        throw new Error("the store failed after the WAL append");
      },
    });
    await expect(t.append("k")).rejects.toThrow(/store failed/);
    expect(held()).toEqual(["k"]);
    await expect(t.append("k")).rejects.toBeInstanceOf(WalBusyError);
    expect(held()).toEqual(["k"]);
  });

  it("a claim whose answer was lost ends when this attempt created it, and stays when an earlier append of this node holds it", async () => {
    const { held, lostAnswers, claims } = claimsHeldHere();
    const stuck: string[] = [];
    const ends: Array<() => Promise<boolean>> = [];
    let appends = 0;
    const t = pathWithHeldWal({
      pendingMax: 1000,
      queueDelayMaxMs: 0,
      claims,
      onClaimStuck: (key, _err, end) => {
        stuck.push(key);
        ends.push(end);
      },
      walAppend: async () => ({ lsn: ++appends, hlc: { wallMs: 1, logical: 0 } }) as AppendAck,
      // The first append of "earlier" reaches the WAL and its apply fails: its claim stays.
      localApply: async (rec) => {
        if (rec.key === "earlier") throw new Error("the store failed after the WAL append");
        return undefined;
      },
    });
    lostAnswers.add("k");
    await expect(t.append("k")).rejects.toThrow(/Connection terminated/);
    expect(appends).toBe(0);
    expect(held()).toEqual([]);
    await expect(t.append("earlier")).rejects.toThrow(/store failed/);
    lostAnswers.add("earlier");
    await expect(t.append("earlier")).rejects.toThrow(/Connection terminated/);
    expect(held()).toEqual(["earlier"]);
    // The database still unreachable: the claim cannot be ended, and that is said.
    const releaseLost = claims.releaseLost;
    claims.releaseLost = () => Promise.reject(new Error("still down"));
    lostAnswers.add("m");
    await expect(t.append("m")).rejects.toThrow(/Connection terminated/);
    expect(stuck).toEqual(["m"]);
    expect(held()).toEqual(["earlier", "m"]);
    // Once the database answers, the end it was given (tried after each heartbeat) ends it.
    claims.releaseLost = releaseLost;
    await expect(ends[0]!()).resolves.toBe(true);
    expect(held()).toEqual(["earlier"]);
  });

  it("end when the store cannot be read after the claim (nothing was written)", async () => {
    const { held, claims } = claimsHeldHere();
    let lookups = 0;
    const down = new Error("store unreachable");
    const t = pathWithHeldWal({
      pendingMax: 1000,
      queueDelayMaxMs: 0,
      claims,
      lookup: async () => (++lookups === 2 ? Promise.reject(down) : undefined),
    });
    await expect(t.append("k")).rejects.toBe(down);
    expect(t.written).toEqual([]);
    expect(held()).toEqual([]);
  });
});

async function waitForWrite(t: { written: string[] }, key: string): Promise<void> {
  while (!t.written.includes(key)) await new Promise((r) => setTimeout(r, 1));
}
