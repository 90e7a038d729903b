/**
 * Lag SLO benchmark scenarios (YAML or JSON files), validated on load with the same
 * "path: what was expected" messages as node configs.
 */
import fs from "node:fs";
import { Ajv } from "ajv";
import YAML from "yaml";

export interface LinkSpec {
  /** Region names, or "*" for every region. */
  from: string;
  to: string;
  latencyMs?: number;
  jitterMs?: number;
  bandwidthBytesPerSecond?: number;
  lossRate?: number;
  bitFlipRate?: number;
  resetEverySeconds?: number;
}

export type DrillSpec =
  | { kind: "sigkill"; region: string; atSeconds: number; downSeconds?: number }
  | { kind: "disk-loss"; region: string; atSeconds: number; downSeconds?: number }
  | { kind: "partition"; regions: [string, string]; atSeconds: number; forSeconds: number }
  | { kind: "clock-skew"; region: string; offsetMs: number };

export interface Scenario {
  name: string;
  regions: string[];
  replication: {
    mode: "multi-way" | "selective";
    policies?: Array<{ tenantID: string; targetRegions: string[] }>;
  };
  load: {
    ratePerRegion: number;
    recordBytes: number;
    durationSeconds: number;
    warmupSeconds: number;
    tenants: string[];
    /** Records per request: 1 is POST /v1/records, above 1 POST /v1/records/batch. */
    batchRecords: number;
    /** Records each region's client may have unanswered (each region its own bound, so one slow region does not starve the others). */
    inflightPerRegion: number;
    /** HTTP connections of each region's client (per-record appends: at most this many in flight at once). */
    connectionsPerRegion: number;
    /**
     * What fills a record's body up to recordBytes: "filler" (one repeated character: the best
     * case for compression) or "random" (random base64: the worst).
     */
    body: "filler" | "random";
  };
  links: LinkSpec[];
  drills: DrillSpec[];
  slo: { lagSecondsMax: number; rpoSecondsMax: number; rtoSecondsMax: number; lagP99MsMax?: number };
  baseline: { nats: boolean };
  seed: number;
  /** Extra node config for every region (e.g. `shipper: { inflightBatchesMax: 4 }`), validated by the nodes. */
  node: Record<string, unknown>;
  /**
   * S3 as the transport: every region archives to one bucket and follows every other one's
   * archive (`regions.X.via: s3`), with the HTTP links refused during the load (restored
   * after it, so shippers catch up). Without `endpoint` the harness starts s3rver on
   * loopback (a devDependency: give an endpoint where it is not installed).
   */
  s3?: { endpoint?: string; bucket: string; intervalMs: number; pollMs: number };
  /**
   * Every region's dedup store on PostgreSQL, one database per region: created on the server
   * at `url` (a role that may CREATE DATABASE), or on a temporary cluster of the machine's
   * PostgreSQL the harness starts and stops (Debian: apt-get install postgresql).
   */
  postgres?: { url?: string; poolSize: number };
}

const num = { type: "number", minimum: 0 } as const;
const schema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "regions", "load"],
  properties: {
    name: { type: "string", minLength: 1 },
    regions: {
      type: "array",
      minItems: 2,
      maxItems: 5,
      uniqueItems: true,
      items: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$" },
    },
    replication: {
      type: "object",
      additionalProperties: false,
      properties: {
        mode: { enum: ["multi-way", "selective"] },
        policies: {
          type: "array",
          items: {
            type: "object",
            additionalProperties: false,
            required: ["tenantID", "targetRegions"],
            properties: {
              tenantID: { type: "string" },
              targetRegions: { type: "array", items: { type: "string" } },
            },
          },
        },
      },
    },
    load: {
      type: "object",
      additionalProperties: false,
      required: ["ratePerRegion", "durationSeconds"],
      properties: {
        ratePerRegion: { type: "number", exclusiveMinimum: 0 },
        recordBytes: { type: "integer", minimum: 64, maximum: 60000 },
        durationSeconds: { type: "number", exclusiveMinimum: 0 },
        warmupSeconds: num,
        tenants: { type: "array", minItems: 1, items: { type: "string" } },
        batchRecords: { type: "integer", minimum: 1, maximum: 1000 },
        inflightPerRegion: { type: "integer", minimum: 1 },
        connectionsPerRegion: { type: "integer", minimum: 1, maximum: 1024 },
        body: { enum: ["filler", "random"] },
      },
    },
    links: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["from", "to"],
        properties: {
          from: { type: "string" },
          to: { type: "string" },
          latencyMs: num,
          jitterMs: num,
          bandwidthBytesPerSecond: num,
          lossRate: { type: "number", minimum: 0, maximum: 1 },
          bitFlipRate: { type: "number", minimum: 0, maximum: 1 },
          resetEverySeconds: num,
        },
      },
    },
    drills: {
      type: "array",
      items: {
        type: "object",
        required: ["kind"],
        properties: {
          kind: { enum: ["sigkill", "disk-loss", "partition", "clock-skew"] },
          region: { type: "string" },
          regions: { type: "array", minItems: 2, maxItems: 2, items: { type: "string" } },
          atSeconds: num,
          downSeconds: num,
          forSeconds: num,
          offsetMs: { type: "number" },
        },
      },
    },
    slo: {
      type: "object",
      additionalProperties: false,
      properties: { lagSecondsMax: num, rpoSecondsMax: num, rtoSecondsMax: num, lagP99MsMax: num },
    },
    baseline: { type: "object", additionalProperties: false, properties: { nats: { type: "boolean" } } },
    seed: { type: "integer" },
    node: { type: "object" },
    postgres: {
      type: "object",
      additionalProperties: false,
      properties: {
        url: { type: "string", pattern: "^postgres(ql)?://" },
        poolSize: { type: "integer", minimum: 1, maximum: 256 },
      },
    },
    s3: {
      type: "object",
      additionalProperties: false,
      properties: {
        endpoint: { type: "string", pattern: "^https?://" },
        bucket: { type: "string", minLength: 3 },
        intervalMs: { type: "integer", minimum: 1 },
        pollMs: { type: "integer", minimum: 1 },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema);

export class ScenarioError extends Error {}

export function parseScenario(raw: unknown, source: string): Scenario {
  if (!validate(raw)) {
    const problems = (validate.errors ?? []).map(
      (e) =>
        `${e.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(top level)"}: ${e.message ?? e.keyword}${e.keyword === "additionalProperties" ? ` (${String((e.params as { additionalProperty: string }).additionalProperty)})` : ""}`,
    );
    throw new ScenarioError(`invalid scenario ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
  const r = raw as Partial<Scenario> & Pick<Scenario, "name" | "regions">;
  const s: Scenario = {
    name: r.name,
    regions: r.regions,
    replication: { mode: r.replication?.mode ?? "multi-way", policies: r.replication?.policies },
    load: {
      recordBytes: 200,
      warmupSeconds: 1,
      tenants: ["tenant-a"],
      batchRecords: 1,
      inflightPerRegion: 5000,
      connectionsPerRegion: 64,
      body: "filler",
      ...(r.load as Partial<Scenario["load"]>),
    } as Scenario["load"],
    links: r.links ?? [],
    drills: r.drills ?? [],
    slo: { lagSecondsMax: 60, rpoSecondsMax: 120, rtoSecondsMax: 300, ...r.slo },
    baseline: { nats: r.baseline?.nats ?? true },
    seed: r.seed ?? 1,
    node: r.node ?? {},
    ...(r.postgres ? { postgres: { poolSize: 8, ...(r.postgres as Partial<Scenario["postgres"]>) } } : {}),
    ...(r.s3
      ? {
          s3: {
            ...{ bucket: "crr-bench", intervalMs: 1000, pollMs: 500 },
            ...(r.s3 as Partial<Scenario["s3"]>),
          } as Scenario["s3"],
        }
      : {}),
  };
  const known = new Set(s.regions);
  const problems: string[] = [];
  s.links.forEach((l, i) => {
    for (const end of [l.from, l.to])
      if (end !== "*" && !known.has(end)) problems.push(`links[${i}]: unknown region '${end}'`);
  });
  s.drills.forEach((d, i) => {
    const names = "regions" in d ? d.regions : [d.region];
    for (const n of names) if (!known.has(n)) problems.push(`drills[${i}]: unknown region '${n}'`);
    if (d.kind === "partition" && d.forSeconds === undefined)
      problems.push(`drills[${i}].forSeconds: required for a partition`);
  });
  if (s.s3 && s.drills.some((d) => d.kind !== "clock-skew"))
    problems.push("drills: not with s3 (a restarted node would bring its HTTP links back during the load)");
  if (problems.length > 0)
    throw new ScenarioError(`invalid scenario ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  return s;
}

export function loadScenario(file: string): Scenario {
  let raw: unknown;
  try {
    raw = YAML.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new ScenarioError(`cannot read scenario ${file}: ${(err as Error).message.split("\n")[0]}`);
  }
  return parseScenario(raw, file);
}

/** The faults of the directed link from -> to (later entries override earlier ones). */
export function faultsFor(s: Scenario, from: string, to: string): LinkSpec | undefined {
  const matching = s.links.filter(
    (l) => (l.from === "*" || l.from === from) && (l.to === "*" || l.to === to),
  );
  return matching.length === 0 ? undefined : Object.assign({ from, to }, ...matching);
}
