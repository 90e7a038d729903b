/** The committed ok / torn / bad-checksum segments (test/fixtures/wal), through the library and the CLI. */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SegmentCorruptError } from "../../src/errors.js";
import { Wal, decodeFrames, inspectWal } from "../../src/wal/index.js";
import { repoRoot, runCrr } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

const fixture = (name: string) => path.join(repoRoot, "test/fixtures/wal", name);

function copyFixture(name: string): string {
  const dir = tempDir();
  fs.cpSync(fixture(name), dir, { recursive: true });
  return dir;
}

async function lsns(wal: Wal): Promise<number[]> {
  const c = await wal.read(1, { bytesMax: 1 << 20, recordsMax: 100 });
  const first = c ? decodeFrames(c.frames, { source: c.segment, firstLsn: 1 }) : [];
  const d = c ? await wal.read(c.lastLsn + 1, { bytesMax: 1 << 20, recordsMax: 100 }) : undefined;
  const second = d ? decodeFrames(d.frames, { source: d.segment, firstLsn: d.firstLsn }) : [];
  return [...first, ...second].map((r) => r.lsn);
}

describe("WAL fixtures", () => {
  it("ok: inspect verifies 8 records in 2 segments; open reads them all", async () => {
    const report = await inspectWal(fixture("ok"));
    expect(report.problem).toBeUndefined();
    expect(report.segments.map((s) => [s.firstLsn, s.lastLsn])).toEqual([
      [1, 5],
      [6, 8],
    ]);
    const wal = await Wal.open({ dir: copyFixture("ok"), region: "us-east-1" });
    expect(await lsns(wal)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await wal.close();
  });

  it("torn: inspect reports the torn tail; open cuts it and keeps LSN 1..7", async () => {
    const report = await inspectWal(fixture("torn"));
    expect(report.problem).toMatchObject({ kind: "torn", file: "00000000000000000006.wal", offset: 261 });
    const wal = await Wal.open({ dir: copyFixture("torn"), region: "us-east-1" });
    expect(wal.recovery.truncatedBytes).toBe(46);
    expect(await lsns(wal)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect((await wal.append({ key: "new", tenant: "t", outcome: "accepted" })).lsn).toBe(8);
    await wal.close();
  });

  it("bad-checksum: inspect and reads name the file and the offset of LSN 3", async () => {
    const report = await inspectWal(fixture("bad-checksum"));
    expect(report.problem).toMatchObject({
      kind: "corrupt",
      file: "00000000000000000001.wal",
      offset: 260,
      reason: "checksum mismatch",
    });
    const wal = await Wal.open({ dir: copyFixture("bad-checksum"), region: "us-east-1" });
    await expect(wal.read(1, { bytesMax: 1 << 20, recordsMax: 100 })).rejects.toThrow(SegmentCorruptError);
    await wal.close();
  });

  it("`crr wal inspect` prints a table and exits 0, 1 or 2", async () => {
    const ok = await runCrr(["wal", "inspect", fixture("ok")]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/00000000000000000006\.wal\s+6\s+8\s+3\s+327/);
    expect(ok.stdout).toMatch(/2 segments, 8 records, 786 bytes, region us-east-1/);
    const bad = await runCrr(["wal", "inspect", fixture("bad-checksum")]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/CORRUPT: 00000000000000000001\.wal at offset 260: checksum mismatch/);
    const torn = await runCrr(["wal", "inspect", "--json", fixture("torn")]);
    expect(torn.code).toBe(1);
    expect(JSON.parse(torn.stdout).problem.kind).toBe("torn");
    const usage = await runCrr(["wal", "inspect"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/expected one directory/);
    expect((await runCrr(["wal", "inspect", "/no/such/dir"])).stderr).toMatch(
      /no such directory: \/no\/such\/dir/,
    );
    expect((await runCrr(["wal", "inspect", "--help"])).stdout).toMatch(/crr wal inspect DIR/);
  });
});
