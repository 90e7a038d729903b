/**
 * Every configuration default, in one place (README "Configuration" mirrors this file).
 */
import {
  hlcMaxSkewMsDefault,
  segmentAgeMsMaxDefault,
  segmentBytesMaxDefault,
  walQueueBytesMaxDefault,
} from "../limits.js";

export const defaults = {
  listen: { host: "127.0.0.1", port: 7070 },
  crr: {
    enabled: true,
    conflictRule: "first-write-wins" as const,
  },
  auth: {
    /** Peer requests whose timestamp is further than this from our clock are refused. */
    windowMs: 30_000,
    /** Admin routes from loopback without a credential: off (a local TCP forwarder makes everyone loopback). */
    loopbackAdmin: false,
  },
  wal: {
    segmentBytesMax: segmentBytesMaxDefault,
    segmentAgeMsMax: segmentAgeMsMaxDefault,
    queueBytesMax: walQueueBytesMaxDefault,
    /** Above this the WAL is kept (nothing unshipped is deleted) but a metric and an error log say so. */
    bytesMax: 8 * 1024 * 1024 * 1024,
    retentionIntervalMs: 10_000,
  },
  store: {
    /** SQLite in the data directory (embedded), or PostgreSQL at `url` (shared by the region's nodes). */
    kind: "sqlite" as "sqlite" | "postgres",
    /** PostgreSQL only: connections kept open. */
    poolSize: 8,
    /**
     * How often a worker thread checkpoints the store's -wal into the database file (and
     * syncs both). Commits are durable without it: each is synced by the group commit.
     */
    checkpointIntervalMs: 500,
  },
  archive: {
    /** How often sealed segments and the active segment's durable prefix are archived (and verified). */
    intervalMs: 10_000,
    /** How often a region follows the archive of a peer reached `via: s3` (one LIST per incarnation). */
    pollMs: 5_000,
    /** Tries of each S3 request within a pass (backoff between them); a failed pass is tried again next interval. */
    requestAttempts: 3,
    /** Each S3 request must answer within this (then it is retried, and the pass fails). */
    requestTimeoutMs: 30_000,
    /** "complete": every archived object is read back and checked before it counts; "sampled": one in verifySampleEvery (the others count on the put's checksum). */
    verify: "complete" as "complete" | "sampled",
    verifySampleEvery: 10,
    /** The audit log's sealed files are archived under S3 Object Lock (compliance mode) this many days; 0: without a lock. */
    auditLockDays: 0,
    /** A region that starts empty restores what the archive holds before copying the rest from its peers. */
    bootstrap: false,
    /** The largest archived object read (a WAL segment and its header fit: at least wal.segmentBytesMax + 1 MiB). */
    objectBytesMax: 128 * 1024 * 1024,
  },
  shipper: {
    batchBytesMax: 1024 * 1024,
    batchRecordsMax: 5000,
    /**
     * Batches sent ahead of the first acknowledgement, pipelined on one connection, so a long
     * round trip is not paid per batch (80 ms one way, 1k/s: lag p50 178 -> 92 ms with 16; the
     * closing note of the speed issue has the figures), bounded also in bytes.
     */
    inflightBatchesMax: 64,
    inflightBytesMax: 16 * 1024 * 1024,
    /** Wait this long for more records before sending a small batch (0: send at once). */
    lingerMs: 0,
    connectTimeoutMs: 2000,
    /** Headers and body each; a black-holed connection is abandoned after this. */
    requestTimeoutMs: 5000,
    retryDelayMsMin: 50,
    retryDelayMsMax: 2000,
    /** How often the acknowledged LSN per peer is written to disk (it is also asked of the peer on start). */
    ackPersistIntervalMs: 200,
    /**
     * "gzip": batches of at least compressionBytesMin bytes are sent gzip-coded once the peer
     * says it reads gzip (src/link/coding.ts). Worth it on a link slower than the CPU's coding
     * (bench/results/compression.md); "none" on a fast one.
     */
    compression: "none" as "none" | "gzip",
    compressionBytesMin: 256,
  },
  reader: {
    bodyBytesMax: 8 * 1024 * 1024,
  },
  server: {
    /** Whole request (headers + body) must arrive within this. */
    requestTimeoutMs: 15_000,
    keepAliveTimeoutMs: 5000,
    publicBodyBytesMax: 256 * 1024,
    /** A request body must arrive whole within this of its headers, or the connection is cut. */
    bodyTimeoutMs: 15_000,
    /** Headers must arrive within this of the connection's first byte. */
    headersTimeoutMs: 10_000,
    /** Authenticated peer requests served at once; beyond, 503 with Retry-After. */
    peerRequestsMax: 64,
    /** Open connections at once; beyond, new ones are closed at once. */
    connectionsMax: 1024,
    /** `GET /v1/admin/events` streams at once; beyond, 503. */
    eventStreamsMax: 16,
  },
  hlc: { maxSkewMs: hlcMaxSkewMsDefault },
  append: {
    /** Semi-synchronous appends (?wait=N) give up after this and say how many peers acknowledged. */
    waitTimeoutMs: 10_000,
    /**
     * Records admitted and not yet answered (single and batch appends together); beyond it an
     * append is refused at once with 429 and Retry-After, so accepted ones keep a bounded latency.
     */
    pendingMax: 4096,
    /**
     * New appends are refused at once (429) while the oldest append waiting for the WAL and the
     * local apply has waited longer than this (0: no bound): a stalled disk refuses new appends
     * after this long instead of piling up pendingMax of them. Measured (bench/results/http.md):
     * it does not shorten a CPU-bound overload, whose queue is the event loop, and a tight
     * value there only turns clients' retries into more load.
     */
    queueDelayMaxMs: 500,
    /**
     * HTTP appends are refused at once (429) while the node's event loop lags more than this
     * (its mean delay over the last 100 ms, less the sampler's 10 ms resolution, by
     * @fastify/under-pressure; 0: no bound): a CPU-bound overload queues in the event loop and
     * the sockets, where pendingMax and queueDelayMaxMs cannot see it. Measured: it does not
     * make refusals fast there (bench/results/http.md), so it is off.
     */
    eventLoopDelayMaxMs: 0,
    /**
     * Several nodes per region (a shared PostgreSQL store): how long an append waits for a key
     * another node of the region is appending (its record, or its claim released) before
     * answering 503 key_claimed.
     */
    claimWaitMs: 10_000,
    /** Records in one POST /v1/records/batch (or appendMany). */
    batchRecordsMax: 1000,
    /** Largest POST /v1/records/batch body. */
    batchBodyBytesMax: 4 * 1024 * 1024,
  },
  health: {
    probeIntervalMs: 2000,
    probeTimeoutMs: 1000,
    /** While the disk is full, a write probe runs this often; the region is ready again once it succeeds. */
    diskProbeIntervalMs: 1000,
  },
  recovery: {
    /** Before serving, peers are asked what they hold of this region's stream (evidence for recovery) this long at most. */
    peerWaitMs: 3000,
    /** A region with no state of its own waits this long for its peers before it refuses to start. */
    bootstrapWaitMs: 30_000,
    /** Serve a region with no state of its own without asking its peers first (an operator's decision). */
    startAlone: false,
  },
  divergence: {
    intervalMs: 30_000,
    /** The scrubber recomputes this many buckets from record content per tick (65,536 in all). */
    scrubBucketsPerTick: 1024,
    scrubIntervalMs: 1000,
    /**
     * A record one region holds and another lacks is "in flight" (not reported) only while it
     * is younger than this and its stream is alive; older, it is missing.
     */
    inFlightMsMax: 300_000,
  },
  audit: { fileBytesMax: 64 * 1024 * 1024 },
  drain: { timeoutMs: 60_000 },
  shutdown: {
    drainTimeoutMs: 10_000,
    /** After SIGTERM, /readyz answers 503 this long before the listener closes, so load balancers stop sending. */
    readinessGraceMs: 500,
  },
} as const;
