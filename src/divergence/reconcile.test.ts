/** Reconcile's decision from evidence (pure): a copy nobody can vouch for is never spread. */
import { describe, expect, it } from "vitest";
import type { StoredRecord } from "../store/index.js";
import type { Finding } from "./classify.js";
import {
  decide,
  establish,
  reconcileFindings,
  sameContent,
  sameIdentity,
  type Established,
} from "./reconcile.js";

const rule = { kind: "first-write-wins" } as const;
const version = (origin: string, lsn: number, outcome: string, wallMs = 1000): StoredRecord => ({
  key: "k",
  tenant: "t",
  outcome,
  bodyJson: undefined,
  origin,
  incarnation: "a".repeat(32),
  lsn,
  hlc: { wallMs, logical: 0 },
});
const finding = (local: StoredRecord | undefined, remote: StoredRecord | undefined): Finding => ({
  kind: local && remote ? "divergent" : "missing",
  key: "k",
  local: "us-west-2",
  remote: "us-east-1",
  localVersion: local,
  remoteVersion: remote,
  watermarks: { local: {}, remote: {} },
  reason: "watermark",
});

describe("reconcile decides from evidence", () => {
  it("a copy taken as evidence is a plain record: its holder's `intact` flag is not sent on", async () => {
    // The origin's WAL cannot be asked (or does not hold it): the copy's own word decides.
    const copy = { ...version("us-east-1", 7, "approve"), intact: true };
    const unreachable = () => Promise.reject(new Error("unreachable"));
    const e = await establish(copy, unreachable);
    expect(e).toEqual({ version: version("us-east-1", 7, "approve"), evidence: "intact-copy" });
    expect("intact" in e.version).toBe(false);
    const damaged = await establish({ ...copy, intact: false }, () => Promise.resolve([]));
    expect(damaged.evidence).toBe("none");
    expect("intact" in damaged.version).toBe(false);
  });

  it("a hand-edited copy is replaced by the intact one with its identity, wherever reconcile runs", () => {
    const tampered = version("us-east-1", 4, "tampered");
    const intact = version("us-east-1", 4, "accepted");
    const d = decide(
      finding(tampered, intact),
      [
        { version: tampered, evidence: "none" },
        { version: intact, evidence: "intact-copy" },
      ],
      rule,
    );
    expect(d).toMatchObject({
      kind: "write",
      targets: ["us-west-2"],
      winner: { version: { outcome: "accepted" } },
    });
  });

  it("no evidence for a version: undecided, nothing written", () => {
    const x = version("us-east-1", 4, "edited-a");
    const y = version("us-east-1", 4, "edited-b");
    const none: Established[] = [
      { version: x, evidence: "none" },
      { version: y, evidence: "none" },
    ];
    expect(decide(finding(x, y), none, rule)).toMatchObject({ kind: "undecided" });
    // One version vouched for, another (another identity) not: it could be the true winner.
    const other = version("eu-west-1", 9, "mystery", 500);
    const mixed = decide(
      finding(other, x),
      [
        { version: other, evidence: "none" },
        { version: x, evidence: "origin-wal" },
      ],
      rule,
    );
    expect(mixed).toMatchObject({ kind: "undecided" });
  });

  it("among versions with evidence the merge rule picks, and only differing copies are written", () => {
    const early = version("eu-west-1", 2, "rejected", 900);
    const late = version("us-east-1", 4, "accepted", 1000);
    const d = decide(
      finding(early, late),
      [
        { version: early, evidence: "origin-wal" },
        { version: late, evidence: "intact-copy" },
      ],
      rule,
    );
    expect(d).toMatchObject({
      kind: "write",
      targets: ["us-east-1"],
      winner: { version: { origin: "eu-west-1" } },
    });
  });

  it("two different contents with evidence for one identity: undecided", () => {
    const a = version("us-east-1", 4, "accepted");
    const b = version("us-east-1", 4, "rejected");
    const d = decide(
      finding(a, b),
      [
        { version: a, evidence: "origin-wal" },
        { version: b, evidence: "intact-copy" },
      ],
      rule,
    );
    expect(d).toMatchObject({ kind: "undecided" });
  });

  // Found by Stryker (divergence-pure, 2026-12-04): the lines below could be changed with
  // every test green.
  it("one identity is origin, incarnation and LSN; one content is that and every field", () => {
    const a = version("us-east-1", 4, "accepted");
    expect(sameIdentity(a, { ...a })).toBe(true);
    expect(sameContent(a, { ...a })).toBe(true);
    const identity: Array<[string, Partial<StoredRecord>]> = [
      ["origin", { origin: "eu-west-1" }],
      ["incarnation", { incarnation: "b".repeat(32) }],
      ["lsn", { lsn: 5 }],
    ];
    for (const [field, change] of identity) {
      expect(sameIdentity(a, { ...a, ...change }), field).toBe(false);
      expect(sameContent(a, { ...a, ...change }), field).toBe(false);
    }
    const content: Array<[string, Partial<StoredRecord>]> = [
      ["key", { key: "k2" }],
      ["outcome", { outcome: "rejected" }],
      ["tenant", { tenant: "t2" }],
      ["body", { bodyJson: '{"n":1}' }],
      ["wall clock", { hlc: { wallMs: 1001, logical: 0 } }],
      ["logical clock", { hlc: { wallMs: 1000, logical: 1 } }],
    ];
    for (const [field, change] of content) {
      expect(sameIdentity(a, { ...a, ...change }), field).toBe(true);
      expect(sameContent(a, { ...a, ...change }), field).toBe(false);
    }
  });

  it("the merge rule picks whichever order the versions come in; copies equal to the winner are no target", () => {
    const early = version("eu-west-1", 2, "rejected", 900);
    const late = version("us-east-1", 4, "accepted", 1000);
    const d = decide(
      finding(late, early),
      [
        { version: late, evidence: "intact-copy" },
        { version: early, evidence: "origin-wal" },
      ],
      rule,
    );
    expect(d).toMatchObject({ kind: "write", targets: ["us-west-2"], winner: { version: early } });
    // Both regions hold the winner already (say, a finding settled meanwhile): nothing to write.
    const agree = decide(
      finding(early, { ...early }),
      [
        { version: early, evidence: "origin-wal" },
        { version: { ...early }, evidence: "intact-copy" },
      ],
      rule,
    );
    expect(agree).toEqual({ kind: "agree" });
  });

  it("says why a key is undecided, naming the version without evidence", () => {
    const x = version("us-east-1", 4, "edited-a");
    const none = decide(finding(x, undefined), [{ version: x, evidence: "none" }], rule);
    expect(none).toEqual({
      kind: "undecided",
      reason:
        "no evidence for us-east-1 LSN 4 ('edited-a'): its origin's WAL no longer holds it and no intact copy remains",
    });
    const y = version("us-east-1", 4, "edited-b");
    const two = decide(
      finding(x, y),
      [
        { version: x, evidence: "origin-wal" },
        { version: y, evidence: "intact-copy" },
      ],
      rule,
    );
    expect(two).toEqual({ kind: "undecided", reason: "two contents with evidence for us-east-1 LSN 4" });
    expect(decide(finding(undefined, undefined), [], rule)).toEqual({
      kind: "undecided",
      reason: "no version has evidence",
    });
  });

  it("the origin's WAL is the evidence: its record of exactly that incarnation and LSN, over the copy", async () => {
    const copy = { ...version("us-east-1", 7, "tampered"), intact: false };
    const truth = version("us-east-1", 7, "approve");
    const wal = [
      { ...version("us-east-1", 7, "other incarnation"), incarnation: "b".repeat(32) },
      version("us-east-1", 6, "other lsn"),
      truth,
    ];
    expect(await establish(copy, async () => wal)).toEqual({ version: truth, evidence: "origin-wal" });
    // The WAL answers without it: the copy's own word decides.
    expect(await establish(copy, async () => wal.slice(0, 2))).toMatchObject({ evidence: "none" });
  });

  it("writes each winner where it differs only with apply, and counts what it wrote and left undecided", async () => {
    const early = version("eu-west-1", 2, "rejected", 900);
    const late = version("us-east-1", 4, "accepted", 1000);
    const edited = { ...version("us-east-1", 9, "edited"), intact: false };
    const findings = [finding(early, late), finding(edited, undefined), finding(early, { ...early })];
    const written: string[] = [];
    const io = {
      walOf: async (origin: string, lsn: number) => (origin === "eu-west-1" && lsn === 2 ? [early] : []),
      repair: async (target: string, v: StoredRecord) => void written.push(`${target}:${v.origin}/${v.lsn}`),
    };
    const decisions: string[] = [];
    const dry = await reconcileFindings(findings, io, {
      rule,
      apply: false,
      onDecision: (_f, d) => decisions.push(d.kind),
    });
    expect(dry).toEqual({ repaired: 0, undecided: 1 });
    expect(written).toEqual([]);
    expect(decisions).toEqual(["write", "undecided", "agree"]);
    const applied = await reconcileFindings(findings, io, { rule, apply: true });
    expect(applied).toEqual({ repaired: 1, undecided: 1 });
    expect(written).toEqual(["us-east-1:eu-west-1/2"]);
  });
});
