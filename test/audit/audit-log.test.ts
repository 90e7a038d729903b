/**
 * The WORM audit log under failure: a write that fails (a real full disk, a tmpfs mounted for
 * the test; CI runs as root) leaves the chain exactly as it was, so the next entry links to
 * the last one written; the conflict the failed entry held is written later by the pump; and
 * a log whose last entry does not link to the one before is refused on open.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AuditLog, sealEntry, verifyAuditFiles, type AuditAppend } from "../../src/audit/index.js";
import { silentLogger } from "../../src/log.js";
import { realRuntime } from "../../src/runtime/index.js";
import { AuditPump } from "../../src/node/audit-pump.js";
import type { AuditNote, AuditNoteStore, ConflictRow } from "../../src/store/index.js";
import { tempDir, waitFor } from "../support/tmp.js";

const files = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((f) => /^audit-\d{6}\.log$/.test(f))
    .sort()
    .map((f) => path.join(dir, f));

describe("the audit log", () => {
  it("a write that fails on a full disk leaves the chain intact, and is not told as written; later entries link to the last one written", async () => {
    const mnt = tempDir("crr-tmpfs-");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt]);
    try {
      const dir = path.join(mnt, "audit");
      const told: string[] = []; // the kinds written (the node's crr_audit_entries_total)
      const log = AuditLog.open({ dir, region: "us-east-1", onWritten: (kind) => told.push(kind) });
      const filler = path.join(mnt, "filler");
      fs.writeFileSync(filler, Buffer.alloc(200 * 1024));
      const written: number[] = [];
      let failed = 0;
      for (let i = 0; i < 400 && failed < 3; i++) {
        try {
          const head = await log.append({ kind: "note", i, pad: "x".repeat(400) });
          written.push(head.seq);
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
          failed++;
        }
      }
      expect(failed).toBe(3);
      const headBefore = log.current;
      expect(headBefore.seq).toBe(written.length);
      expect(verifyAuditFiles(files(dir)).problem).toBeUndefined();
      fs.rmSync(filler);
      const after = await log.append({ kind: "records-lost", i: "after" });
      expect(after.seq).toBe(headBefore.seq + 1);
      // Each entry written is told once, none that failed.
      expect(told).toEqual([...written.map(() => "note"), "records-lost"]);
      await log.close();
      const report = verifyAuditFiles(files(dir), after.hash);
      expect(report.problem).toBeUndefined();
      expect(report.entries).toBe(written.length + 1);
      const reopened = AuditLog.open({ dir, region: "us-east-1" });
      expect(reopened.current).toEqual(after);
      await reopened.close();
    } finally {
      execFileSync("umount", ["-l", mnt]);
    }
  });

  it("a listener told of written entries that throws cuts nothing written (found by review)", async () => {
    const dir = path.join(tempDir("crr-audit-"), "audit");
    const log = AuditLog.open({
      dir,
      region: "us-east-1",
      onWritten: () => {
        throw new Error("a listener's bug");
      },
    });
    await log.append({ kind: "records-lost", i: 1 });
    const second = await log.append({ kind: "records-lost", i: 2 });
    expect(second.seq).toBe(2);
    await log.close();
    const report = verifyAuditFiles(files(dir), second.hash);
    expect(report.problem).toBeUndefined();
    expect(report.entries).toBe(2);
  });

  it("refuses to open a log whose last entry does not link to the one before it", async () => {
    const dir = tempDir();
    const log = AuditLog.open({ dir, region: "us-east-1" });
    for (let i = 0; i < 3; i++) await log.append({ kind: "note", i });
    await log.close();
    const file = files(dir)[0]!;
    const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n");
    // A last line that verifies on its own but points at a made-up predecessor.
    const last = JSON.parse(lines[2]!) as Record<string, unknown>;
    delete last.hash;
    last.prev = "f".repeat(64);
    lines[2] = sealEntry(last).line;
    fs.writeFileSync(file, `${lines.join("\n")}\n`);
    expect(() => AuditLog.open({ dir, region: "us-east-1" })).toThrow(
      /the last entry \(seq 3\) does not link to the one before it/,
    );
  });

  it("the pump retries a failed write until the conflict is in the log, and says it is failing meanwhile", async () => {
    const dir = tempDir();
    const log = AuditLog.open({ dir, region: "us-east-1" });
    let failuresLeft = 3;
    const flaky = Object.create(log) as AuditLog;
    flaky.append = (e: AuditAppend) =>
      failuresLeft-- > 0
        ? Promise.reject(
            Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }),
          )
        : log.append(e);
    const version = {
      key: "k",
      tenant: "t",
      outcome: "accepted",
      bodyJson: undefined,
      origin: "us-east-1",
      incarnation: "a".repeat(32),
      lsn: 1,
      hlc: { wallMs: 1, logical: 0 },
    };
    const conflict: ConflictRow = {
      id: 7,
      key: "k",
      winner: version,
      loser: { ...version, origin: "eu-west-1" },
      rule: "first-write-wins",
      detectedAtMs: 1,
    };
    const errors: string[] = [];
    const pump = new AuditPump({
      conflicts: async ({ afterId }) => (afterId < 7 ? [conflict] : []),
      notes: { auditNotes: async () => [], forgetAuditNotes: async () => undefined },
      audit: flaky,
      log: silentLogger(),
      runtime: realRuntime,
      retryDelayMsMin: 5,
      retryDelayMsMax: 20,
      onFailure: (err) => errors.push(err.message),
    });
    await pump.pump();
    expect(pump.failing).toMatch(/ENOSPC/);
    await waitFor(() => log.current.conflictMark === 7 || undefined, "the conflict to be written");
    expect(pump.failing).toBeUndefined();
    expect(errors).toHaveLength(3);
    await pump.stop();
    await log.close();
    const text = fs.readFileSync(files(dir)[0]!, "utf8");
    expect(text.match(/"kind":"conflict"/g)).toHaveLength(1);
    expect(verifyAuditFiles(files(dir)).problem).toBeUndefined();
  });
});

/** A store's audit notes in memory; its forget refuses `refusals` times first. */
function notesOf(initial: AuditNote[], refusals = 0) {
  const state = { noted: initial, forgotten: [] as number[][], refusals };
  const notes: AuditNoteStore = {
    auditNotes: async (limit) => state.noted.slice(0, limit),
    forgetAuditNotes: async (ids) => {
      if (state.refusals-- > 0) throw new Error("cannot execute DELETE in a read-only transaction");
      state.forgotten.push([...ids]);
      state.noted = state.noted.filter((d) => !ids.includes(d.id));
    },
  };
  return { state, notes };
}

/** A pump of notes alone (no conflicts) into `audit`, retrying within milliseconds. */
const pumpOf = (audit: AuditLog, notes: AuditNoteStore) =>
  new AuditPump({
    conflicts: async () => [],
    notes,
    audit,
    log: silentLogger(),
    runtime: realRuntime,
    retryDelayMsMin: 5,
    retryDelayMsMax: 20,
    onFailure: () => undefined,
  });

/** The entries of the log's first file. */
const entriesOf = (dir: string) =>
  fs
    .readFileSync(files(dir)[0]!, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe("the pump and the store's audit notes", () => {
  it("appends each note the store wrote with its change, then has the store forget it; a failed write forgets nothing and is retried", async () => {
    const dir = tempDir();
    const log = AuditLog.open({ dir, region: "us-east-1" });
    let failuresLeft = 1;
    const flaky = Object.create(log) as AuditLog;
    flaky.append = (e: AuditAppend) =>
      failuresLeft-- > 0 ? Promise.reject(new Error("EIO: i/o error, write")) : log.append(e);
    const version = (origin: string, outcome: string) => ({
      key: "k",
      tenant: "t",
      outcome,
      bodyJson: undefined,
      origin,
      incarnation: "a".repeat(32),
      lsn: 2,
      hlc: { wallMs: 5, logical: 0 },
    });
    // What a store holds after a crash: noted with the displacement and a repair, never audited.
    const { state, notes } = notesOf([
      {
        id: 3,
        entry: {
          kind: "tampered-displaced",
          key: "k",
          displaced: version("us-east-1", "edited by hand"),
          winner: version("eu-west-1", "accepted"),
          detectedAtMs: 9,
        },
      },
      {
        id: 4,
        entry: {
          kind: "repair",
          key: "k",
          requestedBy: "ops",
          written: version("us-east-1", "x"),
          rule: "r",
        },
      },
    ]);
    const pump = pumpOf(flaky, notes);
    await pump.pump();
    expect(pump.failing).toMatch(/EIO/);
    expect(state.forgotten).toEqual([]);
    await waitFor(() => state.noted.length === 0 || undefined, "the notes to be audited");
    expect(state.forgotten).toEqual([[3, 4]]);
    await pump.stop();
    await log.close();
    expect(entriesOf(dir)).toMatchObject([
      {
        kind: "tampered-displaced",
        key: "k",
        displaced: { origin: "us-east-1", outcome: "edited by hand" },
        winner: { origin: "eu-west-1", outcome: "accepted" },
        detectedAtMs: 9,
      },
      { kind: "repair", key: "k", requestedBy: "ops", written: { outcome: "x" }, rule: "r" },
    ]);
    expect(verifyAuditFiles(files(dir)).problem).toBeUndefined();
  });
});

describe("the pump and a store that cannot forget its notes", () => {
  it("retries the forget without appending the notes again", async () => {
    const dir = tempDir();
    const log = AuditLog.open({ dir, region: "us-east-1" });
    const { state, notes } = notesOf(
      [1, 2, 3].map((id) => ({ id, entry: { kind: "repair", key: `k${id}` } })),
      3,
    );
    const pump = pumpOf(log, notes);
    await pump.pump();
    expect(pump.failing).toMatch(/read-only/);
    await waitFor(() => state.noted.length === 0 || undefined, "the notes to be forgotten");
    await pump.stop();
    await log.close();
    expect(entriesOf(dir).map((e) => e.key)).toEqual(["k1", "k2", "k3"]);
  });
});

describe("the audit line (golden)", () => {
  it("is pinned: fields in order, prev of the first entry 64 zeros, hash = SHA-256 of the line without its hash", async () => {
    const dir = tempDir();
    const log = AuditLog.open({
      dir,
      region: "us-east-1",
      runtime: { ...realRuntime, nowMs: () => 1_700_000_000_000 },
    });
    await log.append({ kind: "repair", conflictMark: 3, key: "pcs-7f3a", requestedBy: "eu-west-1" });
    await log.close();
    const [file] = fs.readdirSync(dir);
    const line = fs.readFileSync(path.join(dir, file!), "utf8").trimEnd();
    const withoutHash =
      '{"seq":1,"at":"2023-11-14T22:13:20.000Z","region":"us-east-1","kind":"repair","conflictMark":3,"key":"pcs-7f3a","requestedBy":"eu-west-1","prev":"' +
      "0".repeat(64) +
      '"}';
    const hash = createHash("sha256").update(withoutHash).digest("hex");
    expect(line).toBe(`${withoutHash.slice(0, -1)},"hash":"${hash}"}`);
    expect(hash).toBe("2b571f2e70294d81a4e5e9ee642ed4adf8a65cad0493dfbef419c5f9b33b6f5a");
  });
});
