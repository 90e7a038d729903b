/**
 * The WAL's pure part: the frame codec (bytes in, records out; no file, no clock). Pure
 * modules elsewhere (the batch codec) import this, never `index.ts`, which loads the WAL's
 * file I/O; the linter enforces it.
 */
export {
  FLAG_BATCH_CONTINUES,
  checkFrame,
  decodeFrame,
  decodeFrames,
  encodeFrames,
  prepareRecord,
  readTenant,
} from "./record.js";
export type { RecordInput, WalRecord, PreparedRecord } from "./record.js";
