#!/usr/bin/env node
/**
 * Three crr regions (us-east-1, us-west-2, eu-west-1) and a Prometheus on loopback, without
 * Docker: for trying the alerts (deploy/prometheus) and the dashboard (deploy/grafana).
 *
 *   npm run build && node deploy/local/stack.mjs [--dir DIR]
 *
 * Prints the regions' and Prometheus's URLs, then runs until SIGINT or SIGTERM (or
 * `kill $(cat DIR/stack.pid)`), when it stops Prometheus and every node by PID (SIGTERM: each
 * node closes cleanly) and exits. Uses Debian's prometheus package (apt-get install
 * prometheus). The data stays in DIR (default: a new directory under the system's temp dir).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LocalMesh, startPrometheus } from "../../dist/launch/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const at = process.argv.indexOf("--dir");
const dir =
  at > 0 ? path.resolve(process.argv[at + 1]) : fs.mkdtempSync(path.join(os.tmpdir(), "crr-local-"));
fs.mkdirSync(dir, { recursive: true });
const regions = ["us-east-1", "us-west-2", "eu-west-1"];
const adminToken = randomBytes(24).toString("hex");
const tokenFile = path.join(dir, "admin-token");
fs.writeFileSync(tokenFile, adminToken, { mode: 0o600 });

const mesh = await LocalMesh.start({
  root: dir,
  regions,
  secret: randomBytes(24).toString("hex"),
  env: () => ({ CRR_ADMIN_TOKEN: adminToken }),
  output: "file",
  crrMain: path.join(repo, "dist/cli/main.js"),
  cwd: repo,
  common: { divergence: { intervalMs: 5000 }, health: { probeIntervalMs: 1000 } },
});
const nodes = regions.map((r) => mesh.node(r));
let prometheus;
try {
  prometheus = await startPrometheus({
    dir: path.join(dir, "prometheus"),
    baseConfigFile: path.join(repo, "deploy/prometheus/prometheus.yml"),
    targets: nodes.map((n) => ({ instance: n.name, address: new URL(n.url).host })),
    rules: { "crr-rules.yml": fs.readFileSync(path.join(repo, "deploy/prometheus/crr-rules.yml"), "utf8") },
    scrapeIntervalS: 5,
    evaluationIntervalS: 5,
  });
} catch (err) {
  await Promise.all(regions.map((r) => mesh.stopNode(r, "SIGTERM")));
  throw err;
}

fs.writeFileSync(path.join(dir, "stack.pid"), `${process.pid}\n`);
const pids = {
  stack: process.pid,
  prometheus: prometheus.pid,
  ...Object.fromEntries(nodes.map((n) => [n.name, n.proc?.pid])),
};
fs.writeFileSync(path.join(dir, "pids.json"), JSON.stringify(pids, null, 2));
console.log(
  JSON.stringify({
    ready: true,
    dir,
    regions: Object.fromEntries(nodes.map((n) => [n.name, n.url])),
    prometheus: prometheus.url,
    pids,
  }),
);
console.log(`crr local stack in ${dir}:`);
for (const n of nodes) console.log(`  ${n.name.padEnd(10)} ${n.url}   (crr status --url ${n.url})`);
console.log(`  prometheus ${prometheus.url}/alerts`);
console.log(`  admin commands: CRR_ADMIN_TOKEN_FILE=${tokenFile} crr drain --url ...`);
console.log(`  dashboard: import deploy/grafana/crr-dashboard.json into a Grafana with this Prometheus`);
console.log(`stop: Ctrl-C, or kill ${process.pid}`);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping Prometheus (pid ${prometheus.pid}) and the nodes`);
  await prometheus.stop();
  for (const n of nodes) {
    const pid = n.proc?.pid;
    const how = await mesh.stopNode(n.name, "SIGTERM");
    console.log(`  ${n.name} (pid ${pid}) stopped: ${how}`);
  }
  await mesh.stop();
  fs.rmSync(path.join(dir, "stack.pid"), { force: true });
  process.exit(0);
}
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));
