/**
 * deploy/local: `node deploy/local/stack.mjs` starts three real regions and a real
 * Prometheus that scrapes them, says where they are, and on SIGTERM stops every process it
 * started, by PID. docker-compose.yml (not run here: no Docker engine) is checked for what
 * can be checked without one: each region's config loads in crr with its secrets left to the
 * environment, and its Prometheus config passes promtool.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { parseConfig } from "../../src/config/index.js";
import { repoRoot } from "../support/cli.js";
import { tempDir, waitFor } from "../support/tmp.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("deploy/local", () => {
  it("stack.mjs starts three regions and Prometheus, and SIGTERM stops every process it started", async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, [path.join(repoRoot, "deploy/local/stack.mjs"), "--dir", dir], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const ready = await waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`stack.mjs exited: ${out}`);
          const line = out.split("\n").find((l) => l.startsWith('{"ready":true'));
          return line
            ? (JSON.parse(line) as {
                regions: Record<string, string>;
                prometheus: string;
                pids: Record<string, number>;
              })
            : undefined;
        },
        "the stack to be ready",
        120_000,
      );
      expect(Object.keys(ready.regions)).toEqual(["us-east-1", "us-west-2", "eu-west-1"]);
      expect(out).not.toMatch(fs.readFileSync(path.join(dir, "admin-token"), "utf8")); // the token stays in its file
      await waitFor(async () => {
        const r = (await (
          await fetch(`${ready.prometheus}/api/v1/query?query=${encodeURIComponent('up{job="crr"} == 1')}`)
        ).json()) as {
          data: { result: unknown[] };
        };
        return r.data.result.length === 3 || undefined;
      }, "Prometheus to scrape the three regions");
      const rules = (await (await fetch(`${ready.prometheus}/api/v1/rules`)).json()) as {
        data: { groups: Array<{ rules: unknown[] }> };
      };
      expect(rules.data.groups.flatMap((g) => g.rules).length).toBe(13);
      for (const pid of Object.values(ready.pids)) expect(alive(pid)).toBe(true);

      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      for (const [name, pid] of Object.entries(ready.pids))
        expect(alive(pid), `${name} (pid ${pid})`).toBe(false);
      expect(fs.existsSync(path.join(dir, "stack.pid"))).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("docker-compose.yml: every region's config loads in crr with its secrets from the environment, and its Prometheus config is valid", () => {
    const compose = YAML.parse(
      fs.readFileSync(path.join(repoRoot, "deploy/local/docker-compose.yml"), "utf8"),
    ) as {
      services: Record<string, { configs?: Array<{ source: string }> }>;
      configs: Record<string, { content?: string; file?: string }>;
    };
    const regions = ["us-east-1", "us-west-2", "eu-west-1"];
    for (const region of regions) {
      // Compose turns $$ into $: crr reads ${CRR_PEER_SECRET} itself.
      const text = compose.configs[region]!.content!.replaceAll("$$", "$");
      expect(text).toContain("${CRR_PEER_SECRET}");
      const config = parseConfig(YAML.parse(text), region, "/", {
        CRR_PEER_SECRET: "a-peer-secret-long-enough-0123456789",
        CRR_ADMIN_TOKEN: "an-admin-token-long-enough-0123456789",
      });
      expect(config.region).toBe(region);
      expect(Object.keys(config.regions).sort()).toEqual([...regions].sort());
    }
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, "prometheus.yml"), compose.configs.prometheus!.content!);
    fs.copyFileSync(path.join(repoRoot, "deploy/prometheus/crr-rules.yml"), path.join(dir, "crr-rules.yml"));
    const check = spawnSync("promtool", ["check", "config", path.join(dir, "prometheus.yml")], {
      encoding: "utf8",
    });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
  });
});
