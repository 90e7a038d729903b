/**
 * `crr rebuild` moves a SQLite store aside: what it held that the audit log did not (conflicts
 * past the log's mark, audit notes written with their change) is written to the log first,
 * checked against the log's lines and its hash chain.
 */
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { verifyAuditFiles } from "../audit/index.js";
import { runRebuild } from "../cli/rebuild.js";
import { parseConfig } from "../config/index.js";
import { silentLogger } from "../log.js";
import { auditLinesOf } from "../sim/cluster.js";
import { SqliteStore } from "../store/index.js";
import type { WalRecord } from "../wal/index.js";
import { tempDir } from "../../test/support/tmp.js";
import { auditStoreLeftovers } from "./audit-leftovers.js";

const incarnation = "22".repeat(16);
const rule = { kind: "first-write-wins" } as const;

function configOf(dataDir: string) {
  const raw = {
    region: "us-east-1",
    dataDir,
    listen: { host: "127.0.0.1", port: 0 },
    regions: Object.fromEntries(
      ["us-east-1", "us-west-2", "eu-west-1"].map((r) => [r, { url: "http://127.0.0.1:1" }]),
    ),
    crr: {
      enabled: true,
      replicationMode: "multi-way",
      peers: ["us-west-2", "eu-west-1"],
      conflictRule: rule.kind,
    },
    auth: { peerSecret: "audit-leftovers-test-secret-0123456789" },
  };
  return { raw, config: parseConfig(raw, "test", process.cwd(), {}) };
}

const record = (key: string, lsn: number, wallMs: number): WalRecord => ({
  key,
  tenant: "t",
  outcome: "accepted",
  bodyJson: `{"lsn":${lsn}}`,
  lsn,
  hlc: { wallMs, logical: 0 },
  flags: 0,
});

/** A store that owes the log two conflicts and a repair's note (the node stopped before its pump wrote them). */
async function storeOwing(dataDir: string): Promise<void> {
  const s = new SqliteStore({ path: path.join(dataDir, "store.sqlite"), rule, checkpointer: false });
  const batch = (origin: string, wallMs: number) => ({
    origin,
    incarnation,
    firstLsn: 1,
    lastLsn: 2,
    records: [record("a", 1, wallMs), record("b", 2, wallMs)],
  });
  await s.applyBatch(batch("us-west-2", 1_000));
  await s.applyBatch(batch("eu-west-1", 2_000));
  const c = { ...record("c", 3, 3_000), origin: "us-west-2", incarnation };
  await s.repair([c], { requestedBy: "operator" });
  await s.close();
}

const kinds = (dataDir: string) => auditLinesOf(dataDir).map((l) => l.kind);

afterEach(() => vi.restoreAllMocks());

describe("auditStoreLeftovers", () => {
  it("writes the conflicts past the log's mark and the store's notes, once, in a log that verifies", async () => {
    const dir = tempDir("crr-leftovers-");
    await storeOwing(dir);
    const { config } = configOf(dir);
    expect(await auditStoreLeftovers(config, silentLogger())).toEqual({ conflicts: 2, notes: 1 });
    const lines = auditLinesOf(dir);
    expect(lines.map((e) => [e.kind, e.key])).toEqual([
      ["conflict", "a"],
      ["conflict", "b"],
      ["repair", "c"],
    ]);
    expect(lines[0]!.conflictMark).toBe(1);
    expect(lines[1]!.conflictMark).toBe(2);
    // Again: the conflicts are at the log's mark, the note was forgotten by the store.
    expect(await auditStoreLeftovers(config, silentLogger())).toEqual({ conflicts: 0, notes: 0 });
    expect(kinds(dir)).toHaveLength(3);
    const report = verifyAuditFiles([path.join(dir, "audit", "audit-000001.log")]);
    expect(report).toMatchObject({ entries: 3, problem: undefined });
  });

  it("a data directory without a store owes nothing; a store that cannot be read is said, the log untouched", async () => {
    const dir = tempDir("crr-leftovers-");
    const { config } = configOf(dir);
    expect(await auditStoreLeftovers(config, silentLogger())).toEqual({ conflicts: 0, notes: 0 });
    fs.writeFileSync(path.join(dir, "store.sqlite"), Buffer.alloc(8192, 0x5a));
    const r = await auditStoreLeftovers(config, silentLogger());
    expect(r).toMatchObject({ conflicts: 0, notes: 0, unreadable: expect.stringContaining("store.sqlite") });
    expect(kinds(dir)).toEqual([]);
  });

  it("a log that cannot be written refuses, and the store keeps its note", async () => {
    const dir = tempDir("crr-leftovers-");
    await storeOwing(dir);
    fs.writeFileSync(path.join(dir, "audit"), "not a directory");
    const { config } = configOf(dir);
    await expect(auditStoreLeftovers(config, silentLogger())).rejects.toThrow(/audit/);
    const s = new SqliteStore({ path: path.join(dir, "store.sqlite"), rule, checkpointer: false });
    expect(await s.auditNotes(10)).toHaveLength(1);
    await s.close();
  });

  it("every note of a store that refuses to forget them is written, past the first page (found by review)", async () => {
    const dir = tempDir("crr-leftovers-");
    const s = new SqliteStore({ path: path.join(dir, "store.sqlite"), rule, checkpointer: false });
    const versions = Array.from({ length: 1_200 }, (_, i) => ({
      ...record(`k${i}`, i + 1, 1_000 + i),
      origin: "us-west-2",
      incarnation,
    }));
    await s.repair(versions, { requestedBy: "operator" });
    await s.close();
    const db = new Database(path.join(dir, "store.sqlite"));
    db.exec(
      "CREATE TRIGGER refuse_forget BEFORE DELETE ON audit_notes BEGIN SELECT RAISE(ABORT, 'read-only'); END",
    );
    db.close();
    expect(await auditStoreLeftovers(configOf(dir).config, silentLogger())).toEqual({
      conflicts: 0,
      notes: 1_200,
    });
    expect(auditLinesOf(dir).map((l) => l.key)).toEqual(versions.map((v) => v.key));
  });

  it("a store another process holds refuses, nothing written", async () => {
    const dir = tempDir("crr-leftovers-");
    await storeOwing(dir);
    const holder = new Database(path.join(dir, "store.sqlite"));
    holder.exec("BEGIN EXCLUSIVE");
    try {
      await expect(auditStoreLeftovers(configOf(dir).config, silentLogger())).rejects.toThrow(
        /in use by another process.*stop it and run crr rebuild again/,
      );
    } finally {
      holder.exec("ROLLBACK");
      holder.close();
    }
    expect(kinds(dir)).toEqual([]);
  });

  it("crr rebuild writes them before it moves the store aside, and says so", async () => {
    const dir = tempDir("crr-leftovers-");
    await storeOwing(dir);
    const { raw } = configOf(dir);
    const configFile = path.join(dir, "..", `${path.basename(dir)}.json`);
    fs.writeFileSync(configFile, JSON.stringify(raw));
    const said: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((s) => {
      said.push(String(s));
      return true;
    });
    expect(await runRebuild(["--config", configFile])).toBe(0);
    expect(said.join("")).toContain(
      "wrote to the audit log what the old store had not: 2 conflicts, 1 audit notes",
    );
    expect(kinds(dir).slice(0, 3)).toEqual(["conflict", "conflict", "repair"]);
    expect(
      fs.readdirSync(dir).filter((f) => f.startsWith("store.sqlite.before-rebuild-")).length,
    ).toBeGreaterThan(0);
  });
});
