/**
 * Typed errors for what operators must see. Programmer errors use assert() and stop the process;
 * these are operating errors: they name what was wrong and where (file, offset, field).
 */

export class CrrError extends Error {
  /** Stable machine-readable code, also used as the HTTP error `code`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A record handed to the WAL or the API broke a rule (size, type, missing field). */
export class RecordInvalidError extends CrrError {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super("record_invalid", `record field '${field}': ${reason}`);
  }
}

/** Bytes on disk do not decode: a checksum, magic, length or sequence check failed. */
export class SegmentCorruptError extends CrrError {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super("segment_corrupt", `corrupt WAL segment ${file} at offset ${offset}: ${reason}`);
  }
}

/** The WAL could not write or sync (ENOSPC, EIO, ...). Pending appends fail with it; the WAL stays valid. */
export class WalWriteError extends CrrError {
  constructor(
    readonly file: string,
    readonly op: string,
    cause: unknown,
  ) {
    const errno = (cause as NodeJS.ErrnoException | undefined)?.code ?? "unknown";
    super("wal_write_failed", `WAL ${op} failed on ${file}: ${errno}`, { cause });
  }
  get errno(): string | undefined {
    return (this.cause as NodeJS.ErrnoException | undefined)?.code;
  }
}

/** Appends queued beyond the configured bound: the caller should retry later. */
export class WalBusyError extends CrrError {
  constructor(queuedBytes: number) {
    super("wal_busy", `WAL write queue full (${queuedBytes} bytes queued); retry later`);
  }
}

export class WalClosedError extends CrrError {
  constructor(dir: string) {
    super("wal_closed", `WAL in ${dir} is closed`);
  }
}

/** A read asked for LSNs that retention already removed. */
export class WalLsnUnavailableError extends CrrError {
  constructor(
    readonly lsn: number,
    readonly firstAvailableLsn: number,
  ) {
    super(
      "lsn_unavailable",
      `LSN ${lsn} is no longer in the WAL (oldest retained LSN is ${firstAvailableLsn})`,
    );
  }
}

/** A remote hybrid-clock timestamp is further in the future than the configured skew allows. */
export class ClockSkewError extends CrrError {
  constructor(
    readonly remoteWallMs: number,
    readonly localWallMs: number,
    readonly maxSkewMs: number,
  ) {
    super(
      "clock_skew",
      `remote HLC ${remoteWallMs} ms is ${remoteWallMs - localWallMs} ms ahead of the local clock (max skew ${maxSkewMs} ms)`,
    );
  }
}

/** The dedup store failed; the message names the database file and what was being done. */
export class StoreError extends CrrError {
  constructor(
    readonly file: string,
    readonly op: string,
    cause: unknown,
    code = "store_failed",
    hint = "",
  ) {
    const detail = (cause as Error | undefined)?.message ?? String(cause);
    super(code, `store ${file}: ${op} failed: ${detail}${hint}`, { cause });
  }
}

/**
 * A node of a region served by several nodes was marked left (`crr leave`): the shared store
 * refuses its claims and its applies, so it can decide nothing more.
 */
export class NodeLeftError extends CrrError {
  constructor(incarnation: string) {
    super(
      "node_left",
      `this node (incarnation ${incarnation}) was marked left of its region (crr leave): it takes no appends; stop it and start a node with a new, empty data directory`,
    );
  }
}

/** The disk under the store is full (SQLITE_FULL): appends are refused with 503 until it has room. */
export class StoreFullError extends StoreError {
  constructor(file: string, op: string, cause: unknown) {
    super(file, op, cause, "store_full");
  }
}

/**
 * The store's server does not answer (a connection refused, cut or timed out): nothing is
 * known to be wrong with the data, and the call may pass on a retry (503 with Retry-After;
 * another node of the region may answer meanwhile).
 */
export class StoreUnavailableError extends StoreError {
  constructor(file: string, op: string, cause: unknown) {
    super(file, op, cause, "store_unavailable");
  }
}

/** The database file is damaged or not a database (SQLITE_CORRUPT, SQLITE_NOTADB). */
export class StoreCorruptError extends StoreError {
  constructor(file: string, op: string, cause: unknown) {
    super(
      file,
      op,
      cause,
      "store_corrupt",
      "; stop the node and run 'crr rebuild --config FILE' (the WAL and the peers hold every record)",
    );
  }
}

/**
 * Recovery found that records the evidence (this region's store, its peers, clients) says
 * were acknowledged are damaged or missing in the WAL, and could not restore them. The node
 * refuses to start rather than cut or reissue them.
 */
export class AcknowledgedLossError extends CrrError {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly fromLsn: number,
    readonly toLsn: number,
    readonly detail: string,
  ) {
    super(
      "acknowledged_loss",
      `WAL ${file} at offset ${offset}: LSNs ${fromLsn}..${toLsn} were acknowledged but ${detail}`,
    );
  }
}

const retryableCodes = new Set(["wal_busy", "wal_write_failed", "store_full"]);

/** Whether retrying the same operation later can succeed. */
export function isRetryable(err: unknown): boolean {
  return err instanceof CrrError && retryableCodes.has(err.code);
}

/** A peer asked this region to write something it must not hold or that nothing shows is wrong. */
export class RepairRefusedError extends CrrError {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super("repair_refused", `repair of key '${key}' refused: ${reason}; nothing was written`);
  }
}
