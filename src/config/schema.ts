/**
 * JSON Schema of the node's config file (YAML or JSON). Unknown keys are errors everywhere.
 * Defaults are not in the schema but in defaults.ts, merged after validation.
 */
const regionName = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
} as const;
const regionList = { type: "array", items: regionName, uniqueItems: true } as const;
const positiveInt = { type: "integer", minimum: 1 } as const;
const nonNegativeInt = { type: "integer", minimum: 0 } as const;
/** A file path (relative paths are resolved against the config file's directory). */
const file = { type: "string", minLength: 1 } as const;

function section(properties: Record<string, unknown>) {
  return { type: "object", additionalProperties: false, properties } as const;
}

export const configSchema = {
  type: "object",
  additionalProperties: false,
  required: ["region", "dataDir", "regions"],
  properties: {
    region: regionName,
    dataDir: { type: "string", minLength: 1 },
    listen: section({
      host: { type: "string", minLength: 1 },
      port: { type: "integer", minimum: 0, maximum: 65535 },
      tls: {
        type: "object",
        additionalProperties: false,
        required: ["certFile", "keyFile"],
        properties: {
          certFile: file,
          keyFile: file,
          caFile: file,
          requireClientCert: { type: "boolean" },
        },
      },
    }),
    regions: {
      type: "object",
      minProperties: 1,
      propertyNames: regionName,
      additionalProperties: {
        type: "object",
        additionalProperties: false,
        required: ["url"],
        properties: {
          url: { type: "string", pattern: "^https?://" },
          publicKeyFiles: { type: "array", items: file, minItems: 1, maxItems: 4, uniqueItems: true },
          via: { enum: ["http", "s3"] },
          nodes: { enum: ["one", "several"] },
        },
      },
    },
    crr: section({
      enabled: { type: "boolean" },
      replicationMode: { enum: ["multi-way", "two-region", "selective"] },
      peers: regionList,
      targetRegions: regionList,
      policies: {
        type: "array",
        items: {
          type: "object",
          additionalProperties: false,
          required: ["tenantID", "targetRegions"],
          properties: { tenantID: { type: "string", minLength: 1 }, targetRegions: regionList },
        },
      },
      conflictRule: { enum: ["first-write-wins", "last-write-wins", "primary-wins"] },
      regionPriority: regionList,
    }),
    auth: section({
      peerSecret: { type: "string" },
      peerSecretFile: file,
      privateKeyFile: file,
      adminToken: { type: "string" },
      adminTokenFile: file,
      loopbackAdmin: { type: "boolean" },
      windowMs: positiveInt,
    }),
    wal: section({
      segmentBytesMax: { type: "integer", minimum: 4096 },
      segmentAgeMsMax: positiveInt,
      queueBytesMax: positiveInt,
      bytesMax: positiveInt,
      retentionIntervalMs: positiveInt,
    }),
    store: section({
      kind: { enum: ["sqlite", "postgres"] },
      /** postgres://user:password@host:port/database; write "${CRR_PG_URL}" to keep the password out of the file. */
      url: { type: "string", pattern: "^postgres(ql)?://" },
      poolSize: { type: "integer", minimum: 1, maximum: 256 },
      checkpointIntervalMs: positiveInt,
    }),
    archive: section({
      s3: {
        type: "object",
        additionalProperties: false,
        required: ["bucket"],
        properties: {
          bucket: { type: "string", minLength: 3, maxLength: 63 },
          prefix: { type: "string" },
          region: { type: "string", minLength: 1 },
          endpoint: { type: "string", pattern: "^https?://" },
          forcePathStyle: { type: "boolean" },
        },
      },
      intervalMs: positiveInt,
      pollMs: positiveInt,
      requestAttempts: positiveInt,
      requestTimeoutMs: positiveInt,
      objectBytesMax: positiveInt,
      bootstrap: { type: "boolean" },
      verify: { enum: ["complete", "sampled"] },
      verifySampleEvery: { type: "integer", minimum: 1 },
      auditLockDays: { type: "integer", minimum: 0, maximum: 36500 },
    }),
    shipper: section({
      batchBytesMax: { type: "integer", minimum: 1024 },
      batchRecordsMax: positiveInt,
      lingerMs: nonNegativeInt,
      inflightBatchesMax: { type: "integer", minimum: 1, maximum: 64 },
      inflightBytesMax: positiveInt,
      connectTimeoutMs: positiveInt,
      requestTimeoutMs: positiveInt,
      retryDelayMsMin: positiveInt,
      retryDelayMsMax: positiveInt,
      ackPersistIntervalMs: positiveInt,
      compression: { enum: ["none", "gzip"] },
      compressionBytesMin: nonNegativeInt,
    }),
    reader: section({ bodyBytesMax: { type: "integer", minimum: 1024 } }),
    server: section({
      requestTimeoutMs: positiveInt,
      keepAliveTimeoutMs: positiveInt,
      publicBodyBytesMax: positiveInt,
      bodyTimeoutMs: positiveInt,
      headersTimeoutMs: positiveInt,
      peerRequestsMax: positiveInt,
      connectionsMax: positiveInt,
      eventStreamsMax: positiveInt,
    }),
    hlc: section({ maxSkewMs: positiveInt }),
    append: section({
      waitTimeoutMs: positiveInt,
      pendingMax: positiveInt,
      queueDelayMaxMs: nonNegativeInt,
      eventLoopDelayMaxMs: nonNegativeInt,
      claimWaitMs: positiveInt,
      batchRecordsMax: positiveInt,
      batchBodyBytesMax: positiveInt,
    }),
    health: section({
      probeIntervalMs: positiveInt,
      probeTimeoutMs: positiveInt,
      diskProbeIntervalMs: positiveInt,
    }),
    recovery: section({
      peerWaitMs: positiveInt,
      bootstrapWaitMs: positiveInt,
      startAlone: { type: "boolean" },
    }),
    divergence: section({
      intervalMs: positiveInt,
      scrubBucketsPerTick: positiveInt,
      scrubIntervalMs: positiveInt,
      inFlightMsMax: positiveInt,
    }),
    audit: section({ fileBytesMax: { type: "integer", minimum: 4096 } }),
    drain: section({ timeoutMs: positiveInt }),
    shutdown: section({ drainTimeoutMs: positiveInt, readinessGraceMs: nonNegativeInt }),
    log: section({ level: { enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"] } }),
  },
} as const;
