#!/usr/bin/env node
/**
 * The `crr` command line. Each command lives in its own file; this one only dispatches.
 */
import { runDemo } from "./demo.js";
import { runDrain, runUndrain } from "./drain.js";
import { NodeUnreachableError } from "./http.js";
import { runServe } from "./serve.js";
import { runStatus } from "./status.js";
import { runWalInspect } from "./wal-inspect.js";
import { CliUsageError } from "./args.js";

const usage = `crr — cross-region WAL replication engine

Usage:
  crr serve --config FILE  run one region's node (sidecar)
  crr status --url URL     peers, watermarks, lag, WAL size, health of a running node
  crr drain --url URL      stop accepting appends and wait until every peer caught up
  crr undrain --url URL    accept appends again
  crr demo                 write records to a WAL, tear its tail like a crash, recover and verify
  crr wal inspect DIR      decode and verify the WAL segment files in DIR (exit 1 on a problem)
  crr COMMAND --help       help for one command

More commands (verify, reconcile, rebuild, bench, audit) arrive with divergence detection
and the benchmark harness; see README.md.`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  demo: runDemo,
  serve: runServe,
  status: runStatus,
  drain: runDrain,
  undrain: runUndrain,
  wal: async (argv) => {
    const [sub, ...rest] = argv;
    if (sub === "inspect") return runWalInspect(rest);
    throw new CliUsageError(
      `unknown 'wal' subcommand ${JSON.stringify(sub ?? "")}; try 'crr wal inspect DIR'`,
    );
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) throw new CliUsageError(`unknown command '${name}'\n\n${usage}`);
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof NodeUnreachableError) {
      process.stderr.write(`crr: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    if (err instanceof CliUsageError) {
      process.stderr.write(`crr: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`crr: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
