/**
 * Issue "Trust between regions", item 8, against a real `crr serve`: a secret that falls back
 * to a shell default (`${CRR_PEER_SECRET:-changeme}`) is what the shell would make of it, and
 * then too short: the node refuses to start, says why, and never prints the value.
 */
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("secrets from the environment", () => {
  it("a too-short default is refused at startup, naming the setting, not the value", async () => {
    const dir = tempDir("crr-secret-");
    const file = path.join(dir, "node.yaml");
    fs.writeFileSync(
      file,
      YAML.stringify({
        region: "us-east-1",
        dataDir: path.join(dir, "data"),
        listen: { host: "127.0.0.1", port: 0 },
        regions: {
          "us-east-1": { url: "http://127.0.0.1:7070" },
          "us-west-2": { url: "http://127.0.0.1:7071" },
        },
        crr: { enabled: true, peers: ["us-west-2"] },
        auth: { peerSecret: "${CRR_PEER_SECRET:-changeme}" },
      }),
    );
    const env = { ...process.env, CRR_PEER_SECRET: "" };
    const r = await runCrr(["serve", "--config", file], { env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("auth.peerSecret: must be at least 16 characters");
    expect(r.stderr).not.toContain("changeme");
    expect(fs.existsSync(path.join(dir, "data", "wal"))).toBe(false);
  });
});
