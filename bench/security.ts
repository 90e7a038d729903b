/**
 * What trust between regions costs: the replication benchmark's two regions (the origin in
 * this process, the peer a `crr serve` process) run with the shared secret over HTTP (the
 * baseline), with a key per region (Ed25519 signatures on every request and answer), and with
 * keys and mutual TLS. Each round runs every mode in a rotated order, flat out and at
 * 10,000 records/s; ratios are taken against the baseline of the same round (the machine
 * is shared and noisy), then summarised as median (min–max).
 *
 *   npm run bench -- security [--rounds 3] [--seconds 3]
 */
import { lagRun, type LagRun, type TrustMode } from "./replication.js";
import { spread, writeResults, type Spread } from "./report.js";

const modes: TrustMode[] = ["shared-secret", "keys", "keys+mtls"];

export async function benchSecurity(args: { rounds: number; seconds: number }): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const max: Record<TrustMode, LagRun[]> = { "shared-secret": [], keys: [], "keys+mtls": [] };
  const at10k: Record<TrustMode, LagRun[]> = { "shared-secret": [], keys: [], "keys+mtls": [] };
  for (let round = 0; round < args.rounds; round++) {
    for (let k = 0; k < modes.length; k++) {
      const mode = modes[(round + k) % modes.length]!;
      const m = await lagRun("max", args.seconds, mode);
      const r = await lagRun(10_000, args.seconds, mode);
      max[mode].push(m);
      at10k[mode].push(r);
      log(
        `round ${round + 1} ${mode}: max ${Math.round(m.replicatedPerS)}/s; at 10k/s lag p50 ${r.lagMs.p50.toFixed(2)} ms, p99 ${r.lagMs.p99.toFixed(2)} ms`,
      );
    }
  }
  const ratio = (mode: TrustMode, f: (r: LagRun) => number, of: Record<TrustMode, LagRun[]>) =>
    spread(of[mode].map((r, i) => f(r) / f(of["shared-secret"][i]!)));
  const summary = Object.fromEntries(
    modes.map((mode) => [
      mode,
      {
        maxReplicatedPerS: spread(max[mode].map((r) => r.replicatedPerS)),
        maxRatioToBaseline: ratio(mode, (r) => r.replicatedPerS, max),
        lagP50MsAt10k: spread(at10k[mode].map((r) => r.lagMs.p50)),
        lagP99MsAt10k: spread(at10k[mode].map((r) => r.lagMs.p99)),
        lagP99RatioToBaseline: ratio(mode, (r) => r.lagMs.p99, at10k),
      },
    ]),
  ) as unknown as Record<TrustMode, Record<string, Spread>>;
  const n = (v: number) => Math.round(v).toLocaleString("en-US");
  const f = (s: Spread, d: number) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
  const md = [
    `Two regions on loopback (origin in the benchmark process, peer a \`crr serve\` process), ${args.rounds} rounds, ${args.seconds} s per run, every mode in each round in a rotated order; median (min–max); ratios against the shared-secret run of the same round.`,
    "",
    "| trust | replicated/s flat out | / baseline | lag p50 ms at 10k/s | lag p99 ms at 10k/s | p99 / baseline |",
    "| --- | --- | --- | --- | --- | --- |",
    ...modes.map((mode) => {
      const s = summary[mode];
      return `| ${mode} | ${n(s.maxReplicatedPerS!.median)} (${n(s.maxReplicatedPerS!.min)}–${n(s.maxReplicatedPerS!.max)}) | ${f(s.maxRatioToBaseline!, 2)} | ${f(s.lagP50MsAt10k!, 2)} | ${f(s.lagP99MsAt10k!, 2)} | ${f(s.lagP99RatioToBaseline!, 2)} |`;
    }),
  ].join("\n");
  writeResults("security", { rounds: args.rounds, secondsPerRun: args.seconds, summary, max, at10k }, md);
}
