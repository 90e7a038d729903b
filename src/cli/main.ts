#!/usr/bin/env node
/**
 * The `crr` command line. Each command lives in its own file; this one only dispatches.
 */
import { runDemo } from "./demo.js";
import { runServe } from "./serve.js";
import { runWalInspect } from "./wal-inspect.js";
import { CliUsageError } from "./args.js";

const usage = `crr — cross-region WAL replication engine

Usage:
  crr serve --config FILE  run one region's node (sidecar)
  crr demo                 write records to a WAL, tear its tail like a crash, recover and verify
  crr wal inspect DIR      decode and verify the WAL segment files in DIR (exit 1 on a problem)
  crr COMMAND --help       help for one command

More commands (status, drain, verify, reconcile, rebuild, bench, audit) arrive with the
node's operations; see README.md.`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  demo: runDemo,
  serve: runServe,
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
    if (err instanceof CliUsageError) {
      process.stderr.write(`crr: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`crr: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
