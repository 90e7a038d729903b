/** Reconcile's decision from evidence (pure): a copy nobody can vouch for is never spread. */
import { describe, expect, it } from "vitest";
import type { StoredRecord } from "../store/index.js";
import type { Finding } from "./classify.js";
import { decide, establish, type Established } from "./reconcile.js";

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
});
