/**
 * The archive as recovery's evidence, with a real WAL and archiver: a WAL that lost LSNs it
 * had archived (a clean cut, as a restored snapshot of the data directory leaves it) gets
 * them back from the archive instead of issuing them again, even without the archiver's
 * cursor; an object not sealed by the region is no evidence.
 */
import fs from "node:fs";
import path from "node:path";
import { openStore } from "../../test/support/shipper-peer.js";
import type { ReplicationPolicy } from "../config/index.js";
import { afterEach, describe, expect, it } from "vitest";
import { frameBounds } from "../../test/support/segments.js";
import { testArchiver, testKeys } from "../../test/support/seal.js";
import { tempDir } from "../../test/support/tmp.js";
import { sealObject, type Seal } from "../protocol/index.js";
import { Wal, decodeFrames, encodeSegmentHeader } from "../wal/index.js";
import { ArchiveEvidence } from "./evidence.js";
import { listAll, planRestore, restoreInto } from "./restore.js";
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

/** Region us-east-1's archive as evidence, with the cursor at `cursorFile` (none by default). */
function evidenceOf(store: ArchiveStore, cursorFile = `${tempDir()}/archive.json`): ArchiveEvidence {
  return new ArchiveEvidence({
    store,
    prefix: "crr",
    region: "us-east-1",
    ...testKeys("us-east-1"),
    cursorFile,
  });
}

describe("the archive as recovery's evidence", () => {
  it("a WAL that lost archived LSNs gets them back from the archive, not issued again", async () => {
    const dir = tempDir();
    const dataDir = tempDir();
    const b = bucket();
    let wal = await Wal.open({ dir, region: "us-east-1", segmentBytesMax: 1 << 20 });
    for (let i = 0; i < 12; i++) await wal.append({ key: `k${i}`, tenant: "t", outcome: "accepted" });
    const archiver = testArchiver(wal, b.store, dataDir);
    await archiver.pass();
    expect(archiver.verifiedLsn).toBe(12);
    const originals = await recordsFrom(wal, 9);
    const { incarnation } = wal;
    const file = wal.activeDurable().path;
    await wal.close();
    fs.truncateSync(file, frameBounds(fs.readFileSync(file)).ends[7]!); // LSNs 9..12 gone, cleanly
    fs.rmSync(`${dataDir}/archive.json`); // and the cursor with them: the listing must tell
    const evidence = evidenceOf(b.store, `${dataDir}/archive.json`);
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
    const evidence = evidenceOf(b.store);
    expect(await evidence.highestLsn(inc)).toBe(0);
  });

  it("review's cases: a junk object does not hide the genuine one; an I/O error is never 'no object'; two versions of an LSN are refused", async () => {
    const dir = tempDir();
    const b = bucket();
    const wal = await Wal.open({ dir, region: "us-east-1", segmentBytesMax: 1 << 20 });
    opened.push(wal);
    for (let i = 0; i < 12; i++) await wal.append({ key: `k${i}`, tenant: "t", outcome: "accepted" });
    const arch = testArchiver(wal, b.store);
    await arch.pass();
    const inc = wal.incarnation;
    const key = (first: number, last: number) =>
      segmentObjectKey("crr", { origin: "us-east-1", incarnation: inc, firstLsn: first, lastLsn: last });
    // An unsealed object that sorts before the genuine one (first 1, longer range).
    b.objects.set(key(1, 13), { body: Buffer.from("junk"), seal: {} });
    const evidence = () => evidenceOf(b.store);
    const e = evidence();
    expect(await e.highestLsn(inc)).toBe(12);
    expect((await e.records(inc, 9, 12)).map((r) => r.lsn)).toEqual([9, 10, 11, 12]);
    expect(e.refused.join()).toContain(key(1, 13));
    // The bucket fails a GET: that is an error, not "the archive holds nothing".
    const failing = { ...b.store, get: async () => Promise.reject(new Error("socket hang up")) };
    await expect(evidenceOf(failing).highestLsn(inc)).rejects.toThrow("socket hang up");
    // Another object sealed with the region's key with other records under LSNs 9..12 (an
    // LSN issued twice): refused, naming both objects.
    b.objects.delete(key(1, 13));
    const other = await Wal.open({ dir: tempDir(), region: "us-east-1", segmentBytesMax: 1 << 20 });
    opened.push(other);
    for (let i = 0; i < 12; i++) await other.append({ key: `other${i}`, tenant: "t", outcome: "accepted" });
    const image = fs.readFileSync(other.activeDurable().path).subarray(0, other.activeDurable().bytes);
    const body = Buffer.concat([
      encodeSegmentHeader({ region: "us-east-1", firstLsn: 9, createdAtMs: 1, incarnation: inc }),
      image.subarray(frameBounds(image).starts[8]!),
    ]);
    const what = { origin: "us-east-1", incarnation: inc, firstLsn: 9, lastLsn: 12 };
    b.objects.set(key(9, 12), { body, seal: sealObject(testKeys("us-east-1").signer, { ...what, body }) });
    await expect(evidence().records(inc, 9, 12)).rejects.toThrow(
      `the archive holds two versions of LSN 9 of us-east-1/${inc} (${key(1, 12)} and ${key(9, 12)})`,
    );
    // A restore (and a bootstrap's seed) refuses the stream too, before applying any of it.
    const restore = async () => {
      const into = openStore(path.join(tempDir(), "restored.sqlite"));
      const plan = planRestore(await listAll(b.store, "crr/"), { prefix: "crr", origins: ["us-east-1"] });
      const run = restoreInto({
        store: b.store,
        plan,
        into,
        toMs: undefined,
        policy: { accepts: () => true } as unknown as ReplicationPolicy,
        self: "eu-west-1",
        keys: testKeys("us-east-1").keys,
        objectBytesMax: 1 << 24,
      });
      return { run, into };
    };
    const refused = await restore();
    await expect(refused.run).rejects.toThrow(`two versions of LSN 9 of us-east-1/${inc}`);
    expect(await refused.into.watermark("us-east-1", inc)).toBe(0);
    // The same LSNs with the same records (an origin's restart re-archives what it had): fine.
    const same = Buffer.concat([
      encodeSegmentHeader({ region: "us-east-1", firstLsn: 9, createdAtMs: 1, incarnation: inc }),
      fs
        .readFileSync(wal.activeDurable().path)
        .subarray(frameBounds(fs.readFileSync(wal.activeDurable().path)).starts[8]!),
    ]);
    b.objects.set(key(9, 12), {
      body: same,
      seal: sealObject(testKeys("us-east-1").signer, { ...what, body: same }),
    });
    const agreed = await restore();
    expect((await agreed.run).records).toBe(12);
  });
});
