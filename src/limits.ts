/**
 * Every bound crr keeps, in one place, checked against each other at load.
 * Pure: no I/O. Names carry their unit last (TigerBeetle style).
 */

/** A record's key, in UTF-8 bytes (DESIGN.md: at most 256). */
export const keyBytesMax = 256;
/** A tenant id, in UTF-8 bytes. */
export const tenantBytesMax = 128;
/** An outcome ("accepted", "escalated", ...), in UTF-8 bytes. */
export const outcomeBytesMax = 64;
/** A record's optional JSON body, serialised, in UTF-8 bytes. */
export const bodyBytesMax = 64 * 1024;
/** A region name, in UTF-8 bytes (stored in every segment header). */
export const regionBytesMax = 64;

/** Frame header: crc32 (4) + payload length (4). */
export const frameHeaderBytes = 8;
/** Fixed part of a record payload before the variable fields. */
export const recordFixedBytes = 28;
/** The largest payload a frame may declare; anything above is corruption, not a record. */
export const recordPayloadBytesMax =
  recordFixedBytes + keyBytesMax + tenantBytesMax + outcomeBytesMax + bodyBytesMax;
/** The largest frame on disk. */
export const frameBytesMax = frameHeaderBytes + recordPayloadBytesMax;

/**
 * The most bytes a WAL writer ever has written but not yet fdatasync'ed. One write
 * is in flight at a time and never exceeds this, so after a crash only the last
 * `walUnsyncedBytesMax` bytes of the last segment can be torn: an invalid frame
 * earlier than that is corruption of acknowledged data. Part of the on-disk format
 * (docs/FORMAT.md): changing it changes what recovery accepts.
 */
export const walUnsyncedBytesMax = 4 * 1024 * 1024;
/**
 * The most acknowledged LSNs recovery restores from the store and the peers before a node
 * starts. A larger claim (a peer saying it holds far more of this incarnation than the WAL)
 * is refused, naming it, rather than held in memory.
 */
export const recoveryRestoreLsnsMax = 1_000_000;
/** Records in one appendBatch call. */
export const appendBatchRecordsMax = 10_000;
/** Bytes queued for the WAL writer before appends are refused as busy. */
export const walQueueBytesMaxDefault = 64 * 1024 * 1024;

/** Segment rotation defaults. */
export const segmentBytesMaxDefault = 64 * 1024 * 1024;
export const segmentAgeMsMaxDefault = 10 * 60 * 1000;
export const segmentBytesMin = 4096;

/** Hybrid logical clock: remote timestamps further ahead of our wall clock are refused. */
export const hlcMaxSkewMsDefault = 60_000;
/** The logical counter is 16 bits on disk. */
export const hlcLogicalMax = 0xffff;
/** Physical milliseconds are 48 bits on disk (good until year 10889). */
export const hlcWallMsMax = 2 ** 48 - 1;

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`crr limits are inconsistent: ${what}`);
}

check(frameBytesMax <= walUnsyncedBytesMax, "one frame must fit in one unsynced write");
check(
  appendBatchRecordsMax * (frameHeaderBytes + recordFixedBytes) <= walUnsyncedBytesMax,
  "a batch of minimal records must fit in one write",
);
check(segmentBytesMin >= 128 + frameBytesMax / 1024, "segments must hold more than a header");
check(segmentBytesMaxDefault >= walUnsyncedBytesMax, "default segments hold at least one full write");
check(recordPayloadBytesMax < 2 ** 32, "payload length fits the u32 frame field");
