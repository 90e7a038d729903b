#!/usr/bin/env node
/**
 * The `crr` command line. Each command lives in its own file; this one only dispatches.
 */
import { runDemo } from "./demo.js";
import { runDrain, runUndrain } from "./drain.js";
import { NodeUnreachableError } from "./http.js";
import { runServe } from "./serve.js";
import { runSkipGap } from "./skip-gap.js";
import { runStatus } from "./status.js";
import { runAudit, runRebuild } from "./rebuild.js";
import { runRestore } from "./restore.js";
import { runBench } from "./bench.js";
import { runBootstrap } from "./bootstrap.js";
import { runLeave } from "./leave.js";
import { runReconcile, runVerify } from "./verify.js";
import { runWalInspect } from "./wal-inspect.js";
import { CliUsageError } from "./args.js";

const usage = `crr — cross-region WAL replication engine

Usage:
  crr serve --config FILE  run one region's node (sidecar)
  crr status --url URL     peers, watermarks, lag, WAL size, health of a running node
  crr drain --url URL      stop accepting appends and wait until every peer caught up
  crr undrain --url URL    accept appends again
  crr skip-gap --url URL --peer P --through LSN  let a peer skip LSNs nobody holds (audited)
  crr verify --config FILE             run the divergence check once, print findings (exit 1 if any)
  crr reconcile --config FILE [--apply] repair divergent or missing keys by the merge rule
  crr rebuild --config FILE [--since T] rebuild the dedup store from the WAL and the peers
  crr restore --config FILE [--to T]   a store as of time T from the S3 archive (a new file)
  crr bootstrap --config FILE --from s3|PEER  seed a new or wiped region before its node starts
  crr leave --config FILE [--node-id ID]  a stopped (or lost) node leaves a region served by several nodes
  crr audit verify FILE|DIR...         verify the audit log's hash chain
  crr bench --scenario FILE [--check]  run a lag SLO benchmark scenario and write its report
  crr demo                 three regions on loopback: load, a split brain, a crash, convergence
  crr wal inspect DIR      decode and verify the WAL segment files in DIR (exit 1 on a problem)
  crr COMMAND --help       help for one command

See README.md for configuration and operations.`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  demo: runDemo,
  serve: runServe,
  status: runStatus,
  drain: runDrain,
  undrain: runUndrain,
  "skip-gap": runSkipGap,
  verify: runVerify,
  reconcile: runReconcile,
  rebuild: runRebuild,
  restore: runRestore,
  bootstrap: runBootstrap,
  leave: runLeave,
  audit: runAudit,
  bench: runBench,
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
