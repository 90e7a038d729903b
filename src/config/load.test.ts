import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "./load.js";
import { replicationPolicy } from "./policy.js";

const env = { CRR_PEER_SECRET: "0123456789abcdef-secret" };
const base = () => ({
  region: "us-east-1",
  dataDir: "./data/us-east-1",
  listen: { host: "127.0.0.1", port: 7070 },
  regions: {
    "us-east-1": { url: "http://127.0.0.1:7070" },
    "us-west-2": { url: "http://127.0.0.1:7071" },
    "eu-west-1": { url: "http://127.0.0.1:7072" },
  },
  crr: { enabled: true, replicationMode: "multi-way", peers: ["us-west-2", "eu-west-1"] },
  auth: { peerSecret: "${CRR_PEER_SECRET}" },
});

function problems(raw: unknown, e: NodeJS.ProcessEnv = env): string[] {
  try {
    parseConfig(raw, "test.yaml", "/etc/crr", e);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe("config", () => {
  it("loads the design's example with defaults, env substitution and an absolute dataDir", () => {
    const c = parseConfig(base(), "test.yaml", "/etc/crr", env);
    expect(c.dataDir).toBe("/etc/crr/data/us-east-1");
    expect(c.auth.peerSecret).toBe(env.CRR_PEER_SECRET);
    expect(c.shipper.batchBytesMax).toBe(1024 * 1024);
    expect(c.crr.conflictRule).toBe("first-write-wins");
    expect(replicationPolicy(c).peers).toEqual(["us-west-2", "eu-west-1"]);
  });

  it("names every problem with its path and what was expected", () => {
    const raw = base() as Record<string, unknown>;
    raw.colour = "blue";
    (raw.listen as Record<string, unknown>).port = "7070";
    (raw.crr as Record<string, unknown>).replicationMode = "mesh";
    expect(problems(raw)).toEqual(
      expect.arrayContaining([
        "colour: unknown key",
        "listen.port: expected integer",
        'crr.replicationMode: expected one of "multi-way", "two-region", "selective"',
      ]),
    );
  });

  it("reports a missing peer URL, an unknown peer and the node's own region as a peer", () => {
    const raw = base();
    (raw.regions as Record<string, unknown>)["us-west-2"] = {};
    expect(problems(raw)).toContain("regions.us-west-2.url: required");
    const raw2 = base();
    raw2.crr.peers = ["ap-south-1", "us-east-1"];
    expect(problems(raw2)).toEqual([
      "crr.peers[0]: unknown region 'ap-south-1' (no regions.ap-south-1.url)",
      "crr.peers[1]: 'us-east-1' is this node's own region",
    ]);
  });

  it("says which environment variable is missing, never what a secret is", () => {
    expect(problems(base(), {})).toEqual([
      "auth.peerSecret: environment variable CRR_PEER_SECRET is not set",
    ]);
    const short = base();
    short.auth.peerSecret = "short";
    expect(problems(short)).toEqual(["auth.peerSecret: must be at least 16 characters"]);
    const err = (() => {
      try {
        parseConfig({ ...base(), colour: 1 }, "x.yaml", "/", env);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).not.toContain(env.CRR_PEER_SECRET);
  });

  it("a PostgreSQL store needs its url, never shows it, and SQLite takes none", () => {
    const stored = (store: Record<string, unknown>) => ({ ...base(), store });
    expect(problems(stored({ kind: "postgres", url: "postgres://crr:pw-XYZ@db:5432/crr" }))).toEqual([]);
    expect(problems(stored({ kind: "postgres" }))).toEqual([
      'store.url: required for kind postgres (e.g. url: "${CRR_PG_URL}")',
    ]);
    // Replication off does not skip the store's checks (it did: they ran after its early return).
    expect(problems({ ...stored({ kind: "postgres" }), crr: { enabled: false } })).toEqual([
      'store.url: required for kind postgres (e.g. url: "${CRR_PG_URL}")',
    ]);
    expect(problems(stored({ kind: "postgres", url: "mysql://crr:pw-XYZ@db/crr" }))).toEqual([
      "store.url: expected a postgres:// or postgresql:// URL",
    ]);
    expect(problems(stored({ url: "postgres://db/crr" }))).toEqual([
      "store.url: only for kind postgres (SQLite lives in the data directory)",
    ]);
    expect(problems(stored({ kind: "mongo" }))).toEqual(['store.kind: expected one of "sqlite", "postgres"']);
  });

  it("an archive needs the keys that seal its objects, and room to read a whole segment back", () => {
    const archived = (over: Record<string, unknown>) => ({
      ...base(),
      archive: { s3: { bucket: "crr-archive" } },
      ...over,
    });
    expect(problems(archived({}))).toEqual([]);
    expect(problems(archived({ auth: {}, crr: { enabled: false } }))).toEqual([
      "archive.s3: needs auth.privateKeyFile or auth.peerSecret (every archived object is sealed by its origin's key)",
    ]);
    expect(
      problems(archived({ archive: { s3: { bucket: "crr-archive" }, objectBytesMax: 1 << 20 } })).join(),
    ).toContain("archive.objectBytesMax: 1048576 must be at least wal.segmentBytesMax + 1 MiB");
  });

  it("S3 as a transport: only a peer that is sent everything, never under a selective policy (its archive holds tenants kept from here)", () => {
    const following = (crr: Record<string, unknown>, regions: Record<string, unknown> = {}) => ({
      ...base(),
      regions: { ...base().regions, ...regions },
      archive: { s3: { bucket: "crr-archive" } },
      crr: { enabled: true, ...crr },
    });
    const viaS3 = { "us-west-2": { url: "http://127.0.0.1:7071", via: "s3" } };
    expect(problems(following({ peers: ["us-west-2", "eu-west-1"] }, viaS3))).toEqual([]);
    expect(
      problems(following({ replicationMode: "two-region", targetRegions: ["us-west-2"] }, viaS3)),
    ).toEqual([]);
    expect(problems(following({ peers: ["eu-west-1"] }, viaS3))).toEqual([
      "regions.us-west-2.via: s3: 'us-west-2' is not a peer of us-east-1 (crr.peers)",
    ]);
    expect(
      problems(following({ replicationMode: "two-region", targetRegions: ["eu-west-1"] }, viaS3)),
    ).toEqual(["regions.us-west-2.via: s3: 'us-west-2' is not a peer of us-east-1 (crr.targetRegions)"]);
    const selective = {
      replicationMode: "selective",
      policies: [{ tenantID: "a", targetRegions: ["us-east-1", "us-west-2"] }],
    };
    expect(problems(following(selective, viaS3))).toEqual([
      "regions.us-west-2.via: s3: the archive holds every tenant us-west-2 writes, those the selective policy keeps from us-east-1 too; S3 as a transport needs replicationMode multi-way or two-region",
    ]);
    expect(problems(following({ enabled: false }, viaS3))).toEqual([
      "regions.us-west-2.via: s3: replication is off (crr.enabled: false)",
    ]);
    expect(
      problems(
        following({ peers: ["us-west-2"] }, { "us-east-1": { url: "http://127.0.0.1:7070", via: "s3" } }),
      ),
    ).toEqual([]); // one regions block for every region's config: its own entry is not followed
    const { archive: _, ...unarchived } = following({ peers: ["us-west-2"] }, viaS3);
    expect(problems(unarchived)).toEqual([
      "regions.us-west-2.via: s3 needs archive.s3 (the bucket the regions' archives are in)",
    ]);
  });

  it("checks the shape each replication mode needs", () => {
    const two = base() as Record<string, unknown>;
    two.crr = { enabled: true, replicationMode: "two-region", targetRegions: ["us-west-2", "eu-west-1"] };
    expect(problems(two)).toEqual(["crr.targetRegions: two-region mode needs exactly one target region"]);
    const sel = base() as Record<string, unknown>;
    sel.crr = {
      enabled: true,
      replicationMode: "selective",
      policies: [{ tenantID: "a", targetRegions: ["mars-1"] }],
    };
    expect(problems(sel)).toEqual(["crr.policies[0].targetRegions[0]: unknown region 'mars-1'"]);
    const pw = base() as Record<string, unknown>;
    pw.crr = { enabled: true, peers: ["us-west-2"], conflictRule: "primary-wins" };
    expect(problems(pw)).toEqual(["crr.regionPriority: required for conflictRule primary-wins"]);
  });

  it("derives who receives what from each policy shape", () => {
    const sel = parseConfig(
      {
        ...base(),
        crr: {
          enabled: true,
          replicationMode: "selective",
          policies: [{ tenantID: "a", targetRegions: ["us-east-1", "eu-west-1"] }],
        },
      },
      "t",
      "/",
      env,
    );
    const p = replicationPolicy(sel);
    expect(p.peers).toEqual(["eu-west-1"]);
    expect(p.sendsTo("eu-west-1", "a")).toBe(true);
    expect(p.sendsTo("eu-west-1", "b")).toBe(false);
    expect(p.accepts("eu-west-1", "a")).toBe(true);
    expect(p.accepts("eu-west-1", "b")).toBe(false);
    // Which region holds which tenant, whoever asks (the peer routes withhold the rest).
    expect(p.regionTakes("eu-west-1", "a")).toBe(true);
    expect(p.regionTakes("us-east-1", "a")).toBe(true);
    expect(p.regionTakes("us-west-2", "a")).toBe(false);
    expect(p.regionTakes("eu-west-1", "b")).toBe(false);
    const two = replicationPolicy(
      parseConfig({ ...base(), crr: { targetRegions: ["us-west-2"] } }, "t", "/", env),
    );
    expect(two.peers).toEqual(["us-west-2"]);
    expect(two.regionTakes("ap-south-1", "any")).toBe(true); // no tenant filtering: every region takes all
    const off = replicationPolicy(parseConfig({ ...base(), crr: { enabled: false } }, "t", "/", env));
    expect(off.peers).toEqual([]);
    expect(off.regionTakes("us-west-2", "a")).toBe(false); // replication off: nobody else takes anything
  });

  it("takes the shell's ${VAR:-default}, and refuses a default that is too short as a secret", () => {
    const withDefault = { ...base(), auth: { peerSecret: "${CRR_PEER_SECRET:-changeme}" } };
    expect(problems(withDefault, {})).toEqual(["auth.peerSecret: must be at least 16 characters"]);
    expect(parseConfig(withDefault, "t", "/", env).auth.peerSecret).toBe(env.CRR_PEER_SECRET);
    // An empty variable takes the default too (the shell's ":-").
    const long = { ...base(), auth: { peerSecret: "${CRR_PEER_SECRET:-a-default-long-enough-0123}" } };
    expect(parseConfig(long, "t", "/", { CRR_PEER_SECRET: "" }).auth.peerSecret).toBe(
      "a-default-long-enough-0123",
    );
    expect(problems({ ...base(), auth: { peerSecret: "${CRR_PEER_SECRET:?unset}" } })).toEqual([
      "auth.peerSecret: unsupported substitution ${CRR_PEER_SECRET:?unset} (use ${NAME} or ${NAME:-default})",
    ]);
  });

  it("reads secrets from files as Kubernetes mounts them, with the same minimum, and never both ways", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-config-"));
    fs.writeFileSync(path.join(dir, "peer-secret"), "0123456789abcdef-from-a-file\n");
    fs.writeFileSync(path.join(dir, "short"), "short\n");
    const fromFile = { ...base(), auth: { peerSecretFile: "peer-secret", adminTokenFile: "short" } };
    expect(() => parseConfig(fromFile, "t", dir, {})).toThrow(
      "auth.adminToken: must be at least 16 characters",
    );
    const ok = parseConfig({ ...base(), auth: { peerSecretFile: "peer-secret" } }, "t", dir, {});
    expect(ok.auth.peerSecret).toBe("0123456789abcdef-from-a-file");
    expect(problems({ ...base(), auth: { peerSecret: "${CRR_PEER_SECRET}", peerSecretFile: "x" } })).toEqual([
      "auth.peerSecret: set either auth.peerSecret or auth.peerSecretFile, not both",
    ]);
    expect(problems({ ...base(), auth: { peerSecretFile: "/nonexistent/secret" } }, {})).toEqual([
      "auth.peerSecretFile: cannot read /nonexistent/secret: ENOENT",
    ]);
  });

  it("per-region keys: every region's public key, this region's private key among them, no shared secret beside", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-keys-"));
    const pub: Record<string, string> = {};
    let east = "";
    for (const r of ["us-east-1", "us-west-2", "eu-west-1"]) {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      fs.writeFileSync(path.join(dir, `${r}.pub`), publicKey.export({ type: "spki", format: "pem" }));
      pub[r] = `${r}.pub`;
      if (r === "us-east-1") {
        fs.writeFileSync(path.join(dir, "east.key"), privateKey.export({ type: "pkcs8", format: "pem" }));
        east = "east.key";
      }
    }
    const keyed = (over: Record<string, unknown> = {}) => ({
      ...base(),
      regions: Object.fromEntries(
        Object.entries(base().regions).map(([r, v]) => [r, { ...v, publicKeyFiles: [pub[r]] }]),
      ),
      auth: { privateKeyFile: east },
      ...over,
    });
    const c = parseConfig(keyed(), "t", dir, {});
    expect(c.auth.privateKeyFile).toBe(path.join(dir, "east.key"));
    expect(c.auth.peerSecret).toBe("");
    const wrongOwn = keyed();
    wrongOwn.regions["us-east-1"]!.publicKeyFiles = [pub["us-west-2"]];
    expect(() => parseConfig(wrongOwn, "t", dir, {})).toThrow(
      /auth.privateKeyFile: its public key \(id [A-Za-z0-9_-]+\) is not among regions.us-east-1.publicKeyFiles/,
    );
    const noKey = keyed();
    delete (noKey.regions["eu-west-1"] as { publicKeyFiles?: string[] }).publicKeyFiles;
    expect(() => parseConfig(noKey, "t", dir, {})).toThrow(
      "regions.eu-west-1.publicKeyFiles: required with auth.privateKeyFile (its public key)",
    );
    expect(() =>
      parseConfig(keyed({ auth: { privateKeyFile: east, peerSecret: "0123456789abcdef-x" } }), "t", dir, {}),
    ).toThrow(/auth.peerSecret: not used with auth.privateKeyFile/);
    fs.writeFileSync(path.join(dir, "garbage.pub"), "not a key");
    const garbage = keyed();
    garbage.regions["eu-west-1"]!.publicKeyFiles = ["garbage.pub"];
    expect(() => parseConfig(garbage, "t", dir, {})).toThrow(
      /regions.eu-west-1.publicKeyFiles\[0\] \(.*garbage.pub\): not a PEM public key/,
    );
  });

  it("TLS: the own URL's scheme must match, client certificates need a CA, files must exist", () => {
    const tls = {
      ...base(),
      listen: {
        host: "127.0.0.1",
        port: 7070,
        tls: { certFile: "/nope.crt", keyFile: "/nope.key", requireClientCert: true },
      },
    };
    expect(problems(tls)).toEqual([
      "regions.us-east-1.url: listen.tls is set, so this region's URL must be https://",
      "listen.tls.certFile: /nope.crt does not exist",
      "listen.tls.keyFile: /nope.key does not exist",
      "listen.tls.requireClientCert: needs listen.tls.caFile (the CA client certificates are checked against)",
    ]);
    const https = base();
    https.regions["us-east-1"] = { url: "https://127.0.0.1:7070" };
    expect(problems(https)).toEqual(["regions.us-east-1.url: https:// needs listen.tls (certFile, keyFile)"]);
  });
});
