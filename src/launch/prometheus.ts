/**
 * A real Prometheus server (Debian's `prometheus` package; scripts/ensure-system-packages.sh
 * installs it) scraping crr nodes: for the alert tests and deploy/local. The shipped scrape
 * config (deploy/prometheus/prometheus.yml) is used as it is, with only its targets, its
 * intervals and its rule files replaced. Prometheus cannot report a port it bound itself, so
 * a free one is picked and another tried on a collision; stopped by its PID.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import YAML from "yaml";
import { waitUntil } from "./wait.js";

export interface PrometheusServer {
  /** http://127.0.0.1:PORT */
  url: string;
  pid: number;
  /** Everything the server printed (its log). */
  output(): string;
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  /** A directory of its own: config, rules and the TSDB go there. */
  dir: string;
  /** The scrape config to start from (deploy/prometheus/prometheus.yml). */
  baseConfigFile: string;
  /** Each node to scrape: its instance label (the region's name) and host:port. */
  targets: Array<{ instance: string; address: string }>;
  /** Rule files' contents by file name (copied into `dir`). */
  rules: Record<string, string>;
  scrapeIntervalS?: number;
  evaluationIntervalS?: number;
  /** The binary; default /usr/bin/prometheus. */
  bin?: string;
}

/** The shipped scrape config with these targets, intervals and rule files. */
export function prometheusConfig(o: PrometheusOptions): string {
  const base = YAML.parse(fs.readFileSync(o.baseConfigFile, "utf8")) as {
    global?: Record<string, unknown>;
    rule_files?: string[];
    scrape_configs: Array<{ job_name: string; static_configs?: unknown[] }>;
  };
  const every = (s: number | undefined, fallback: unknown) => (s ? `${s}s` : fallback);
  base.global = {
    ...base.global,
    scrape_interval: every(o.scrapeIntervalS, base.global?.scrape_interval),
    evaluation_interval: every(o.evaluationIntervalS, base.global?.evaluation_interval),
  };
  base.rule_files = Object.keys(o.rules);
  const job = base.scrape_configs.find((j) => j.job_name === "crr");
  if (!job) throw new Error(`${o.baseConfigFile}: no scrape config with job_name crr`);
  job.static_configs = o.targets.map((t) => ({ targets: [t.address], labels: { instance: t.instance } }));
  return YAML.stringify(base);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()));
}

export async function startPrometheus(o: PrometheusOptions): Promise<PrometheusServer> {
  const bin = o.bin ?? "/usr/bin/prometheus";
  if (!fs.existsSync(bin))
    throw new Error(
      `${bin} not found (Debian: apt-get install prometheus; scripts/ensure-system-packages.sh does it)`,
    );
  fs.mkdirSync(o.dir, { recursive: true });
  for (const [name, text] of Object.entries(o.rules)) fs.writeFileSync(path.join(o.dir, name), text);
  const configFile = path.join(o.dir, "prometheus.yml");
  fs.writeFileSync(configFile, prometheusConfig(o));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    let output = "";
    const child = spawn(
      bin,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${path.join(o.dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--web.enable-lifecycle",
      ],
      { cwd: o.dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout!.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (output += b.toString()));
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntil(
        async () => {
          if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${output}`);
          return (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok;
        },
        "Prometheus to be ready",
        60_000,
        100,
      );
    } catch (err) {
      child.kill("SIGKILL");
      await exited(child);
      if (attempt < 5 && /address already in use/i.test(output)) continue;
      throw err;
    }
    return {
      url,
      pid: child.pid!,
      output: () => output,
      stop: async () => {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited(child);
        clearTimeout(killer);
      },
    };
  }
}
