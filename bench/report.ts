/** Shared helpers for benchmarks: medians and spread, and writing results under bench/results/. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function spread(values: number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length };
}

export const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "results");

/** Write `<name>.json` (machine-readable, with the machine it ran on) and `<name>.md` (for the README). */
export function writeResults(name: string, results: object, markdown: string): void {
  fs.mkdirSync(resultsDir, { recursive: true });
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
  const at = new Date().toISOString();
  fs.writeFileSync(
    path.join(resultsDir, `${name}.json`),
    `${JSON.stringify({ at, machine, ...results }, null, 2)}\n`,
  );
  const header = `# ${name} benchmark\n\nRun ${at} on ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}. Command: \`npm run bench -- ${name}\`.\n\n`;
  fs.writeFileSync(path.join(resultsDir, `${name}.md`), `${header}${markdown}\n`);
  process.stdout.write(`${markdown}\n\nwrote bench/results/${name}.json and bench/results/${name}.md\n`);
}
