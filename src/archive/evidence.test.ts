/**
 * The archive as recovery's evidence, with a real WAL and archiver: a WAL that lost LSNs it
 * had archived (a clean cut, as a restored snapshot of the data directory leaves it) gets
 * them back from the archive instead of issuing them again, even without the archiver's
 * cursor; an object not sealed by the region is no evidence.
 */
import fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { frameBounds } from "../../test/support/segments.js";
import { testKeys } from "../../test/support/seal.js";
import { tempDir } from "../../test/support/tmp.js";
import { silentLogger } from "../log.js";
import { realRuntime } from "../runtime/index.js";
import type { Seal } from "../protocol/index.js";
import { Wal, decodeFrames } from "../wal/index.js";
import { Archiver } from "./archiver.js";
import { ArchiveEvidence } from "./evidence.js";
import { segmentObjectKey } from "./keys.js";
import type { ArchiveStore, StoredObject } from "./s3-store.js";

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

/** The WAL's records from `fromLsn` (one segment's worth). */
async function recordsFrom(wal: Wal, fromLsn: number) {
  const chunk = (await wal.read(fromLsn, { bytesMax: 1 << 20, recordsMax: 1000 }))!;
  return decodeFrames(chunk.frames, { source: chunk.segment, firstLsn: chunk.firstLsn });
}

function bucket() {
  const objects = new Map<string, StoredObject>();
  const store: ArchiveStore = {
    put: async (key: string, body: Buffer, seal: Seal) =>
      void objects.set(key, { body: Buffer.from(body), seal }),
    get: async (key: string) => {
      const o = objects.get(key)!;
      return { body: Buffer.from(o.body), seal: { ...o.seal } };
    },
    list: async (prefix, after, max) =>
      [...objects.keys()]
        .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
        .sort()
        .slice(0, max),
    folders: async () => [],
    close: () => undefined,
  };
  return { objects, store };
}

describe("the archive as recovery's evidence", () => {
  it("a WAL that lost archived LSNs gets them back from the archive, not issued again", async () => {
    const dir = tempDir();
    const dataDir = tempDir();
    const b = bucket();
    let wal = await Wal.open({ dir, region: "us-east-1", segmentBytesMax: 1 << 20 });
    for (let i = 0; i < 12; i++) await wal.append({ key: `k${i}`, tenant: "t", outcome: "accepted" });
    const archiver = new Archiver({
      wal,
      region: "us-east-1",
      store: b.store,
      ...testKeys("us-east-1"),
      prefix: "crr",
      where: "memory",
      intervalMs: 60_000,
      dataDir,
      runtime: realRuntime,
      log: silentLogger(),
    });
    await archiver.pass();
    expect(archiver.verifiedLsn).toBe(12);
    const originals = await recordsFrom(wal, 9);
    const { incarnation } = wal;
    const file = wal.activeDurable().path;
    await wal.close();
    fs.truncateSync(file, frameBounds(fs.readFileSync(file)).ends[7]!); // LSNs 9..12 gone, cleanly
    fs.rmSync(`${dataDir}/archive.json`); // and the cursor with them: the listing must tell
    const evidence = new ArchiveEvidence({
      store: b.store,
      prefix: "crr",
      region: "us-east-1",
      ...testKeys("us-east-1"),
      cursorFile: `${dataDir}/archive.json`,
    });
    wal = await Wal.open({
      dir,
      region: "us-east-1",
      segmentBytesMax: 1 << 20,
      evidence: {
        acknowledgedLsn: (inc) => evidence.highestLsn(inc),
        records: (inc, from, to) => evidence.records(inc, from, to),
      },
    });
    opened.push(wal);
    expect(wal.incarnation).toBe(incarnation);
    expect(wal.durableLsn).toBe(12);
    expect(await recordsFrom(wal, 9)).toEqual(originals);
    const next = await wal.append({ key: "after", tenant: "t", outcome: "accepted" });
    expect(next.lsn).toBe(13);
  });

  it("an object not sealed by the region is no evidence of its LSNs", async () => {
    const b = bucket();
    const inc = "a".repeat(32);
    b.objects.set(
      segmentObjectKey("crr", { origin: "us-east-1", incarnation: inc, firstLsn: 1, lastLsn: 500 }),
      {
        body: Buffer.from("forged"),
        seal: {},
      },
    );
    const evidence = new ArchiveEvidence({
      store: b.store,
      prefix: "crr",
      region: "us-east-1",
      ...testKeys("us-east-1"),
      cursorFile: `${tempDir()}/archive.json`,
    });
    expect(await evidence.highestLsn(inc)).toBe(0);
  });
});
