/**
 * Loading a node's config: parse (YAML or JSON), substitute ${ENV} references, validate
 * against the schema and the cross-field rules, merge defaults. Every problem is reported,
 * each as "path: what was expected", in one ConfigError.
 */
import fs from "node:fs";
import path from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import YAML from "yaml";
import { CrrError } from "../errors.js";
import { defaults } from "./defaults.js";
import { replicationPolicy } from "./policy.js";
import { checkSecurity } from "./security.js";
import { configSchema } from "./schema.js";

export type ReplicationMode = "multi-way" | "two-region" | "selective";
export type ConflictRuleName = "first-write-wins" | "last-write-wins" | "primary-wins";

type Widen<T> = T extends number
  ? number
  : T extends string
    ? string
    : T extends boolean
      ? boolean
      : { -readonly [K in keyof T]: Widen<T[K]> };

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  caFile?: string;
  requireClientCert: boolean;
}

export interface S3Config {
  bucket: string;
  prefix: string;
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
}

export interface NodeConfig {
  region: string;
  /** Absolute (relative paths are resolved against the config file's directory). */
  dataDir: string;
  listen: { host: string; port: number; tls?: TlsConfig };
  /** `via: s3`: this region also follows that region's S3 archive (see the README, "S3 as a transport"). */
  /** `nodes: several`: the region is served by several nodes on one shared store (see the README). */
  regions: Record<
    string,
    { url: string; publicKeyFiles?: string[]; via?: "http" | "s3"; nodes?: "one" | "several" }
  >;
  crr: {
    enabled: boolean;
    replicationMode: ReplicationMode;
    peers: string[];
    targetRegions: string[];
    policies: Array<{ tenantID: string; targetRegions: string[] }>;
    conflictRule: ConflictRuleName;
    regionPriority: string[];
  };
  auth: {
    /** The deployment's shared secret (shared-secret mode; "" in key mode). Read from peerSecretFile when given. */
    peerSecret: string;
    /** This region's Ed25519 private key (key mode). */
    privateKeyFile?: string;
    /** Bearer token for the admin routes ("" when none). Read from adminTokenFile when given. */
    adminToken: string;
    loopbackAdmin: boolean;
    windowMs: number;
  };
  wal: Widen<typeof defaults.wal>;
  store: Widen<typeof defaults.store> & { url?: string };
  /** The S3 archive, when `archive.s3` is configured. */
  archive: Widen<typeof defaults.archive> & { s3?: S3Config };
  shipper: Widen<typeof defaults.shipper>;
  reader: Widen<typeof defaults.reader>;
  server: Widen<typeof defaults.server>;
  hlc: Widen<typeof defaults.hlc>;
  append: Widen<typeof defaults.append>;
  health: Widen<typeof defaults.health>;
  recovery: Widen<typeof defaults.recovery>;
  divergence: Widen<typeof defaults.divergence>;
  audit: Widen<typeof defaults.audit>;
  drain: Widen<typeof defaults.drain>;
  shutdown: Widen<typeof defaults.shutdown>;
  log: { level: string };
}

/** Secrets (peer secret, admin token) must be at least this long, wherever they come from. */
export const peerSecretCharsMin = 16;

export class ConfigError extends CrrError {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super("config_invalid", `invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** "/crr/peers/0" -> "crr.peers[0]" */
function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").filter(Boolean);
  if (extra) parts.push(extra);
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || "(top level)";
}

/** What a URL field expects (never its value: a database URL holds a password). */
function patternHint(instancePath: string): string | undefined {
  if (instancePath === "/store/url") return "expected a postgres:// or postgresql:// URL";
  return instancePath.includes("/url") ? "expected an http:// or https:// URL" : undefined;
}

function describe(e: ErrorObject): string {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "additionalProperties":
      return `${fieldPath(e.instancePath, String(params.additionalProperty))}: unknown key`;
    case "required":
      return `${fieldPath(e.instancePath, String(params.missingProperty))}: required`;
    case "enum":
      return `${fieldPath(e.instancePath)}: expected one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
    case "type":
      return `${fieldPath(e.instancePath)}: expected ${String(params.type)}`;
    case "pattern":
      return `${fieldPath(e.instancePath)}: ${patternHint(e.instancePath) ?? `does not match ${String(params.pattern)}`}`;
    default:
      return `${fieldPath(e.instancePath)}: ${e.message ?? e.keyword}`;
  }
}

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(configSchema);

/**
 * Replace `${NAME}` and `${NAME:-default}` (the shell's: the default when NAME is unset or
 * empty) in every string with the environment's value; a missing variable without a
 * default, and any other `${...}` form, is a problem.
 */
function substituteEnv(value: unknown, at: string, env: NodeJS.ProcessEnv, problems: string[]): unknown {
  if (typeof value === "string") {
    return value.replace(/\$\{([^}]*)\}/g, (whole, inner: string) => {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s.exec(inner);
      if (!m) {
        problems.push(`${at}: unsupported substitution ${whole} (use \${NAME} or \${NAME:-default})`);
        return "";
      }
      const v = env[m[1]!];
      if (v !== undefined && v !== "") return v;
      if (m[2] !== undefined) return m[2];
      problems.push(`${at}: environment variable ${m[1]} is not set`);
      return "";
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, `${at}[${i}]`, env, problems));
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substituteEnv(v, at ? `${at}.${k}` : k, env, problems)]),
    );
  }
  return value;
}

function checkRegions(c: NodeConfig, problems: string[]): void {
  const known = (r: string) => r in c.regions;
  if (!known(c.region))
    problems.push(`region: '${c.region}' is not in regions (add regions.${c.region}.url)`);
  const check = (list: string[], at: string) =>
    list.forEach((r, i) => {
      if (!known(r)) problems.push(`${at}[${i}]: unknown region '${r}' (no regions.${r}.url)`);
      else if (r === c.region) problems.push(`${at}[${i}]: '${r}' is this node's own region`);
    });
  const crr = c.crr;
  if (!crr.enabled) return;
  if (crr.replicationMode === "multi-way") {
    if (crr.peers.length === 0) problems.push("crr.peers: required for replicationMode multi-way");
    check(crr.peers, "crr.peers");
  } else if (crr.replicationMode === "two-region") {
    if (crr.targetRegions.length !== 1)
      problems.push("crr.targetRegions: two-region mode needs exactly one target region");
    check(crr.targetRegions, "crr.targetRegions");
  } else {
    if (crr.policies.length === 0) problems.push("crr.policies: required for replicationMode selective");
    const seen = new Set<string>();
    crr.policies.forEach((p, i) => {
      if (seen.has(p.tenantID))
        problems.push(`crr.policies[${i}].tenantID: '${p.tenantID}' has two policies`);
      seen.add(p.tenantID);
      p.targetRegions.forEach((r, j) => {
        if (!known(r)) problems.push(`crr.policies[${i}].targetRegions[${j}]: unknown region '${r}'`);
      });
    });
  }
  if (crr.conflictRule === "primary-wins") {
    if (crr.regionPriority.length === 0)
      problems.push("crr.regionPriority: required for conflictRule primary-wins");
    crr.regionPriority.forEach((r, i) => {
      if (!known(r)) problems.push(`crr.regionPriority[${i}]: unknown region '${r}'`);
    });
  }
  if (c.shipper.retryDelayMsMin > c.shipper.retryDelayMsMax) {
    problems.push("shipper.retryDelayMsMin: must not exceed shipper.retryDelayMsMax");
  }
}

/** The store and the archive, replication on or off (a node with crr.enabled false still keeps both). */
function checkStorage(c: NodeConfig, problems: string[]): void {
  if (c.store.kind === "postgres" && !c.store.url)
    problems.push('store.url: required for kind postgres (e.g. url: "${CRR_PG_URL}")');
  if (c.regions[c.region]?.nodes === "several" && c.store.kind !== "postgres")
    problems.push(
      `regions.${c.region}.nodes: several nodes of one region share a PostgreSQL store (store.kind: postgres)`,
    );
  if (c.store.kind === "sqlite" && c.store.url)
    problems.push("store.url: only for kind postgres (SQLite lives in the data directory)");
  for (const [name, r] of Object.entries(c.regions)) if (r.via === "s3") checkFollowed(c, name, problems);
  if (c.archive.s3 && c.archive.objectBytesMax < c.audit.fileBytesMax + 1024 * 1024)
    problems.push(
      `archive.objectBytesMax: ${c.archive.objectBytesMax} must be at least audit.fileBytesMax + 1 MiB (${c.audit.fileBytesMax + 1024 * 1024}): an archived audit file could not be read back`,
    );
  if (c.archive.s3 && c.archive.objectBytesMax < c.wal.segmentBytesMax + 1024 * 1024)
    problems.push(
      `archive.objectBytesMax: ${c.archive.objectBytesMax} must be at least wal.segmentBytesMax + 1 MiB (${c.wal.segmentBytesMax + 1024 * 1024}): an archived segment could not be read back`,
    );
}

/**
 * `regions.X.via: s3` reads every object X archives: all of X's WAL, every tenant in it. So a
 * region follows only a peer it exchanges everything with: under a selective policy the
 * objects hold tenants the policy keeps from this region (the reader would drop them, but
 * their bytes would have crossed), and a region that is not a peer is not sent X's records at all.
 */
function checkFollowed(c: NodeConfig, name: string, problems: string[]): void {
  const at = `regions.${name}.via: s3`;
  if (!c.archive.s3) problems.push(`${at} needs archive.s3 (the bucket the regions' archives are in)`);
  // The own region may say so too: every region's config can share one regions block.
  if (name === c.region) return;
  if (!c.crr.enabled) problems.push(`${at}: replication is off (crr.enabled: false)`);
  else if (c.crr.replicationMode === "selective")
    problems.push(
      `${at}: the archive holds every tenant ${name} writes, those the selective policy keeps from ${c.region} too; S3 as a transport needs replicationMode multi-way or two-region`,
    );
  else if (!replicationPolicy(c).peers.includes(name))
    problems.push(
      `${at}: '${name}' is not a peer of ${c.region} (${c.crr.replicationMode === "multi-way" ? "crr.peers" : "crr.targetRegions"})`,
    );
}

type Raw = Record<string, Record<string, unknown> | unknown>;

/** Validate an already-parsed config object. `baseDir` resolves a relative dataDir. */
export function parseConfig(
  raw: unknown,
  source: string,
  baseDir: string,
  env: NodeJS.ProcessEnv = process.env,
): NodeConfig {
  const problems: string[] = [];
  const substituted = substituteEnv(raw, "", env, problems);
  if (!validate(substituted)) {
    problems.push(...(validate.errors ?? []).map(describe));
    throw new ConfigError(source, [...new Set(problems)]);
  }
  const r = substituted as unknown as Raw;
  const sectionOf = (name: string) => (r[name] ?? {}) as Record<string, unknown>;
  const merged = <T extends object>(name: string, d: T) =>
    ({ ...d, ...sectionOf(name) }) as unknown as Widen<T>;
  const crr = sectionOf("crr");
  const config: NodeConfig = {
    region: r.region as string,
    dataDir: path.resolve(baseDir, r.dataDir as string),
    listen: merged("listen", defaults.listen),
    regions: r.regions as NodeConfig["regions"],
    crr: {
      enabled: (crr.enabled as boolean | undefined) ?? defaults.crr.enabled,
      replicationMode:
        (crr.replicationMode as ReplicationMode | undefined) ??
        (crr.policies ? "selective" : crr.targetRegions ? "two-region" : "multi-way"),
      peers: (crr.peers as string[] | undefined) ?? [],
      targetRegions: (crr.targetRegions as string[] | undefined) ?? [],
      policies: (crr.policies as NodeConfig["crr"]["policies"] | undefined) ?? [],
      conflictRule: (crr.conflictRule as ConflictRuleName | undefined) ?? defaults.crr.conflictRule,
      regionPriority: (crr.regionPriority as string[] | undefined) ?? [],
    },
    auth: {
      peerSecret: "",
      adminToken: "",
      windowMs: defaults.auth.windowMs,
      loopbackAdmin: defaults.auth.loopbackAdmin,
    },
    wal: merged("wal", defaults.wal),
    store: merged("store", defaults.store),
    archive: archiveOf(sectionOf("archive")),
    shipper: merged("shipper", defaults.shipper),
    reader: merged("reader", defaults.reader),
    server: merged("server", defaults.server),
    hlc: merged("hlc", defaults.hlc),
    append: merged("append", defaults.append),
    health: merged("health", defaults.health),
    recovery: merged("recovery", defaults.recovery),
    divergence: merged("divergence", defaults.divergence),
    audit: merged("audit", defaults.audit),
    drain: merged("drain", defaults.drain),
    shutdown: merged("shutdown", defaults.shutdown),
    log: { level: "info", ...sectionOf("log") } as { level: string },
  };
  checkRegions(config, problems);
  checkStorage(config, problems);
  checkSecurity(config, sectionOf("auth"), baseDir, problems);
  if (problems.length > 0) throw new ConfigError(source, problems);
  return config;
}

/** Read and validate a config file (YAML, or JSON which YAML also reads). */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    ]);
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`]);
  }
  return parseConfig(raw, file, path.dirname(path.resolve(file)), env);
}

function archiveOf(a: Record<string, unknown>): NodeConfig["archive"] {
  const s3 = a.s3 as Partial<S3Config> | undefined;
  return {
    intervalMs: (a.intervalMs as number | undefined) ?? defaults.archive.intervalMs,
    pollMs: (a.pollMs as number | undefined) ?? defaults.archive.pollMs,
    requestAttempts: (a.requestAttempts as number | undefined) ?? defaults.archive.requestAttempts,
    requestTimeoutMs: (a.requestTimeoutMs as number | undefined) ?? defaults.archive.requestTimeoutMs,
    objectBytesMax: (a.objectBytesMax as number | undefined) ?? defaults.archive.objectBytesMax,
    bootstrap: (a.bootstrap as boolean | undefined) ?? defaults.archive.bootstrap,
    verify: (a.verify as "complete" | "sampled" | undefined) ?? defaults.archive.verify,
    verifySampleEvery: (a.verifySampleEvery as number | undefined) ?? defaults.archive.verifySampleEvery,
    auditLockDays: (a.auditLockDays as number | undefined) ?? defaults.archive.auditLockDays,
    s3: s3 && {
      bucket: s3.bucket!,
      prefix: s3.prefix ?? "crr",
      region: s3.region ?? "us-east-1",
      endpoint: s3.endpoint,
      forcePathStyle: s3.forcePathStyle ?? false,
    },
  };
}
